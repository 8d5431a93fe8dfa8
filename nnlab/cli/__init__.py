"""The `nnlab` command line (`nnlab --help`; pyproject's script is nnlab.cli:main). A module
per subcommand, each with its options (`add_parser`) and its body (`run`); the work itself is
in the package named for the job:

    entry.py            the parser, built from the subcommands' modules, and `main`
    one_line_errors.py  the wrapper every subcommand runs in: a user's error is one line
    check.py            nnlab check: params.yaml, every section (nnlab/params.py)
    predict.py          nnlab predict: top classes of image files (nnlab/handoff/prediction.py)
    ui.py               nnlab ui: the local MLflow UI (nnlab/server/mlflow_ui.py)
    promote.py          nnlab promote: MLflow's registry (nnlab/handoff/promotion.py)
    export.py           nnlab export: an ONNX copy (nnlab/handoff/onnx_copy.py)
    serve.py            nnlab serve: the scoring server (nnlab/handoff/scoring_server.py)
    server.py           nnlab server start|status|stop: the team stack (nnlab/server/)
    remote.py           nnlab push|pull: dvc's, after checking the remote
    sweep.py            nnlab sweep: an Optuna study (nnlab/search/runner.py)
    repeat.py           nnlab repeat: seed repeats (nnlab/search/seed_repeats.py)
    join.py             nnlab join: one training on several machines (nnlab/training/joiner.py)
    __main__.py         `python -m nnlab.cli`
"""

from nnlab.cli.entry import main

__all__ = ["main"]
