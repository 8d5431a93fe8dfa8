"""`nnlab sweep`, without DVC: spec parsing, the schema checks, the narrowing sampler on a toy
objective, the study's plan and storage errors, surplus trials and the ranked report.
Real workers, DVC experiments and MLflow runs are in test_sweep_e2e.py."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from nnlab import cli
from nnlab.core.errors import Pruned
from nnlab.core.schema import ParamsError
from nnlab.search import runner
from nnlab.search.narrowing import NarrowingSampler, narrow, narrowed_ranges, top_quarter
from nnlab.search.space import (
    Range,
    check_bounds,
    distribution,
    from_distribution,
    parse_overrides,
    parse_spec,
    suggest,
)
from nnlab.search.storage import StorageError, masked, open_storage
from nnlab.search.study import Plan, SweepError, open_study
from nnlab.search.study_report import format_table, study_report
from nnlab.search.trial import SURPLUS_ATTR, exp_name, is_surplus
from nnlab.search.trial_link import ENV, TrialLink, report_every
from tests.support.helpers import ROOT

optuna.logging.set_verbosity(optuna.logging.WARNING)

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
         "unknown param 'learnin_rate' for numpy_dnn; choose one of: seed, learning_rate,"),
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


def _toy_study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=sampler)


def test_narrowing_sampler_narrows_round_two_around_the_best_quarter() -> None:
    # A toy objective with its peak at x = 0.3: round 1 (20 trials) samples all of [0, 1];
    # round 2 only the range narrowed around the best 5, which holds the peak.
    item = Range("numpy_dnn.dropout", "uniform", 0.0, 1.0)
    study = _toy_study(NarrowingSampler(rounds=2, round_size=20, seed=0))
    study.optimize(lambda trial: -(suggest(trial, [item])[item.key] - 0.3) ** 2, n_trials=40)
    first = [t.params[item.key] for t in study.trials[:20]]
    second = [t.params[item.key] for t in study.trials[20:]]
    narrowed = narrowed_ranges([item], study.trials[:20])[0]
    assert narrowed.low <= 0.3 <= narrowed.high
    assert narrowed.high - narrowed.low < 0.5
    assert max(first) - min(first) > 0.8  # round 1: the whole range
    assert all(narrowed.low <= value <= narrowed.high for value in second)
    best_first = max(t.value for t in study.trials[:20] if t.value is not None)
    assert study.best_value >= best_first  # the narrowed round finds at least as good
    assert abs(study.best_params[item.key] - 0.3) < 0.05


def test_narrowing_sampler_is_seeded_and_narrows_choices_and_ints() -> None:
    ranges = [Range("numpy_dnn.activation", "choice", values=("relu", "tanh", "sigmoid")),
              Range("numpy_dnn.epochs", "int", 1.0, 41.0)]

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, ranges)
        return (values["numpy_dnn.activation"] == "tanh") - abs(values["numpy_dnn.epochs"] - 20)

    runs = []
    for _ in range(2):
        study = _toy_study(NarrowingSampler(rounds=2, round_size=16, seed=3))
        study.optimize(objective, n_trials=32)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]
    second = runs[0][16:]
    assert {params["numpy_dnn.activation"] for params in second} <= {"tanh", "relu", "sigmoid"}
    narrowed = narrowed_ranges(ranges, study.trials[:16])
    assert narrowed[0].values and set(narrowed[0].values) < {"relu", "tanh", "sigmoid"}
    assert all(narrowed[1].low <= params["numpy_dnn.epochs"] <= narrowed[1].high
               for params in second)


def test_choices_that_are_lists_go_through_optuna_and_back() -> None:
    item = parse_spec("hidden_layers=choice([16],[32, 16],[])", "numpy_dnn")
    assert from_distribution(item.key, distribution(item)) == item
    study = _toy_study(optuna.samplers.RandomSampler(seed=0))
    seen = []
    study.optimize(lambda trial: float(len(seen.append(suggest(trial, [item])) or seen)),
                   n_trials=12)
    assert {tuple(values[item.key]) for values in seen} == {(16,), (32, 16), ()}


def test_a_list_of_sections_is_one_param_sampled_and_set_whole() -> None:
    """cnn.blocks is a list of blocks: a sweep samples or fixes the whole list (its items
    cannot be set alone), and the schema checks every block before any trial runs."""
    vgg = [{"filters": 32, "convs": 2}, {"filters": 64, "convs": 2}]
    item = parse_spec("blocks=choice([{filters: 32, convs: 1}],"
                      "[{filters: 32, convs: 2}, {filters: 64, convs: 2}])", "cnn")
    assert item.key == "cnn.blocks" and item.values[1] == vgg
    assert from_distribution(item.key, distribution(item)) == item
    assert parse_overrides(["blocks=[{filters: 32, convs: 2}, {filters: 64, convs: 2}]"],
                           "cnn") == {"cnn.blocks": vgg}
    with pytest.raises(ParamsError, match="unknown param 'blocks.0.filters'"):
        parse_overrides(["blocks.0.filters=16"], "cnn")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert check_bounds(raw, {"cnn.blocks": vgg}, [item]).section("cnn").blocks[1].convs == 2
    bad = parse_spec("blocks=choice([{filters: 0, convs: 1}])", "cnn")
    with pytest.raises(ParamsError, match=r"cnn\.blocks=\[\{convs: 1, filters: 0\}\] is "
                                          "refused"):
        check_bounds(raw, {}, [bad])


def test_top_quarter_and_narrowed_ranges_ignore_pruned_and_failed_trials() -> None:
    item = Range("numpy_dnn.learning_rate", "loguniform", 1e-5, 1.0)
    study = _toy_study(optuna.samplers.RandomSampler(seed=0))
    dist = {item.key: distribution(item)}
    rates = [1e-5, 1e-3, 3e-1, 1e-2, 1e-1, 2e-5, 5e-1, 1e-4]
    accuracies = [0.1, 0.95, 0.3, 0.9, 0.5, 0.2, 0.4, 0.6]
    for rate, accuracy in zip(rates, accuracies, strict=True):
        study.add_trial(optuna.trial.create_trial(params={item.key: rate}, distributions=dist,
                                                  value=accuracy))
    study.add_trial(optuna.trial.create_trial(  # pruned at a high value: never "best"
        params={item.key: 0.9}, distributions=dist, state=optuna.trial.TrialState.PRUNED,
        intermediate_values={1: 0.99}))
    best = top_quarter(study.trials)
    assert [t.params[item.key] for t in best] == [1e-3, 1e-2]
    (narrowed,) = narrowed_ranges([item], study.trials)
    # 1e-3..1e-2 spans 1 decade, under a quarter of 5: widened to 1.25 decades around them
    assert narrowed.low == pytest.approx(10**-3.125, rel=1e-3)
    assert narrowed.high == pytest.approx(10**-1.875, rel=1e-3)
    table = format_table(study.trials, [item.key]).splitlines()
    assert table[0].split() == ["rank", "trial", "state", "val.accuracy", "epochs_run",
                                "experiment", "learning_rate"]
    assert table[1].split() == ["1", "1", "COMPLETE", "0.9500", "0.001"]
    assert table[-1].split() == ["-", "8", "PRUNED", "(0.9900)", "1", "0.9"]


# --------------------------------------------------------------------------------------------
# the plan, checked before anything runs


def _params() -> dict[str, object]:
    return dict(yaml.safe_load((ROOT / "params.yaml").read_text()))


def test_check_bounds_refuses_a_range_the_schema_refuses() -> None:
    raw = _params()
    overrides = parse_overrides(["epochs=5", "numpy_dnn.hidden_layers=[16]"], "numpy_dnn")
    assert overrides == {"numpy_dnn.epochs": 5, "numpy_dnn.hidden_layers": [16]}
    ok = [parse_spec("dropout=uniform(0.0,0.5)", "numpy_dnn")]
    params = check_bounds(raw, overrides, ok)
    section = params.section("numpy_dnn")
    assert section.epochs == 5 and section.hidden_layers == [16]
    with pytest.raises(ParamsError, match=r"dropout=uniform\(0.5,1.5\)'.*dropout=1.5 is refus"):
        check_bounds(raw, {}, [parse_spec("dropout=uniform(0.5,1.5)", "numpy_dnn")])
    with pytest.raises(ParamsError, match="activation=swish is refused"):
        check_bounds(raw, {}, [parse_spec("activation=choice(relu,swish)", "numpy_dnn")])
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        parse_overrides(["epochs"], "numpy_dnn")
    del raw["numpy_dnn"]["l2"]  # type: ignore[attr-defined]
    with pytest.raises(ParamsError, match=r"numpy_dnn.l2 is not in params.yaml, so `dvc exp "
                       r"run -S` cannot set it: add it there"):
        check_bounds(raw, {}, [parse_spec("l2=uniform(0,0.1)", "numpy_dnn")])
    raw = _params()
    assert raw == _params()  # overrides never change the caller's mapping


@pytest.fixture
def no_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder where opening a study or calling DVC fails the test."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bad sweep reached the study or DVC")

    monkeypatch.setattr(runner, "open_study", forbidden)
    monkeypatch.setattr(runner.dvc, "baseline_rev", forbidden)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sample", "learning_rate=gauss(0,1)"], "unknown distribution 'gauss'"),
        (["--sample", "learning_rate=loguniform(0.1,0.01)"], "low must be below high"),
        (["--sample", "lr=uniform(0,1)"],
         "unknown param 'lr' for numpy_dnn; choose one of: seed, learning_rate, batch_size"),
        (["--trials", "0", "--sample", "l2=uniform(0,1)"], "--trials, --workers, --rounds"),
        (["--sample", "dropout=uniform(0.5,1.5)"], "numpy_dnn.dropout=1.5 is refused"),
        (["--sample", "l2=uniform(0,1)", "--set", "epochs=-1"], "numpy_dnn.epochs=-1"),
        (["--sample", "l2=uniform(0,1)", "--set", "nope=1"], "unknown param 'nope'"),
        (["--sample", "l2=uniform(0,1)", "--sampler", "grid"], "--sampler 'grid': choose one"),
        (["--sample", "l2=uniform(0,1)", "--pruner", "asha"], "--pruner 'asha': choose one"),
        (["--sample", "l2=uniform(0,1)", "--rounds", "2", "--sampler", "tpe"],
         "needs --sampler narrowing"),
        (["--sample", "l2=uniform(0,1)", "--study", "a b"], "--study 'a b': use 1-64"),
        ([], "give at least one --sample"),
    ],
)
def test_bad_sweeps_exit_2_with_one_line_before_anything_runs(
    no_dvc: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "--study", "s", "--model", "numpy_dnn", *args])
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
        [sys.executable, "-m", "nnlab.cli", "sweep", "--study", "s", "--model", "resnet",
         "--sample", "learning_rate=uniform(0,1)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "nnlab sweep: error: unknown model 'resnet'; choose one of: "
        "numpy_dnn, numpy_cnn, keras_mlp, cnn, logreg"
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]


# --------------------------------------------------------------------------------------------
# the study: storage, plan, surplus


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://nnlab:secret@127.0.0.1:9/optuna",
    "grpc://127.0.0.1:9",
])
def test_an_unreachable_storage_is_one_line_naming_the_url_and_the_fix(url: str) -> None:
    with pytest.raises(StorageError) as error:
        open_storage(url)
    message = str(error.value)
    assert "\n" not in message and masked(url) in message and "secret" not in message
    assert "make server" in message and "--storage" in message


@pytest.mark.slow  # processes racing for seconds: `make test` only
def test_processes_that_make_a_new_storage_at_once_all_open_it(tmp_path: Path) -> None:
    """Two sweep commands started together on a new SQLite file: Optuna's table creation
    races (`table studies already exists`, alembic_version's UNIQUE constraint); each
    process still opens the storage and uses it. (With CREATE_ATTEMPTS = 1 this fails.)"""
    import time

    for round_number in range(3):
        url = f"sqlite:///{tmp_path / f'optuna-{round_number}.db'}"
        start = time.time() + 2  # every process imported Optuna, then all open at once
        code = textwrap.dedent(f"""
            import os, time, optuna
            from nnlab.search.storage import open_storage
            while time.time() < {start}:
                pass
            optuna.create_study(storage=open_storage({url!r}), study_name=str(os.getpid()))
            """)
        processes = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                                      stderr=subprocess.PIPE) for _ in range(4)]
        errors = [process.communicate(timeout=120)[1] for process in processes]
        assert [process.returncode for process in processes] == [0] * 4, errors
        assert len(optuna.get_all_study_names(open_storage(url))) == 4


def _plan(**changes: object) -> Plan:
    base = {"model": "numpy_dnn", "space": ["numpy_dnn.learning_rate=loguniform(0.001,0.1)"],
            "targets": ["evaluate@numpy_dnn"], "trials": 4}
    return Plan(**{**base, **changes})  # type: ignore[arg-type]


def test_a_study_with_another_search_is_refused_unless_resumed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, plan = open_study(url, "lr", _plan())
    assert plan == _plan()
    joined, stored = open_study(url, "lr", _plan())  # the same command on another machine
    assert joined._study_id == study._study_id and stored == plan
    _, worker_plan = open_study(url, "lr")  # a worker reads the study's own plan
    assert worker_plan == plan
    other = _plan(space=["numpy_dnn.dropout=uniform(0,0.5)"])
    with pytest.raises(SweepError, match=r"study 'lr' in .* searches something else \(space "
                       r".*dropout.* here, .*learning_rate.* in the study\); pick a new --study,"
                       r" or pass --resume"):
        open_study(url, "lr", other)
    _, resumed = open_study(url, "lr", other, resume=True)
    assert resumed == other and open_study(url, "lr")[1] == other
    _, more = open_study(url, "lr", _plan(space=other.space, trials=9))  # a new target
    assert more.trials == 9
    with pytest.raises(SweepError, match="no study 'nope'"):
        open_study(url, "nope")


def test_workers_asking_at_once_never_run_more_than_n_trials() -> None:
    study = optuna.create_study(direction="maximize")
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(value=0.5))
    running = [study.ask() for _ in range(3)]  # numbers 3, 4, 5 asked at the same moment
    assert [is_surplus(study, trial.number, 4) for trial in running] == [False, True, True]
    study.tell(running[0], 0.6)
    assert is_surplus(study, running[1].number, 4)  # still: 4 trials below it finished
    assert exp_name("lr", 7) == "lr-t007"
    assert SURPLUS_ATTR == "nnlab.surplus"


def test_the_report_counts_states_and_prints_narrowed_ranges(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, plan = open_study(url, "lr", _plan())
    item = plan.ranges()[0]
    for rate, value in [(0.002, 0.8), (0.02, 0.9), (0.05, 0.7), (0.003, 0.85)]:
        study.add_trial(optuna.trial.create_trial(
            params={item.key: rate}, distributions={item.key: distribution(item)}, value=value,
            user_attrs={"dvc.exp_name": f"lr-t{len(study.trials):03d}"}))
    lines = study_report(study, plan).splitlines()
    assert lines[0] == ("Study 'lr': numpy_dnn, 4 trials wanted; 4 complete (sampler tpe, "
                        "pruner median)")
    assert lines[3].split() == ["1", "1", "COMPLETE", "0.9000", "lr-t001", "0.02"]
    assert lines[-2] == "Narrowed ranges from the top 1 of 4 complete trials (for a next study):"
    assert lines[-1].startswith("  --sample 'numpy_dnn.learning_rate=loguniform(")
    assert not math.isnan(float(lines[3].split()[3]))
    assert np.isclose(sum(t.value or 0 for t in study.trials), 3.25)


def test_a_trials_stages_report_each_epoch_and_are_pruned_when_they_lag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, plan = open_study(url, "lr", _plan(max_epochs=10))  # median: from epoch 2
    for _ in range(4):  # four complete trials at 0.9 in every epoch
        study.add_trial(optuna.trial.create_trial(
            value=0.9, intermediate_values={epoch: 0.9 for epoch in range(1, 11)}))
    trial = study.ask()
    link = TrialLink(url, "lr", trial._trial_id, trial.number, "median", 10, "parent-id")
    monkeypatch.setenv(ENV, link.to_env()[ENV])
    assert TrialLink.from_env() == link
    assert link.mlflow_tags() == {"nnlab.study": "lr", "nnlab.trial": "4",
                                  "mlflow.parentRunId": "parent-id"}
    link.record_run("run-id")
    report = link.epoch_reporter()
    report({"epoch": 1, "val_accuracy": 0.2})  # epoch 1: still in the warm-up
    with pytest.raises(Pruned, match=r"trial 4 of study 'lr' pruned by the median pruner "
                       r"after epoch 2 \(val_accuracy 0.2500\)") as stop:
        report({"epoch": 2, "val_accuracy": 0.25})
    assert stop.value.epoch == 2
    stored = study._storage.get_trial(trial._trial_id)
    assert stored.intermediate_values == {1: 0.2, 2: 0.25}
    assert stored.user_attrs["mlflow_run_id"] == "run-id"
    monkeypatch.setenv(ENV, "{not json")
    with pytest.raises(ValueError, match="NNLAB_TRIAL is set but unreadable"):
        TrialLink.from_env()


def test_a_long_trial_reports_on_one_grid_of_at_most_100_epochs(tmp_path: Path) -> None:
    assert [report_every(epochs) for epochs in (None, 1, 100, 101, 250, 2000)] == \
        [1, 1, 1, 2, 3, 20]
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, _ = open_study(url, "long", _plan(max_epochs=250))
    trial = study.ask()
    report = TrialLink(url, "long", trial._trial_id, trial.number, "none", 250,
                       None).epoch_reporter()
    for epoch in range(1, 251):
        report({"epoch": epoch, "val_accuracy": epoch / 250})
    values = study._storage.get_trial(trial._trial_id).intermediate_values
    assert list(values) == list(range(3, 250, 3)) and values[249] == 249 / 250
