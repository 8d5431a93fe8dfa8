from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nnlab.core.schema import ParamsError, flatten
from nnlab.params import SECTIONS, load_params, validate
from tests.support.helpers import ROOT


def _defaults() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())
    return raw


def _with(section: str, key: str | None, value: Any) -> dict[str, Any]:
    """The defaults with section.key = value (section = value for a top-level key)."""
    raw = _defaults()
    if key is None:
        raw[section] = value
    else:
        raw[section][key] = value
    return raw


def test_project_params_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    assert list(params.sections) == list(SECTIONS)
    assert params.data.dataset == _defaults()["data"]["dataset"]
    assert params.section("numpy_dnn").hidden_layers == _defaults()["numpy_dnn"]["hidden_layers"]


@pytest.mark.parametrize("section", list(SECTIONS))
def test_params_yaml_is_the_only_home_of_values(section: str) -> None:
    # The schema holds types and bounds: a key left out is an error, never a hidden default.
    raw = _defaults()
    key = next(iter(raw[section]))
    del raw[section][key]
    with pytest.raises(ParamsError, match=rf"^{section}\.{key}: required key is missing"):
        validate(raw, sections=[section])
    dumped = validate(_defaults()).section(section).model_dump(mode="json")
    assert dumped == _defaults()[section]  # every value comes from params.yaml, unchanged


def test_a_stage_validates_only_its_sections_but_always_the_top_level() -> None:
    raw = _with("keras_mlp", "learning_rate", -1)
    assert validate(raw, sections=["data", "numpy_dnn"]).section("numpy_dnn")  # not keras_mlp's
    with pytest.raises(ParamsError, match=r"keras_mlp\.learning_rate=-1"):
        validate(raw, sections=["data", "keras_mlp"])
    raw["resnet"] = {"depth": 50}
    with pytest.raises(ParamsError, match=r"resnet: unknown section \(misspelled\?\)"):
        validate(raw, sections=[])
    with pytest.raises(RuntimeError, match="'cnn' was not loaded: add it to the stage"):
        validate(_defaults(), sections=["data"]).section("cnn")


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("data", "dataset", "imagenet", r"data\.dataset='imagenet': unknown dataset; choose"),
        ("data", "planar_shape", "spiral", r"data\.planar_shape='spiral': .*flower, moons"),
        ("data", "planar_samples", 5, r"data\.planar_samples=5: .*greater than or equal to 20"),
        ("numpy_dnn", "optimizer", "adamw", r"numpy_dnn\.optimizer='adamw': unknown optimizer"),
        ("numpy_dnn", "activation", "gelu", r"unknown activation; choose one of: relu"),
        ("numpy_dnn", "init", "orthogonal", r"numpy_dnn\.init='orthogonal': unknown init"),
        ("numpy_dnn", "learning_rate", 0, r"numpy_dnn\.learning_rate=0: .*greater than 0"),
        ("keras_mlp", "learning_rate", -0.1, r"keras_mlp\.learning_rate=-0\.1"),
        ("keras_mlp", "dropout", 1.5, r"keras_mlp\.dropout=1\.5: .*less than 1"),
        ("cnn", "block_dropout", -0.1, r"cnn\.block_dropout=-0\.1"),
        ("cnn", "blocks", [], r"cnn\.blocks=\[\]: needs 1 to 8 conv blocks"),
        ("data", "val_fraction", 1.0, r"data\.val_fraction=1\.0"),
        # sane bounds: beyond them a value is a typo, never an experiment
        ("data", "image_size", 100_000, r"data\.image_size=100000: .*less than or equal to 1024"),
        ("data", "val_fraction", 0.9, r"data\.val_fraction=0\.9: .*less than or equal to 0\.5"),
        ("numpy_dnn", "learning_rate", 1e6, r"learning_rate=1000000\.0: .*less than or equal"),
        ("numpy_dnn", "hidden_layers", [10**6], r"at most 64 layers of at most 16384 units"),
        ("numpy_dnn", "epochs", 10**7, r"numpy_dnn\.epochs=10000000: .*less than or equal"),
        ("cnn", "blocks", [{"filters": 10**6, "convs": 1}], r"cnn\.blocks\.0\.filters=1000000"),
        ("cnn", "blocks", [{"filters": 32}], r"cnn\.blocks\.0\.convs: required key is missing"),
        ("logreg", "max_iter", 10**9, r"logreg\.max_iter=1000000000"),
        ("seed", None, -1, r"seed=-1: .*greater than or equal to 0"),
        ("data", "val_fraction", 0, r"data\.val_fraction=0"),
        ("numpy_dnn", "batch_size", 0, r"numpy_dnn\.batch_size=0"),
        ("cnn", "batch_size", -4, r"cnn\.batch_size=-4"),
        ("numpy_dnn", "epochs", "ten", r"numpy_dnn\.epochs='ten': .*valid integer"),
        ("logreg", "C", "strong", r"logreg\.C='strong': .*valid number"),
        ("numpy_dnn", "hidden_layers", [128, 0], r"every layer needs at least 1 unit"),
        ("numpy_dnn", "dropout", 1.5, r"numpy_dnn\.dropout=1\.5: .*less than 1"),
        ("numpy_dnn", "optimizer", "lbfgs", r"choose one of: sgd, momentum, nesterov, adagrad"),
        ("numpy_dnn", "learning_rate_decay", "cosine", r"choose one of: inverse_time, step"),
        ("numpy_dnn", "early_stopping_patience", 0, r"early_stopping_patience=0"),
        ("numpy_dnn", "batch_norm", "yes please", r"numpy_dnn\.batch_norm='yes please'"),
        ("cnn", "preset", "resnet", r"cnn\.preset='resnet': unknown preset; choose one of: deep"),
        ("cnn", "init", "orthogonal", r"cnn\.init='orthogonal': unknown init; .*xavier, he"),
        ("keras_mlp", "optimizer", "nesterov", r"keras_mlp\.optimizer='nesterov'"),
        ("cnn", "augment", {"shift": 0.9, "flip": False}, r"cnn\.augment\.shift=0\.9: .*less"),
        ("cnn", "augment", {"shift": 0, "flip": False, "rotate": 10},
         r"cnn\.augment\.rotate: unknown key"),
        ("models", None, ["numpy_dnn", "cnn"], r"list every registered model once"),
        ("keras_mlp", "early_stopping_patience", 0, r"keras_mlp\.early_stopping_patience=0"),
    ],
)
def test_bad_values_name_key_value_and_rule(
    section: str, key: str | None, value: Any, expected: str
) -> None:
    with pytest.raises(ParamsError, match=expected):
        validate(_with(section, key, value))


