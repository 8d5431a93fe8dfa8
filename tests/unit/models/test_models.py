"""Every registered model: fit on tiny data, save, load, and predict the same."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from nnlab.models.base import MODELS, History, ImageClassifier, load_model, model_class, new_model
from tests.support.helpers import ROOT, make_images, project_params, section

TENSORFLOW = pytest.mark.tensorflow
# Every model, the Keras ones marked: `make test-fast` leaves those to the full suite.
ALL_MODELS = [pytest.param(name, marks=TENSORFLOW) if name in ("keras_mlp", "cnn") else name
              for name in MODELS]

FAST = {
    # batch_norm: the saved .npz must carry the running statistics too.
    "numpy_dnn": {"epochs": 30, "hidden_layers": [32], "learning_rate": 0.01,
                  "batch_norm": True},
    # batch_norm: batch norm over channels, with its running statistics saved
    "numpy_cnn": {"epochs": 15, "blocks": [{"filters": 8, "convs": 1}], "dense_units": [16],
                  "block_dropout": 0, "dense_dropout": 0, "learning_rate": 0.01,
                  "batch_norm": True, "augment_shift": 0},
    "keras_mlp": {"epochs": 15, "hidden_units": [32], "learning_rate": 0.01},
    "cnn": {"epochs": 10, "dense_units": [16], "blocks": [{"filters": 8, "convs": 1}],
            "block_dropout": 0, "dense_dropout": 0, "learning_rate": 0.01},
    "logreg": {"max_iter": 200},
}


def _fit(
    name: str, n_classes: int
) -> tuple[ImageClassifier, History, NDArray[np.uint8], NDArray[np.int64]]:
    """A model trained on tiny learnable data, its history, validation images and labels."""
    params = project_params({name: FAST[name]})
    images, labels = make_images(20, n_classes, seed=1)
    val_images, val_labels = make_images(6, n_classes, seed=2)
    model = new_model(name, params.model_params(name), seed=0)
    history = model.fit((images, labels), (val_images, val_labels), n_classes)
    return model, history, val_images, val_labels


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_fit_save_load_predict(name: str, n_classes: int, tmp_path: Path) -> None:
    model, history, val_images, val_labels = _fit(name, n_classes)
    assert history and set(history[0]) >= {"epoch", "loss", "accuracy", "val_loss",
                                           "val_accuracy"}
    probabilities = model.predict_proba(val_images)
    assert probabilities.shape == (val_labels.shape[0], n_classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities.argmax(axis=1) == val_labels).mean() >= 0.8, "did not learn"
    assert model.count_params() > 0

    model.save(tmp_path / name)
    restored = load_model(tmp_path / name, name)
    np.testing.assert_allclose(restored.predict_proba(val_images), probabilities, atol=1e-6)
    assert not list((tmp_path / name).glob("*.part")) and not list(
        (tmp_path / name).glob("partial.*")
    )


# Both flavors and both output kinds: the Keras sigmoid unit behind its 2-column head, the
# Keras softmax, numpy_dnn's sigmoid unit and a 3-class scikit-learn model.
@pytest.mark.parametrize(("name", "n_classes"),
                         [pytest.param("keras_mlp", 2, marks=TENSORFLOW),
                          pytest.param("cnn", 3, marks=TENSORFLOW), ("numpy_dnn", 2),
                          ("logreg", 3)])
def test_mlflow_pyfunc_predicts_what_the_model_predicts(
    name: str, n_classes: int, tmp_path: Path, mlflow_store: str
) -> None:
    import mlflow

    from nnlab.models import logged_model
    from nnlab.tracking import mlflow_runs

    model, _, val_images, _ = _fit(name, n_classes)
    probabilities = model.predict_proba(val_images)
    model.save(tmp_path / name)
    metadata = {"model": name, "classes": [str(n) for n in range(n_classes)],
                "dataset": "tiny", "input_shape": [8, 8, 1]}
    with mlflow_runs.training_run("tiny", name, {}, {}) as run_id:
        uri = logged_model.log_model(model, name, tmp_path / name, val_images[:5], metadata)
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc.metadata.metadata == metadata  # what a client needs, with the model
    example = pyfunc.metadata.load_input_example(mlflow.artifacts.download_artifacts(uri))
    np.testing.assert_array_equal(example, val_images[:logged_model.EXAMPLES])
    np.testing.assert_allclose(pyfunc.predict(val_images), probabilities, atol=1e-6)
    assert pyfunc.metadata.run_id == run_id
    flavors = set(pyfunc.metadata.flavors)
    assert ("keras" in flavors) == (name in ("keras_mlp", "cnn")), flavors
    signature = pyfunc.metadata.signature
    assert signature is not None
    assert signature.inputs.to_dict()[0]["tensor-spec"] == {"dtype": "uint8",
                                                           "shape": (-1, 8, 8, 1)}
    assert signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, n_classes)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_loading_an_untrained_model_names_the_fix(name: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `dvc repro` first"):
        load_model(tmp_path, name)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose one of: numpy_dnn"):
        model_class("resnet")


def test_new_model_and_load_model_are_plain_functions(tmp_path: Path) -> None:
    """new_model changes no environment (the process that trains sets the backend's, in
    plain sight), load_model finds the model its train_info.json names, and no classifier's
    constructor branches on a missing params (a loaded model is `restored`)."""
    before = dict(os.environ)
    model, _, images, _ = _fit("numpy_dnn", 2)
    assert dict(os.environ) == before
    model.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="no trained model .* run `dvc repro` first"):
        load_model(tmp_path)
    (tmp_path / "train_info.json").write_text(json.dumps({"model": "numpy_dnn"}))
    restored = load_model(tmp_path)
    assert type(restored) is type(model) and restored.params is None
    np.testing.assert_allclose(restored.predict_proba(images), model.predict_proba(images),
                               atol=1e-6)
    for path in (ROOT / "nnlab/models").rglob("*.py"):
        assert "params is None" not in path.read_text(), path
        assert "params is not None" not in path.read_text(), path


@TENSORFLOW
def test_seed_model_shapes() -> None:
    from nnlab.models.keras.builders import build_cnn, build_mlp

    params = project_params({})
    mlp = build_mlp((8, 8, 1), 10, params.section("keras_mlp"))
    # the defaults: random shifts (no weights), 256 hidden units, dropout (no weights)
    assert [type(layer).__name__ for layer in mlp.layers][:2] == ["RandomTranslation",
                                                                   "Rescaling"]
    assert mlp.count_params() == 64 * 256 + 256 + 256 * 10 + 10
    tutorials_mlp = build_mlp((8, 8, 1), 10, section("keras_mlp", hidden_units=[128]))
    assert tutorials_mlp.count_params() == 64 * 128 + 128 + 128 * 10 + 10  # the tutorials' MLP
    cnn = build_cnn((8, 8, 1), 10, params.section("cnn"))  # VGG-like: two 3x3 convs a block
    assert [type(layer).__name__ for layer in cnn.layers][2:6] == [
        "Conv2D", "Conv2D", "MaxPooling2D", "Dropout"]
    conv = ((3 * 3 * 1 * 32 + 32) + (3 * 3 * 32 * 32 + 32)
            + (3 * 3 * 32 * 64 + 64) + (3 * 3 * 64 * 64 + 64))
    dense = (2 * 2 * 64) * 512 + 512 + 512 * 10 + 10
    assert cnn.count_params() == conv + dense
    assert cnn.output_shape == (None, 10)
    one_conv_blocks = [{"filters": 32, "convs": 1}, {"filters": 64, "convs": 1}]
    tutorials_cnn = build_cnn((8, 8, 1), 10, section("cnn", blocks=one_conv_blocks))
    assert tutorials_cnn.count_params() == (3 * 3 * 1 * 32 + 32) + (3 * 3 * 32 * 64 + 64) + dense


@TENSORFLOW
def test_mlp_builder_options() -> None:
    from nnlab.models.keras.builders import build_mlp

    params = project_params({"keras_mlp": {
        "hidden_units": [32, 16], "batch_norm": True, "dropout": 0.2, "init": "he",
        "augment": {"shift": 0, "flip": False}}})
    mlp = build_mlp((8, 8, 1), 2, params.section("keras_mlp"))
    kinds = [type(layer).__name__ for layer in mlp.layers]
    assert kinds == ["Rescaling", "Flatten"] + ["Dense", "BatchNormalization", "Activation",
                                                "Dropout"] * 2 + ["Dense"]
    # Dense without bias + BN's gamma, beta, moving mean and variance; one sigmoid unit out.
    assert mlp.count_params() == (64 * 32 + 4 * 32) + (32 * 16 + 4 * 16) + (16 + 1)
    assert mlp.output_shape == (None, 1)
    assert type(mlp.layers[2].kernel_initializer).__name__ == "HeNormal"


@TENSORFLOW
def test_deep_preset_is_the_seeds_deep_conv_net() -> None:
    from nnlab.models.keras.builders import build_cnn

    params = project_params({"cnn": {"preset": "deep"}})
    assert [(block.filters, block.convs) for block in params.section("cnn").blocks] == [
        (16, 2), (32, 2), (64, 2)
    ]
    cnn = build_cnn((28, 28, 1), 10, params.section("cnn"))
    kinds = [type(layer).__name__ for layer in cnn.layers]
    assert kinds.count("Conv2D") == 6 and kinds.count("MaxPooling2D") == 3
    convs = (9 * 1 * 16 + 16) + (9 * 16 * 16 + 16) + (9 * 16 * 32 + 32) + (9 * 32 * 32 + 32) \
        + (9 * 32 * 64 + 64) + (9 * 64 * 64 + 64)
    # 28 -> 14 -> 7 -> 4 ('same' pooling), then Dense 50 and the output
    assert cnn.count_params() == convs + (4 * 4 * 64 * 50 + 50) + (50 * 10 + 10) == 123_552
    assert kinds[-4:] == ["Flatten", "Dense", "Dropout", "Dense"]
    assert cnn.layers[-2].rate == 0.5
    assert all(type(layer.kernel_initializer).__name__ == "HeNormal"
               for layer in cnn.layers if hasattr(layer, "kernel_initializer"))


@TENSORFLOW
def test_augmentation_runs_in_training_only() -> None:
    from nnlab.models.keras.builders import build_cnn

    params = project_params({"cnn": FAST["cnn"] | {"augment": {"shift": 0.25, "flip": True}}})
    cnn = build_cnn((8, 8, 1), 3, params.section("cnn"))
    kinds = [type(layer).__name__ for layer in cnn.layers]
    assert kinds[:3] == ["RandomTranslation", "RandomFlip", "Rescaling"]
    images, _ = make_images(4, 3, seed=3)
    inference = [np.asarray(cnn(images, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    assert not np.allclose(np.asarray(cnn(images, training=True)), inference[0])


@TENSORFLOW
def test_keras_training_is_deterministic() -> None:
    # augmentation, dropout and early stopping: every random draw comes from the seed
    params = project_params({"cnn": FAST["cnn"] | {"epochs": 2, "block_dropout": 0.2,
                                             "augment": {"shift": 0.1, "flip": True},
                                             "early_stopping_patience": 1}})
    images, labels = make_images(10, 3, seed=1)

    def train() -> list[dict[str, float]]:
        model = new_model("cnn", params.section("cnn"), seed=5)
        return model.fit((images, labels), (images, labels), 3)

    assert train() == train()


@TENSORFLOW
def test_keras_input_pipelines_cover_each_epoch_once_and_validation_once_in_order() -> None:
    from nnlab.models.keras.inputs import EVAL_BATCH, evaluation_batches, training_batches

    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * 3
    labels = np.arange(10, dtype=np.int64)

    def epochs(seed: int, count: int) -> list[list[int]]:
        batches = iter(training_batches(images, labels, 4, seed))  # 3 batches an epoch
        orders = []
        for _ in range(count):
            epoch = [next(batches) for _ in range(3)]
            assert [len(batch[1]) for batch in epoch] == [4, 4, 2]
            order = [int(label) for _, batch_labels in epoch for label in batch_labels]
            # images stay with their labels
            assert [int(pixel) for batch, _ in epoch for pixel in np.asarray(batch).ravel()] == [
                3 * label for label in order]
            orders.append(order)
        return orders

    first = epochs(seed=7, count=3)
    assert all(sorted(order) == list(range(10)) for order in first)  # each image once an epoch
    assert len({tuple(order) for order in first}) == 3  # a new order every epoch
    assert epochs(seed=7, count=3) == first  # the same orders for the same seed
    assert epochs(seed=8, count=3) != first

    val_images = np.zeros((EVAL_BATCH + 5, 2, 2, 1), np.uint8)
    val_labels = np.arange(EVAL_BATCH + 5, dtype=np.int64)
    passes = list(evaluation_batches(val_images, val_labels))  # ends after one pass
    assert [len(batch_labels) for _, batch_labels in passes] == [EVAL_BATCH, 5]
    assert np.concatenate([batch_labels for _, batch_labels in passes]).tolist() == list(
        range(EVAL_BATCH + 5))


@pytest.mark.parametrize("name", ["numpy_dnn", "numpy_cnn", "logreg"])
def test_numpy_dnn_and_logreg_never_import_tensorflow(name: str) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from nnlab.models.base import model_class; from nnlab import params; "
        f"model_class({name!r}); params.load_params(sections=['data', {name!r}]); "
        "import stages.train, stages.evaluate; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@TENSORFLOW
def test_keras_divergence_is_a_clear_error() -> None:
    from nnlab.core.errors import DivergenceError

    # SGD at learning rate 10: the loss climbs into the thousands and stays there; the
    # callback stops training after 3 such epochs, not at the end of all 20.
    params = project_params({"keras_mlp": {"optimizer": "sgd", "learning_rate": 10.0, "epochs": 20,
                                     "early_stopping_patience": None}})
    images, labels = make_images(20, 3, seed=1)
    model = new_model("keras_mlp", params.section("keras_mlp"), seed=0)
    with pytest.raises(DivergenceError, match=r"for 3 epoch\(s\) in epoch [3-6]: it diverged; "
                       r"lower keras_mlp\.learning_rate \(now 10\), e\.g\. to 1$"):
        model.fit((images, labels), (images, labels), 3)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_learns_planar_points(name: str) -> None:
    # planar data is 1x2 one-channel "images": the CNN's 3x3 convs and 2x2 pools must cope.
    from nnlab.data import planar

    dataset = planar.load(Path("unused"), project_params({"data": {"planar_shape": "moons"}}).data)
    # Batch norm over 1x2 maps of 32 points is too noisy to learn the moons in 15 epochs
    # (0.70 here): numpy_cnn goes without it on the plane.
    changes = FAST[name] | ({"batch_norm": False, "epochs": 30} if name == "numpy_cnn" else {})
    model = new_model(name, project_params({name: changes}).model_params(name), seed=0)
    model.fit((dataset.images, dataset.labels), (dataset.images[:50], dataset.labels[:50]), 2)
    accuracy = (model.predict_proba(dataset.images).argmax(axis=1) == dataset.labels).mean()
    assert accuracy > 0.75, f"{name} reached only {accuracy:.2f} on the two moons"


def test_numpy_dnn_says_when_early_stopping_restored_an_epoch(
        capsys: pytest.CaptureFixture[str]) -> None:
    params = project_params({"numpy_dnn": {"epochs": 200, "hidden_layers": [64],
                                     "learning_rate": 0.01, "early_stopping_patience": 2}})
    images, labels = make_images(40, 3, seed=1)
    other_images, _ = make_images(40, 3, seed=3)
    rng = np.random.default_rng(0)
    unrelated = rng.integers(0, 3, len(other_images))  # validation loss soon rises
    model = new_model("numpy_dnn", params.section("numpy_dnn"), seed=0)
    history = model.fit((images, labels), (other_images, unrelated), 3)
    assert len(history) < 200
    best = int(np.argmin([row["val_loss"] for row in history])) + 1
    assert f"early stopping after epoch {len(history)}" in capsys.readouterr().err
    assert len(history) == best + 2
