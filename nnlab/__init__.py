"""nnlab: reproducible image-classification experiments (DVC pipeline + MLflow tracking).

    cli/         the `nnlab` command: a module per subcommand (check, predict, promote, serve,
                 ui, sweep, repeat, server, push, pull)
    params.py    reads params.yaml and validates the sections a stage asks for: the one reader
    core/        what every stage imports: files, errors, layout, schema base, the catalog
    arrays/      the data contract (uint8 images, int64 labels) and memory-bounded chunks
    data/        one module per dataset source; the download, prepare and split stages' work
    models/      one folder per model family, and the name -> class catalog
    training/    the train stage's work: fit, checkpoints, live epoch metrics
    evaluation/  metrics and their intervals, paired tests, seed spreads, plots, baselines, the
                 evaluate and report stages' work
    tracking/    MLflow runs, the local store, liveness of runs, the tracking server's check
    handoff/     promote (MLflow's registry), predict, serve
    search/      `nnlab sweep`: Optuna studies shared by workers; `nnlab repeat`: seed repeats
    server/      the team stack behind `make server`, and the local UI behind `make ui`
"""

from importlib.metadata import PackageNotFoundError, version

try:  # one source: pyproject.toml's version, as the installed package's metadata has it
    __version__ = version("nnlab")
except PackageNotFoundError:  # a source tree that was never installed (`make install` does)
    __version__ = "0+unknown"