def test_misspelled_key_is_rejected_not_ignored() -> None:
    raw = _defaults()
    raw["numpy_dnn"]["learnig_rate"] = 0.01
    with pytest.raises(ParamsError, match=r"numpy_dnn\.learnig_rate: unknown key"):
        validate(raw)


def test_unknown_section_is_rejected() -> None:
    raw = _defaults()
    raw["resnet"] = {"depth": 50}
    with pytest.raises(ParamsError, match=r"resnet: unknown section \(misspelled\?\); "
                       r"params.yaml has: seed, models, data, numpy_dnn"):
        validate(raw)


def test_error_is_one_line_listing_every_problem() -> None:
    raw = _with("numpy_dnn", "learning_rate", -1)
    raw["data"]["val_fraction"] = 2
    with pytest.raises(ParamsError) as info:
        validate(raw)
    message = str(info.value)
    assert "\n" not in message
    assert "numpy_dnn.learning_rate" in message and "data.val_fraction" in message


def test_step_decay_needs_a_rate_below_one() -> None:
    raw = _with("numpy_dnn", "learning_rate_decay", "step")
    raw["numpy_dnn"]["decay_rate"] = 1.5
    expected = r"^numpy_dnn\.decay_rate=1\.5: step decay .* must be in \(0, 1\)$"
    with pytest.raises(ParamsError, match=expected):
        validate(raw)
    raw["numpy_dnn"]["learning_rate_decay"] = "inverse_time"  # lr / (1 + 1.5 k) is fine
    assert validate(raw).section("numpy_dnn").decay_rate == 1.5


def test_null_batch_size_means_full_batch() -> None:
    assert validate(_with("numpy_dnn", "batch_size", None)).section("numpy_dnn").batch_size is None


def test_missing_file_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "params.yaml")
    broken = tmp_path / "params.yaml"
    broken.write_text("seed: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)


def test_unknown_sections_asked_for_are_refused() -> None:
    with pytest.raises(ParamsError, match="unknown params section.* resnet; sections are: data"):
        validate(_defaults(), sections=["data", "resnet"])
    with pytest.raises(ParamsError, match="params must be a mapping of sections, got list"):
        validate([1, 2])


def test_deep_preset_replaces_the_architecture_keys() -> None:
    raw = _defaults()
    raw["cnn"].update(preset="deep", dense_units=[512], learning_rate=0.01)
    cnn = validate(raw).section("cnn")
    assert cnn.dense_units == [50] and cnn.init == "he"
    assert cnn.block_dropout == 0.0 and cnn.dense_dropout == 0.5
    assert cnn.learning_rate == 0.01  # training knobs stay the user's


def test_flatten_nested_blocks() -> None:
    cnn = _defaults()["cnn"]
    flat = flatten(validate(_defaults()).section("cnn"))
    assert [flat[f"blocks.{index}.filters"] for index in range(len(cnn["blocks"]))] == [
        block["filters"] for block in cnn["blocks"]]
    assert flat["augment.shift"] == cnn["augment"]["shift"]
    assert flat["dense_units"] == cnn["dense_units"]


def test_the_neural_models_share_one_schema_for_their_training_fields() -> None:
    from nnlab.core.catalog import MODELS, load
    from nnlab.core.schema import DEEP_CNN, TrainingFields

    shared = set(TrainingFields.model_fields)
    neural = {name: load(entry.params) for name, entry in MODELS.items()
              if "epochs" in load(entry.params).model_fields}
    assert sorted(neural) == ["cnn", "keras_mlp", "numpy_cnn", "numpy_dnn"]
    for name, schema in neural.items():
        assert issubclass(schema, TrainingFields), name
        # Only numpy_dnn widens one (batch_size: None is full-batch descent).
        redefined = {field for field in shared if field in schema.__annotations__}
        assert redefined == ({"batch_size"} if name == "numpy_dnn" else set()), name
    # One DeepConvNet: both presets apply its keys (numpy_cnn also turns batch norm off).
    params = load_params(ROOT / "params.yaml")
    for name in ("cnn", "numpy_cnn"):
        section = type(params.model_params(name)).model_validate(
            {**_defaults()[name], "preset": "deep"})
        assert {key: getattr(section, key) for key in DEEP_CNN} == DEEP_CNN, name
