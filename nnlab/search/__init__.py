"""`nnlab sweep` and `nnlab repeat`. A sweep is hyperparameter search as an Optuna study that
any number of workers, on any number of machines, share. Each trial is a DVC experiment
(`dvc exp run --temp`, named `<study>-t<number>`) and an MLflow run nested under the study's
parent run; its score is validation accuracy, never test.

    space.py       `--sample` parsing, Ranges checked by the params schema, Optuna distributions
    narrowing.py   the tutorials' method as a sampler: ranges narrowed to the top quarter per round
    storage.py     the study's storage URL, its heartbeat, one-line errors when it is down
    study.py       the study's plan (kept in the study), create or join, the samplers
    link.py        what a trial's stages learn from the worker: nesting, per-epoch pruning
                   (the train stage loads it by name: nnlab/training/trial.py)
    trial.py       one trial: params, `dvc exp run --temp`, its value and MLflow tags
    dvc.py         DVC experiments: run, read metrics, remove a killed run's workspace
    parent_run.py  the MLflow parent run, and runs left RUNNING by killed trials
    worker.py      a worker process: trials until the study has N finished
    runner.py      `nnlab sweep`: check, create or join, start and watch K workers
    report.py      the ranked table, narrowed ranges and summary
    apply.py       `--apply-best`
    command.py     `nnlab sweep`'s command line and its one-line endings
    host.py        one host's sweep commands and workers: seeds slots, a worker's tie to its
                   command
    repeat_plan.py `nnlab repeat`'s seeds, configurations and their digests, checked first
    repeat.py      `nnlab repeat`: one model's seed repeats as DVC experiments (like trials,
                   and no Optuna), their spread

This file imports nothing: `nnlab sweep` must not load Optuna before it is asked to.
"""
