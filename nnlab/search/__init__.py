"""`nnlab sweep`: random hyperparameter search over DVC experiments, narrowed round by round.

A round samples every `--sample` param from its range (seeded), queues one DVC experiment per
trial (`dvc exp run --queue`), runs the queue (`dvc queue start -j N`), waits, and ranks the
trials by VALIDATION accuracy, never test. The top quarter narrows the ranges of the next round.
The train stage logs one MLflow run per trial; the sweep nests them under one parent run.

    space.py       `--sample` parsing, Ranges checked against the params schema, sampling
    trials.py      a trial, a sweep's result, ranking by validation accuracy, the errors
    narrowing.py   the seeds' narrowing of the ranges to the top quarter
    dvc.py         trials as queued DVC experiments, and their states
    parent_run.py  the MLflow parent run that nests the trials' runs
    report.py      the ranked table, failure summary and sweep summary
    runner.py      `run_sweep`: the rounds

space, trials and narrowing are pure and unit-tested without DVC.
"""

from nnlab.search.runner import run_sweep
from nnlab.search.space import Range, parse_spec, sample
from nnlab.search.trials import SweepError, SweepInterrupted, Trial

__all__ = ["Range", "SweepError", "SweepInterrupted", "Trial", "parse_spec", "run_sweep",
           "sample"]
