"""`nnlab sweep` and `nnlab repeat`. A sweep is hyperparameter search as an Optuna study that
any number of workers, on any number of machines, share. Each trial is a DVC experiment
(`dvc exp run --temp`, named `<study>-t<number>`) and an MLflow run nested under the study's
parent run; its score is validation accuracy, never test.

    space.py       `--sample` parsing, Ranges checked by the params schema, Optuna distributions
    narrowing.py   the tutorials' method as a sampler: ranges narrowed to the top quarter per round
    storage.py     the study's storage URL, its heartbeat, one-line errors when it is down
    study.py       the study's plan (kept in the study), create or join, the samplers
    trial_link.py  what a trial's stages learn from the worker: nesting, per-epoch pruning
                   (the train stage loads it by name: nnlab/training/sweep_hook.py)
    trial.py       one trial: params, `dvc exp run --temp`, its value and MLflow tags
    dvc.py         DVC experiments: run, read metrics, remove a killed run's workspace
    parent_run.py  the MLflow parent run, and runs left RUNNING by killed trials
    worker.py      a worker process: trials until the study has N finished
    runner.py      `nnlab sweep`: check, create or join, start and watch K workers
    study_report.py the ranked table, narrowed ranges and summary
    apply.py       `--apply-best`
    host_slots.py  one host's sweep commands and workers: seeds slots, a worker's tie to its
                   command
    repeat_plan.py `nnlab repeat`'s seeds, configurations and their digests, checked first
    repeat_runs.py `nnlab repeat`'s MLflow runs: each tagged with its group, a summary run
    seed_repeats.py `nnlab repeat`: one model's seed repeats as DVC experiments (like trials,
                   and no Optuna), their spread

Their command lines are nnlab/cli/sweep.py and nnlab/cli/repeat.py. This file imports
nothing: `nnlab sweep` must not load Optuna before it is asked to.
"""
