"""`nnlab sweep --study NAME --apply-best`: the best trial's params into the workspace, through
`dvc exp apply` when its experiment is on this machine (params and trained outputs), else into
params.yaml through the params schema, keeping the file's comments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nnlab.params import read as read_params
from nnlab.params import validate
from nnlab.search import dvc
from nnlab.search.space import apply_overrides, format_value
from nnlab.search.study import Plan, SweepError
from nnlab.search.study_report import ranked, values
from nnlab.search.trial import EXP_ATTR


def apply_best(study: optuna.Study, plan: Plan, root: Path,
               report: Callable[[str], None] = print) -> dict[str, Any]:
    """Apply the best COMPLETE trial; the params it set.

    Raises:
        SweepError: no trial completed yet.
        ParamsError: the params no longer fit today's schema.
    """
    best = next((t for t in ranked(study.get_trials(deepcopy=False))
                 if t.state == TrialState.COMPLETE), None)
    if best is None:
        raise SweepError(f"study {study.study_name!r} has no complete trial yet; run it first")
    chosen = {**plan.fixed, **values(best)}
    shown = ", ".join(f"{key}={format_value(value)}" for key, value in chosen.items())
    name = str(best.user_attrs.get(EXP_ATTR, ""))
    if name and dvc.has_experiment(root, name):
        missing = _exp_apply(root, name, plan.model)
        report(f"Applied experiment {name} (trial {best.number}, val.accuracy "
               f"{best.value:.4f}): {shown}, with its trained outputs; `git diff` shows it")
        if missing:
            report(f"note: {', '.join(missing)} were never trained in this project, so there "
                   "was nothing to check out for them; `dvc repro` trains them")
        return chosen
    params_file = root / "params.yaml"
    from dvc.utils.serialize import modify_yaml  # writes the values, keeping the comments

    validate(apply_overrides(read_params(params_file), chosen))
    with modify_yaml(str(params_file)) as data:
        for key, value in chosen.items():
            *parents, last = key.split(".")
            section = data
            for part in parents:
                section = section[part]
            section[last] = value
    report(f"Trial {best.number} (val.accuracy {best.value:.4f}) ran on another machine: "
           f"wrote {shown} into params.yaml; `dvc repro` trains it")
    return chosen


def _exp_apply(root: Path, name: str, model: str) -> list[str]:
    """`dvc exp apply NAME`; the outputs it could not check out because they were never made
    (a sweep's trials train one model: the others exist only if the project trained them)."""
    try:
        dvc.run_dvc(["exp", "apply", name], root)
        return []
    except dvc.DvcError as error:
        lines = error.output.splitlines()
        if "ERROR: Checkout failed for following targets:" not in lines:
            raise
        start = lines.index("ERROR: Checkout failed for following targets:") + 1
        missing = [line.strip() for line in lines[start:] if line.strip().startswith(
            ("models/", "reports/", "data/"))]
        if not missing or any(path.endswith(f"/{model}") for path in missing):
            raise
        return missing
