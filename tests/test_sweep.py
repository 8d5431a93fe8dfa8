"""`nnlab sweep`: spec parsing, seeded sampling, narrowing and ranking, then one real sweep."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from nnlab import cli
from nnlab.params import ParamsError
from nnlab.search import runner as sweep
from nnlab.search.narrowing import narrow, narrow_all
from nnlab.search.space import Range, parse_spec, sample
from nnlab.search.trials import Trial, rank
from tests.conftest import ROOT
from tests.e2e import git, make_project
from tests.e2e import run as _run

# --------------------------------------------------------------------------------------------
# parse_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("learning_rate=uniform(0.001,0.1)",
         Range("numpy_dnn.learning_rate", "uniform", 0.001, 0.1)),
        ("learning_rate=loguniform(1e-4,1e-1)",
         Range("numpy_dnn.learning_rate", "loguniform", 1e-4, 0.1)),
        (" numpy_dnn.l2 = loguniform( 1e-8 , 1e-3 ) ",
         Range("numpy_dnn.l2", "loguniform", 1e-8, 1e-3)),
        ("epochs=int(1,5)", Range("numpy_dnn.epochs", "int", 1.0, 5.0)),
        ("seed=int(0,9)", Range("seed", "int", 0.0, 9.0)),
        ("activation=choice(relu,tanh)",
         Range("numpy_dnn.activation", "choice", values=("relu", "tanh"))),
        ("hidden_layers=choice([16],[32, 16],[])",
         Range("numpy_dnn.hidden_layers", "choice", values=([16], [32, 16], []))),
        ("batch_size=choice(32,null,64)",
         Range("numpy_dnn.batch_size", "choice", values=(32, None, 64))),
        ("learning_rate=choice(1e-3,0.01)",  # "1e-3" is a number, not YAML 1.1's string
         Range("numpy_dnn.learning_rate", "choice", values=(0.001, 0.01))),
        ("batch_norm=choice(true,false)",
         Range("numpy_dnn.batch_norm", "choice", values=(True, False))),
    ],
)
def test_parse_spec_reads_every_distribution(text: str, expected: Range) -> None:
    parsed = parse_spec(text, "numpy_dnn")
    assert parsed == expected
    assert [type(value) for value in parsed.values] == [type(v) for v in expected.values]
    # The printed form is the same syntax, so it parses back to the same range.
    assert parse_spec(str(parsed), "numpy_dnn") == parsed


def test_parse_spec_resolves_bare_names_against_the_model() -> None:
    assert parse_spec("learning_rate=uniform(0.1,0.2)", "cnn").key == "cnn.learning_rate"
    assert parse_spec("augment.shift=uniform(0,0.2)", "cnn").key == "cnn.augment.shift"
    assert parse_spec("C=loguniform(0.01,10)", "logreg").key == "logreg.C"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rate", "expected KEY=DIST(ARGS), e.g. 'learning_rate=loguniform(1e-4,1e-1)'"),
        ("learning_rate=loguniform(1e-4,1e-1", "expected KEY=DIST(ARGS)"),
        ("=uniform(0,1)", "expected KEY=DIST(ARGS)"),
        ("learning_rate=normal(0,1)",
         "unknown distribution 'normal'; choose one of: uniform, loguniform, int, choice"),
        ("learning_rate=uniform(0.1)", "uniform needs 2 bounds (low,high), got 1"),
        ("learning_rate=uniform(0.1,0.2,0.3)", "uniform needs 2 bounds (low,high), got 3"),
        ("learning_rate=uniform(a,0.2)", "uniform bounds must be finite numbers, got 'a,0.2'"),
        ("learning_rate=uniform(0,inf)", "bounds must be finite numbers"),
        ("learning_rate=uniform(0.2,0.1)", "low must be below high, got low=0.2, high=0.1"),
        ("epochs=int(3,3)", "low must be below high, got low=3, high=3"),
        ("epochs=int(1,2.5)", "int bounds must be integers, got '1,2.5'"),
        ("learning_rate=loguniform(0,0.1)", "loguniform needs 0 < low, got low=0"),
        ("learning_rate=loguniform(-1,0.1)", "loguniform needs 0 < low, got low=-1"),
        ("activation=choice()", "choice needs at least one value"),
        ("learnin_rate=uniform(0,1)",
         "unknown param 'learnin_rate' for numpy_dnn; choose one of: seed, hidden_layers,"),
        ("keras_mlp.dropout=uniform(0,0.5)", "unknown param 'keras_mlp.dropout' for numpy_dnn"),
        ("data.val_fraction=uniform(0.1,0.3)", "unknown param 'data.val_fraction'"),
    ],
)
def test_parse_spec_errors_name_the_spec_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(ParamsError) as error:
        parse_spec(text, "numpy_dnn")
    assert str(error.value).startswith(f"--sample {text!r}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_model_is_a_params_error() -> None:
    with pytest.raises(ParamsError, match="unknown model 'resnet'; choose one of: numpy_dnn"):
        parse_spec("learning_rate=uniform(0,1)", "resnet")


# --------------------------------------------------------------------------------------------
# sample

RANGES = [
    Range("numpy_dnn.learning_rate", "loguniform", 1e-4, 1e-1),
    Range("numpy_dnn.dropout", "uniform", 0.1, 0.5),
    Range("numpy_dnn.epochs", "int", 2.0, 4.0),
    Range("numpy_dnn.activation", "choice", values=("relu", "tanh")),
]


def test_sample_respects_every_range_and_type() -> None:
    drawn = sample(RANGES, 500, np.random.default_rng(0))
    assert len(drawn) == 500
    rates = np.array([trial["numpy_dnn.learning_rate"] for trial in drawn])
    dropouts = np.array([trial["numpy_dnn.dropout"] for trial in drawn])
    epochs = [trial["numpy_dnn.epochs"] for trial in drawn]
    assert rates.min() >= 1e-4 and rates.max() <= 1e-1
    assert dropouts.min() >= 0.1 and dropouts.max() <= 0.5
    assert all(type(value) is int for value in epochs)
    assert set(epochs) == {2, 3, 4}  # inclusive at both ends
    assert {trial["numpy_dnn.activation"] for trial in drawn} == {"relu", "tanh"}
    # loguniform: half the draws fall below the geometric mean (uniform would put ~3% there).
    assert 0.4 < np.mean(rates < math.sqrt(1e-4 * 1e-1)) < 0.6
    assert 0.4 < np.mean(dropouts < 0.3) < 0.6
    # rounded to 4 significant digits, so tables, params.yaml and MLflow agree exactly
    assert all(float(f"{rate:.4g}") == rate for rate in rates)


def test_sample_is_seeded() -> None:
    first = sample(RANGES, 5, np.random.default_rng(0))
    assert first == sample(RANGES, 5, np.random.default_rng(0))
    assert first != sample(RANGES, 5, np.random.default_rng(1))
    assert len({trial["numpy_dnn.learning_rate"] for trial in first}) == 5


# --------------------------------------------------------------------------------------------
# narrow, rank


def test_narrow_uniform_covers_the_best_and_stays_inside() -> None:
    item = Range("numpy_dnn.dropout", "uniform", 0.0, 0.8)
    assert narrow(item, [0.3, 0.6]) == Range("numpy_dnn.dropout", "uniform", 0.3, 0.6)
    # one best value: a quarter of the old width around it, shifted inside the old range
    assert narrow(item, [0.4]) == Range("numpy_dnn.dropout", "uniform", 0.3, 0.5)
    assert narrow(item, [0.75]) == Range("numpy_dnn.dropout", "uniform", 0.6, 0.8)


def test_narrow_loguniform_works_in_log_space() -> None:
    item = Range("numpy_dnn.learning_rate", "loguniform", 1e-5, 1e-1)
    # 4 decades -> 1 decade centred on the single best in log space: 10^-3.5 .. 10^-2.5
    # (an arithmetic centre would give 0 .. 0.0135, clipped to 1e-5)
    narrowed = narrow(item, [1e-3])
    assert narrowed.kind == "loguniform"
    assert narrowed.low == pytest.approx(10**-3.5, rel=1e-3)
    assert narrowed.high == pytest.approx(10**-2.5, rel=1e-3)
    both = narrow(item, [2e-4, 5e-2])
    assert both.low == pytest.approx(2e-4) and both.high == pytest.approx(5e-2)


def test_narrow_int_stays_int_and_choice_keeps_the_best_values() -> None:
    narrowed = narrow(Range("numpy_dnn.epochs", "int", 1.0, 41.0), [20])
    assert (narrowed.low, narrowed.high) == (15.0, 25.0)
    assert str(narrowed) == "numpy_dnn.epochs=int(15,25)"
    tiny = narrow(Range("numpy_dnn.epochs", "int", 1.0, 2.0), [2])
    assert (tiny.low, tiny.high) == (1.0, 2.0)  # never collapses to low == high
    choice = Range("numpy_dnn.activation", "choice", values=("relu", "tanh", "sigmoid"))
    assert narrow(choice, ["sigmoid", "relu", "sigmoid"]).values == ("relu", "sigmoid")


def _trial(index: int, accuracy: float | None, rate: float, status: str = "success") -> Trial:
    metrics = {} if accuracy is None else {"val.accuracy": accuracy, "val.loss": 1 - accuracy}
    return Trial(f"t{index:02d}", 1, {"numpy_dnn.learning_rate": rate}, status, metrics)


def test_rank_puts_failed_trials_last_whatever_their_metrics() -> None:
    trials = [
        _trial(1, 0.5, 0.1),
        # failed, but carrying (baseline) metrics that would beat everything: never ranked
        _trial(2, 0.99, 0.2, status="failed"),
        _trial(3, 0.9, 0.3),
        _trial(4, None, 0.4, status="failed"),
        _trial(5, 0.7, 0.5),
    ]
    assert [trial.name for trial in rank(trials)] == ["t03", "t05", "t01", "t02", "t04"]
    table = sweep.format_table(trials, ["numpy_dnn.learning_rate"]).splitlines()
    assert table[0].split() == ["rank", "trial", "val.accuracy", "val.loss",
                                "numpy_dnn.learning_rate"]
    assert table[1].split() == ["1", "t03", "0.9000", "0.1000", "0.3"]
    assert table[4].split() == ["-", "t02", "failed", "0.2"]
    assert table[5].split() == ["-", "t04", "failed", "0.4"]


def test_narrow_all_uses_the_top_quarter_of_successful_trials() -> None:
    item = Range("numpy_dnn.learning_rate", "loguniform", 1e-5, 1.0)
    accuracies = [0.1, 0.95, 0.3, 0.9, 0.5, 0.2, 0.4, 0.6]
    rates = [1e-5, 1e-3, 3e-1, 1e-2, 1e-1, 2e-5, 5e-1, 1e-4]
    pairs = enumerate(zip(accuracies, rates, strict=True))
    trials = [_trial(index, accuracy, rate) for index, (accuracy, rate) in pairs]
    trials.append(_trial(99, 1.0, 0.9, status="failed"))
    # 8 successes -> the best 2 (0.95 at 1e-3, 0.9 at 1e-2); the failed one is ignored
    assert sweep.top_quarter(trials) == [trials[1], trials[3]]
    (narrowed,) = narrow_all([item], trials)
    # 1e-3..1e-2 spans 1 decade, under a quarter of 5: widened to 1.25 decades around them
    assert narrowed.low == pytest.approx(10**-3.125, rel=1e-3)
    assert narrowed.high == pytest.approx(10**-1.875, rel=1e-3)
    assert sweep.top_quarter(trials[:3]) == [trials[1]]  # at least one
    with pytest.raises(sweep.SweepError, match="no trial succeeded"):
        narrow_all([item], [_trial(1, None, 0.1, status="failed")])


def test_update_trials_only_trusts_metrics_of_finished_experiments() -> None:
    trials = [_trial(i, None, 0.1, status="queued") for i in range(1, 6)]
    baseline = {"val.accuracy": 0.98, "val.loss": 0.1}
    missing: dict[str, int] = {}
    sweep.update_trials(trials, {
        "t01": ("Running", {}),
        "t02": ("Failed", {}),
        "t03": ("Success", {"val.accuracy": 0.5, "val.loss": 1.0}),
        "t04": ("Success", {}),  # finished without validation metrics: not a result
    }, missing)
    assert [t.status for t in trials] == ["running", "failed", "success", "failed", "queued"]
    assert trials[2].score == 0.5 and trials[1].score is None
    for _ in range(4):
        sweep.update_trials(trials, {"t01": ("Success", baseline)}, missing)
    assert trials[4].status == "failed"  # gone from DVC for 5 polls: removed from the queue
    assert trials[0].score == 0.98


# --------------------------------------------------------------------------------------------
# validation before anything is queued


def _params() -> dict[str, object]:
    return dict(yaml.safe_load((ROOT / "params.yaml").read_text()))


def test_check_trials_rejects_values_the_schema_rejects() -> None:
    raw = _params()
    overrides = sweep.parse_overrides(["epochs=5", "numpy_dnn.hidden_layers=[16]"], "numpy_dnn")
    assert overrides == {"numpy_dnn.epochs": 5, "numpy_dnn.hidden_layers": [16]}
    params = sweep.check_trials(raw, overrides, [{"numpy_dnn.dropout": 0.3}])
    assert params.numpy_dnn.epochs == 5 and params.numpy_dnn.hidden_layers == [16]
    with pytest.raises(ParamsError, match=r"sampled numpy_dnn.dropout=1.2: numpy_dnn.dropout="):
        sweep.check_trials(raw, {}, [{"numpy_dnn.dropout": 0.3}, {"numpy_dnn.dropout": 1.2}])
    with pytest.raises(ParamsError, match="numpy_dnn.epochs=0"):
        sweep.check_trials(raw, sweep.parse_overrides(["epochs=0"], "numpy_dnn"), [])
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        sweep.parse_overrides(["epochs"], "numpy_dnn")
    assert raw == _params()  # overrides never change the caller's mapping


@pytest.fixture
def no_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder where calling DVC or creating the MLflow run fails the test."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bad spec reached DVC or MLflow")

    monkeypatch.setattr(sweep, "run_dvc", forbidden)
    monkeypatch.setattr(sweep, "start_parent_run", forbidden)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sample", "learning_rate=gauss(0,1)"], "unknown distribution 'gauss'"),
        (["--sample", "learning_rate=loguniform(0.1,0.01)"], "low must be below high"),
        (["--sample", "lr=uniform(0,1)"], "unknown param 'lr' for numpy_dnn"),
        (["--trials", "0", "--sample", "l2=uniform(0,1)"], "--trials, --rounds and --jobs"),
        (["--sample", "dropout=uniform(0.5,1.5)"], "numpy_dnn.dropout="),
        (["--sample", "l2=uniform(0,1)", "--set", "epochs=-1"], "numpy_dnn.epochs=-1"),
        (["--sample", "l2=uniform(0,1)", "--set", "nope=1"], "unknown param 'nope'"),
        ([], "give at least one --sample"),
    ],
)
def test_bad_sweeps_exit_2_with_one_line_before_queueing(
    no_dvc: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "--model", "numpy_dnn", *args])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnlab sweep: error: ")
    assert message in lines[0]
    assert sorted(path.name for path in no_dvc.iterdir()) == [".dvc", "params.yaml"]


def test_unknown_model_exits_2_in_a_real_process(tmp_path: Path) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "nnlab.cli", "sweep", "--model", "resnet",
         "--sample", "learning_rate=uniform(0,1)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "nnlab sweep: error: unknown model 'resnet'; choose one of: "
        "numpy_dnn, keras_mlp, cnn, logreg"
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]


# --------------------------------------------------------------------------------------------
# end to end

SAMPLE = "learning_rate=loguniform(1e-3,1e-1)"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this repository with a tiny numpy_dnn and its data stages already run, so
    each trial only trains and evaluates."""
    path = make_project(tmp_path_factory.mktemp("sweep") / "project", {
        "numpy_dnn": {"hidden_layers": [16], "epochs": 3, "early_stopping_patience": None}})
    _run(["dvc", "repro", "split"], path)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "data stages run")
    return path


