"""Every registered model: fit on tiny data, save, load, and predict the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnlab.models import MODELS, get_model_class
from nnlab.params import validate
from tests.conftest import make_images

FAST = {
    # batch_norm: the saved .npz must carry the running statistics too.
    "numpy_dnn": {"epochs": 30, "hidden_layers": [32], "learning_rate": 0.01,
                  "batch_norm": True},
    "keras_mlp": {"epochs": 15, "hidden_units": [32], "learning_rate": 0.01},
    "cnn": {"epochs": 10, "dense_units": [16], "blocks": [{"filters": 8}], "block_dropout": 0,
            "dense_dropout": 0, "learning_rate": 0.01},
    "logreg": {"max_iter": 200},
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_fit_save_load_predict(name: str, n_classes: int, tmp_path: Path) -> None:
    params = validate({name: FAST[name]})
    images, labels = make_images(20, n_classes, seed=1)
    val_images, val_labels = make_images(6, n_classes, seed=2)
    model = get_model_class(name)(params.model_params(name), seed=0)
    history = model.fit((images, labels), (val_images, val_labels), n_classes)
    assert history and set(history[0]) >= {"epoch", "loss", "accuracy", "val_loss",
                                           "val_accuracy"}
    probabilities = model.predict_proba(val_images)
    assert probabilities.shape == (val_labels.shape[0], n_classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities.argmax(axis=1) == val_labels).mean() >= 0.8, "did not learn"
    assert model.count_params() > 0

    model.save(tmp_path / name)
    restored = get_model_class(name).load(tmp_path / name)
    np.testing.assert_allclose(restored.predict_proba(val_images), probabilities, atol=1e-6)
    assert not list((tmp_path / name).glob("*.part")) and not list(
        (tmp_path / name).glob("partial.*")
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_loading_an_untrained_model_names_the_fix(name: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `dvc repro` first"):
        get_model_class(name).load(tmp_path)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose one of: numpy_dnn"):
        get_model_class("resnet")


def test_seed_model_shapes() -> None:
    from nnlab.keras_models import build_cnn, build_mlp

    params = validate({})
    mlp = build_mlp((8, 8, 1), 10, params.keras_mlp)
    assert mlp.count_params() == 64 * 128 + 128 + 128 * 10 + 10
    cnn = build_cnn((8, 8, 1), 10, params.cnn)
    conv = (3 * 3 * 1 * 32 + 32) + (3 * 3 * 32 * 64 + 64)
    dense = (2 * 2 * 64) * 512 + 512 + 512 * 10 + 10
    assert cnn.count_params() == conv + dense
    assert cnn.output_shape == (None, 10)


def test_keras_training_is_deterministic() -> None:
    params = validate({"cnn": FAST["cnn"] | {"epochs": 2}})
    images, labels = make_images(10, 3, seed=1)

    def train() -> list[dict[str, float]]:
        model = get_model_class("cnn")(params.cnn, seed=5)
        return model.fit((images, labels), (images, labels), 3)

    assert train() == train()


def test_numpy_dnn_never_imports_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from nnlab.models import get_model_class; "
        "get_model_class('numpy_dnn'); import stages.train, stages.evaluate; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_keras_divergence_is_a_clear_error() -> None:
    from nnlab.errors import DivergenceError

    params = validate({"keras_mlp": {"optimizer": "sgd", "learning_rate": 1e12, "epochs": 3}})
    images, labels = make_images(20, 3, seed=1)
    model = get_model_class("keras_mlp")(params.keras_mlp, seed=0)
    with pytest.raises(DivergenceError, match=r"lower keras_mlp\.learning_rate \(now 1e\+12\)"):
        model.fit((images, labels), (images, labels), 3)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_learns_planar_points(name: str) -> None:
    # planar data is 1x2 one-channel "images": the CNN's 3x3 convs and 2x2 pools must cope.
    from nnlab.datasets import planar

    dataset = planar.load(Path("unused"), validate({"data": {"planar_shape": "moons"}}).data)
    model = get_model_class(name)(validate({name: FAST[name]}).model_params(name), seed=0)
    model.fit((dataset.images, dataset.labels), (dataset.images[:50], dataset.labels[:50]), 2)
    accuracy = (model.predict_proba(dataset.images).argmax(axis=1) == dataset.labels).mean()
    assert accuracy > 0.75, f"{name} reached only {accuracy:.2f} on the two moons"
