"""`nnlab repeat` before anything runs: every bad input is one line and starts nothing; the
plan's seeds and experiment names; a model's own seed leaves the split's seed alone; the
summary of repeats that failed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nnlab.core.schema import ParamsError
from nnlab.evaluation import repeats
from nnlab.search.repeat_plan import make_plan
from tests.support.helpers import ROOT, project_params, raw_params


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repo with a commit and params.yaml: what `make_plan` reads."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params(), sort_keys=False))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t",
                                                 "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


@pytest.mark.parametrize(("model", "seeds", "sets", "against", "workers", "message"), [
    ("resnet", 3, [], None, 1, "--model 'resnet': unknown model; choose one of"),
    ("numpy_dnn", 0, [], None, 1, "--seeds 0: choose 2 to 100 seeds"),
    ("numpy_dnn", 10000, [], None, 1, "--seeds 10000: choose 2 to 100 seeds"),
    ("numpy_dnn", 3, [], None, 0, "--workers 0: choose 1 to"),
    ("numpy_dnn", 3, ["cnn.epochs=3"], None, 1, "-S cnn.epochs=3: outside numpy_dnn's section"),
    ("numpy_dnn", 3, ["data.dataset=mnist"], None, 1,
     "-S data.dataset=mnist: outside numpy_dnn's section"),
    ("numpy_dnn", 3, ["seed=3"], None, 1, "-S seed=3: the seeds are"),
    ("numpy_dnn", 3, ["learning_rate=-1"], None, 1,
     "numpy_dnn.learning_rate=-1: Input should be greater than 0"),
    ("numpy_dnn", 3, ["lr=0.1"], None, 1, "unknown param 'lr'"),
    ("numpy_dnn", 3, [], [], 1, "--against: give the second"),
    ("numpy_dnn", 3, [], ["epochs=60"], 1, "--against: the second configuration is the first"),
])
def test_bad_repeats_are_refused_before_anything_runs(
        project: Path, model: str, seeds: int, sets: list[str], against: list[str] | None,
        workers: int, message: str) -> None:
    with pytest.raises(ParamsError) as refused:
        make_plan(model, seeds, sets, against, workers, project)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert sorted(path.name for path in project.iterdir()) == [".git", "params.yaml"]


def test_the_command_says_it_in_one_line_and_exit_2(project: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "nnlab.cli", "repeat", "--model", "numpy_dnn",
                             "--seeds", "3", "-S", "cnn.epochs=3"], cwd=project,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nnlab repeat: error: -S cnn.epochs=3: outside numpy_dnn's section; a repeat changes "
        "numpy_dnn alone (the data and the other models stay as they are)"]


def test_the_plan_seeds_from_the_top_level_seed_and_names_each_repeat(project: Path) -> None:
    plan = make_plan("numpy_dnn", 3, ["learning_rate=0.003"], ["learning_rate=0.01"], 2, project)
    assert plan.seeds == [42, 43, 44] and plan.dataset == "digits"
    first, second = plan.configs
    assert first.overrides == {"numpy_dnn.learning_rate": 0.003}
    assert (first.label, second.label) == ("learning_rate=0.003", "learning_rate=0.01")
    assert first.experiment(43) == f"rep-{first.digest}-s43" and first.digest != second.digest
    again = make_plan("numpy_dnn", 5, ["numpy_dnn.learning_rate=0.003"], None, 1, project)
    assert again.configs[0].digest == first.digest  # the same training: its repeats reused
    text = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(text.replace("C: 1.0", "C: 0.5"))  # another model's
    assert make_plan("numpy_dnn", 3, ["learning_rate=0.003"], None, 1,
                     project).configs[0].digest == first.digest
    (project / "params.yaml").write_text(text.replace("dropout: 0.15", "dropout: 0.2"))
    assert make_plan("numpy_dnn", 3, ["learning_rate=0.003"], None, 1,
                     project).configs[0].digest != first.digest  # its own: new repeats
    (project / "params.yaml").write_text(text)
    (project / "stage_code.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "stage_code.py"], cwd=project, check=True)
    assert make_plan("numpy_dnn", 3, ["learning_rate=0.003"], None, 1,
                     project).configs[0].digest != first.digest  # uncommitted code: new
    with pytest.raises(ParamsError, match="cnn.epochs"):
        make_plan("numpy_dnn", 3, ["cnn.epochs=1"], None, 1, project)


def test_a_models_own_seed_reseeds_it_alone() -> None:
    params = project_params({"numpy_dnn": {"seed": 7}})
    assert params.model_seed("numpy_dnn") == 7 and params.seed == 42
    assert params.model_seed("cnn") == 42  # null: the top-level seed


def test_the_summary_counts_failed_repeats_and_compares_the_seeds_both_finished() -> None:
    first = repeats.Repeats("params.yaml", {
        seed: {"val": {"accuracy": 0.95 + seed / 1000, "f1_macro": 0.9},
               "test": {"accuracy": 0.94 + seed / 1000, "f1_macro": 0.9}} for seed in (1, 2, 3)})
    second = repeats.Repeats("learning_rate=0.003", {
        seed: {"val": {"accuracy": 0.97 + seed / 1000, "f1_macro": 0.9},
               "test": {"accuracy": 0.96 + seed / 1500, "f1_macro": 0.9}} for seed in (1, 2)},
        failed={3: "numpy_dnn: training loss is not finite; lower numpy_dnn.learning_rate"})
    found = repeats.summary(second)
    assert found["seeds"] == [1, 2] and "3" in found["failed"]
    compared = repeats.comparison(first, second)
    assert compared["seeds"] == [1, 2]
    verdict = compared["verdicts"]["val.accuracy"]
    assert verdict == ("val.accuracy: no difference measurable with 2 seeds between "
                       "learning_rate=0.003 and params.yaml (+2.0 points, p = 0)") or \
        verdict.startswith("val.accuracy: learning_rate=0.003 is better than params.yaml by 2.0")
    text = repeats.markdown("numpy_dnn", [repeats.summary(first), found], compared)
    assert "- seed 3 has no result: numpy_dnn: training loss is not finite" in text
    assert "nan" not in text.lower()


def test_verdicts_in_plain_words() -> None:
    assert repeats.verdict("test.accuracy", "lr=0.003", "params.yaml", 0.008, (0.003, 0.013),
                           0.01, 5) == ("test.accuracy: lr=0.003 is better than params.yaml by "
                                        "0.8 ± 0.5 points (p = 0.01, 5 seeds)")
    assert repeats.verdict("test.accuracy", "lr=0.003", "params.yaml", -0.008, (-0.013, -0.003),
                           0.01, 5).startswith("test.accuracy: params.yaml is better than lr")
    assert "no difference measurable with 5 seeds" in repeats.verdict(
        "test.accuracy", "b", "a", 0.001, (-0.004, 0.006), 0.6, 5)


def test_a_workspace_without_a_committed_dvc_lock_is_refused(project: Path) -> None:
    # `dvc exp run --temp` copies what git tracks: with no dvc.lock every stage would rerun
    from nnlab.search.seed_repeats import check_workspace

    (project / "dvc.lock").write_text("schema: '2.0'\n")
    with pytest.raises(ParamsError, match=r"dvc.lock is not committed.*git add dvc.lock"):
        check_workspace(project, "numpy_dnn")