def _fake_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """A stand-in `dvc` (a shell script body) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text(f"#!/bin/sh\n{script}")
    (bin_dir / "dvc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


@pytest.mark.slow
def test_sweep_ranks_trials_by_validation_and_nests_mlflow_runs(project: Path) -> None:
    output = _run(
        [sys.executable, "-m", "nnlab.cli", "sweep", "--model", "numpy_dnn", "--trials", "3",
         "--jobs", "2", "--sample", SAMPLE, "--set", "numpy_dnn.epochs=1"],
        project,
    )
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank  trial"))
    assert lines[header].split() == ["rank", "trial", "val.accuracy", "val.loss",
                                     "numpy_dnn.learning_rate"]
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    name = re.fullmatch(r"sweep-([0-9a-f]{6})-r1-t0[1-3]", rows[0][1])
    assert name is not None
    sweep_id = name.group(1)
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert sorted(row[1] for row in rows) == [f"sweep-{sweep_id}-r1-t0{i}" for i in (1, 2, 3)]
    accuracies = [float(row[2]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    rates = {row[1]: float(row[4]) for row in rows}
    # seeded: the CLI sampled exactly what sample() draws with --seed 0
    expected = sample([parse_spec(SAMPLE, "numpy_dnn")], 3, np.random.default_rng(0))
    assert [rates[f"sweep-{sweep_id}-r1-t0{i}"] for i in (1, 2, 3)] == [
        trial["numpy_dnn.learning_rate"] for trial in expected
    ]
    assert lines[header + 4] == "Narrowed ranges from the top 1 of 3 successful trials:"
    narrowed = re.fullmatch(r"  --sample 'numpy_dnn.learning_rate=loguniform\((.*),(.*)\)'",
                            lines[header + 5])
    assert narrowed is not None
    low, high = map(float, narrowed.groups())
    assert 1e-3 <= low < rates[rows[0][1]] < high <= 1e-1

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags.get("nnlab.kind") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["nnlab.sweep_id"] == sweep_id
    children = [run for run in runs if run.data.tags.get("model") == "numpy_dnn"
                and run.data.tags.get("nnlab.kind") != "sweep"]
    assert len(children) == 3
    val_accuracy = {}
    for child in children:
        name = child.data.tags["dvc.exp_name"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["nnlab.sweep_id"] == sweep_id
        assert child.info.status == "FINISHED"
        assert float(child.data.params["learning_rate"]) == rates[name]
        assert child.data.params["epochs"] == "1"  # --set reached every trial
        val_accuracy[name] = child.data.metrics["val.accuracy"]
        assert "test.accuracy" in child.data.metrics  # evaluated, just never used to rank
    # ranked by each trial's own validation accuracy (not the baseline's, not test)
    assert [row[1] for row in rows] == sorted(val_accuracy, key=lambda n: -val_accuracy[n])
    for row in rows:
        assert float(row[2]) == pytest.approx(val_accuracy[row[1]], abs=5e-5)
    assert parent.data.metrics["best.val.accuracy"] == max(val_accuracy.values())
    assert float(parent.data.params["best.numpy_dnn.learning_rate"]) == rates[rows[0][1]]
    assert parent.data.params["round1.ranges"] == "numpy_dnn.learning_rate=loguniform(0.001,0.1)"
    assert f"'{parent.data.params['suggested.ranges']}'" in lines[header + 5]
    summary = json.loads(
        Path(mlflow.artifacts.download_artifacts(
            run_id=parent.info.run_id, artifact_path="sweep.json",
            tracking_uri=f"sqlite:///{project / 'mlflow.db'}",
        )).read_text()
    )
    assert summary["rank_metric"] == "val.accuracy"
    assert [trial["name"] for trial in summary["trials"]] == [row[1] for row in rows]
    assert all(not key.startswith("test.") for trial in summary["trials"]
               for key in trial["metrics"])
    assert len(summary["ranges"]) == 2  # sampled from, and suggested for a next round


def test_dvc_calls_do_not_wait_for_daemons_they_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `dvc queue start` daemonizes workers that inherit its stdout; reading a pipe to EOF
    # would block until they exit. A fake `dvc` that leaves a 30 s child stands in for it.
    _fake_dvc(tmp_path, monkeypatch,
              'echo "dvc $*"\nsleep 30 &\n[ "$1" != fail ] || exit 3\n')
    start = time.monotonic()
    assert sweep.run_dvc(["queue", "start", "-j", "2"], tmp_path) == "dvc queue start -j 2\n"
    with pytest.raises(sweep.SweepError, match=r"`dvc fail now` failed: dvc fail now"):
        sweep.run_dvc(["fail", "now"], tmp_path)
    assert time.monotonic() - start < 20


@pytest.mark.slow  # creating and migrating an MLflow store takes a minute on a loaded machine
def test_trial_runs_are_nested_under_the_parent_run(mlflow_store: str) -> None:
    import mlflow

    from nnlab import tracking

    experiment_id = tracking.setup("digits")
    client = mlflow.MlflowClient(mlflow_store)
    parent_id = sweep.start_parent_run("digits", "abc123", "numpy_dnn", {"trials": 3})
    made = {
        name: client.create_run(experiment_id, tags={"dvc.exp_name": name}).info.run_id
        for name in ("sweep-abc123-r1-t01", "sweep-other-r1-t01")
    }
    trials = [_trial(1, 0.8, 0.01), _trial(2, 0.9, 0.02)]
    trials[0].name, trials[1].name = "sweep-abc123-r1-t01", "sweep-abc123-r1-t02"
    sweep.adopt_trial_runs("digits", parent_id, "abc123", trials)
    assert trials[0].run_id == made["sweep-abc123-r1-t01"]
    assert trials[1].run_id is None  # e.g. restored from DVC's run-cache: no run of its own
    tags = client.get_run(made["sweep-abc123-r1-t01"]).data.tags
    assert tags["mlflow.parentRunId"] == parent_id and tags["nnlab.sweep_id"] == "abc123"
    assert "mlflow.parentRunId" not in client.get_run(made["sweep-other-r1-t01"]).data.tags

    result = sweep.SweepResult("abc123", parent_id, [trials],
                               [[RANGES[0]], [narrow(RANGES[0], [0.02])]])
    sweep.finish_parent_run(parent_id, sweep.summarize(result), "FINISHED")
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["nnlab.sweep_id"] == "abc123"
    assert parent.data.metrics["best.val.accuracy"] == 0.9
    assert parent.data.params["best.numpy_dnn.learning_rate"] == "0.02"
    assert parent.data.params["round1.ranges"] == str(RANGES[0])
    assert parent.data.params["suggested.ranges"] == str(narrow(RANGES[0], [0.02]))


def test_wait_retries_exp_show_races_and_times_out_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dvc.exceptions import NotDvcRepoError

    answers: list[sweep.States | Exception] = [
        {"t01": ("Running", {})},
        NotDvcRepoError("directory '.dvc/tmp/exps/tmpx/.dvc' does not exist"),  # a race
        {"t01": ("Success", {"val.accuracy": 0.5, "val.loss": 1.0})},
    ]

    def states(root: Path, model: str, baseline: str) -> sweep.States:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(sweep, "experiment_states", states)
    trials = [_trial(1, None, 0.1, status="queued")]
    printed: list[str] = []
    sweep.wait(Path("."), trials, "numpy_dnn", "HEAD", 60, poll_seconds=0, report=printed.append)
    assert trials[0].status == "success" and printed == ["  1 running", "  1 success"]

    answers[:] = [NotDvcRepoError("gone")] * 3
    stuck = [_trial(2, None, 0.1, status="running")]
    with pytest.raises(sweep.SweepError, match=r"trials still unfinished after 0 s: t02; .*gone"):
        sweep.wait(Path("."), stuck, "numpy_dnn", "HEAD", 0, poll_seconds=0, report=print)


def test_a_sweep_whose_trials_all_fail_names_the_commonest_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in `dvc` whose `queue logs NAME` prints what a failed trial's log holds.
    _fake_dvc(tmp_path, monkeypatch, (
        'echo "Running stage \'train@numpy_dnn\':"\n'
        'case "$3" in\n'
        '  *t03) echo "train@numpy_dnn: error: data/split/train_images.npy: missing" ;;\n'
        '  *) echo "train@numpy_dnn: error: numpy_dnn: training loss blew up" ;;\n'
        'esac\n'
        'echo "ERROR: failed to reproduce \'train@numpy_dnn\'"\n'))
    trials = [Trial(f"sweep-abc-r1-t0{i}", 1, {}, status="failed") for i in (1, 2, 3)]
    assert sweep.failure_summary(tmp_path, trials) == (
        "all 3 trials failed; the commonest cause (2 of 3): train@numpy_dnn: error: "
        "numpy_dnn: training loss blew up; full log: `dvc queue logs sweep-abc-r1-t01`")


def test_ctrl_c_stops_the_trials_and_kills_the_parent_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: str
) -> None:
    # A stand-in `dvc` that records every call; Ctrl-C arrives while the sweep waits.
    calls = tmp_path / "calls.txt"
    _fake_dvc(tmp_path, monkeypatch, f'echo "$*" >> {calls}\n')
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    for args in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit",
                                  "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "wait", interrupted)
    with pytest.raises(sweep.SweepInterrupted) as error:
        sweep.run_sweep("numpy_dnn", [SAMPLE], 2, root=tmp_path, report=lambda line: None)
    message = str(error.value)
    assert message.startswith("interrupted: stopped 2 unfinished trial(s) of sweep ")
    assert message.endswith("is marked KILLED")
    recorded = calls.read_text().splitlines()
    assert recorded[-2].startswith("queue kill sweep-") and len(recorded[-2].split()) == 4
    assert recorded[-1] == "queue remove --queued"
    client = mlflow.MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    (parent,) = client.search_runs([experiment.experiment_id])
    assert parent.info.status == "KILLED"
