"""nnlab: reproducible image-classification experiments (DVC pipeline + MLflow tracking).

    cli.py       the `nnlab` command: check, predict, promote, serve, ui, sweep, server, push, pull
    params.py    reads params.yaml and validates the sections a stage asks for
    core/        the data contract, files, errors, layout, schema base: imports nothing above
    data/        one module per dataset source; the download, prepare and split stages' work
    models/      one folder per model family, and the name -> class catalog
    training/    the train stage's work: fit, checkpoints, live epoch metrics
    evaluation/  metrics, plots, baselines, the evaluate and report stages' work
    tracking/    MLflow runs, the local store, liveness of runs, the UI launcher
    handoff/     promote (MLflow's registry), predict, serve
    search/      `nnlab sweep`: Optuna studies shared by workers
    server/      the team stack behind `make server`
"""

__version__ = "0.1.0"
