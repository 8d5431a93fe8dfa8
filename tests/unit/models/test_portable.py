"""nnlab/models/portable.py, the inference that travels with a logged model: equal to the
training code's own forward pass for every layer the builders make, on its own imports, and
one line naming the file for a tampered model."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnlab.arrays.contract import Split, to_features, to_float_images
from nnlab.models import portable
from nnlab.models.base import load_predictor, model_class
from nnlab.models.numpy import conv, layers
from nnlab.models.numpy.convnet import build_cnn
from nnlab.models.numpy.network import Network, build_mlp

RNG = np.random.default_rng(3)


def _randomized(network: Network) -> Network:
    """Every weight and running statistic drawn at random (a freshly built network has
    batch norm at its identity, which would hide a wrong formula)."""
    arrays = {}
    for key, value in network.weights().items():
        drawn = RNG.standard_normal(value.shape).astype(np.float32) * 0.3
        arrays[key] = np.abs(drawn) + 0.5 if key.endswith("running_var") else drawn
    network.set_weights(arrays)
    return network


NETWORKS = {
    "mlp, batch norm, dropout": ((8, 8, 1), True, lambda: build_mlp(
        64, [32, 16], 10, "relu", "he", RNG, dropout=0.2, batch_norm=True)),
    "mlp, leaky relu, 2 classes": ((8, 8, 1), True, lambda: build_mlp(
        64, [12], 2, "leaky_relu", "he", RNG)),
    "mlp, tanh": ((4, 4, 3), True, lambda: build_mlp(48, [9], 3, "tanh", "xavier", RNG)),
    "mlp, sigmoid": ((6, 6, 1), True, lambda: build_mlp(36, [5], 4, "sigmoid", "xavier", RNG)),
    "mlp, no hidden layer": ((6, 6, 1), True, lambda: build_mlp(36, [], 4, "relu", "he", RNG)),
    "cnn, batch norm, odd sizes": ((9, 7, 3), False, lambda: build_cnn(
        (9, 7, 3), [(4, 2), (6, 1)], 5, "he", RNG, block_dropout=0.1, dense_units=[12],
        dense_dropout=0.2, batch_norm=True)),
    "cnn, 2 classes": ((8, 8, 1), False, lambda: build_cnn((8, 8, 1), [(3, 1)], 2, "he", RNG)),
    "cnn, the deep preset": ((28, 28, 1), False, lambda: build_cnn(
        (28, 28, 1), [], 10, "he", RNG, preset="deep")),
}


@pytest.mark.parametrize("case", NETWORKS)
def test_portable_equals_the_training_forward_pass(case: str, tmp_path: Path) -> None:
    shape, flat, build = NETWORKS[case]
    network = _randomized(build())
    np.savez(tmp_path / portable.WEIGHTS_FILE, **network.to_arrays(shape, flat))
    images = RNG.integers(0, 256, (portable.CHUNK_IMAGES + 37, *shape), dtype=np.uint8)
    expected = network.predict_proba(to_features(images) if flat else to_float_images(images))
    got = portable.load(tmp_path).predict_proba(images)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_every_layer_the_builders_use_is_one_portable_runs() -> None:
    """A new layer class without a spec, or with a kind portable.py does not run, fails here
    rather than in a logged model."""
    classes = [cls for module in (layers, conv) for _, cls in inspect.getmembers(module,
               inspect.isclass) if issubclass(cls, layers.Layer) and cls is not layers.Layer]
    assert len(classes) >= 10
    kinds = set()
    for network in (build() for _, _, build in NETWORKS.values()):
        kinds |= {layer.spec()[0] for layer in network.layers}
    assert kinds == set(portable.LAYER_KINDS)  # the cases above run every kind
    for cls in classes:
        assert cls.spec is not layers.Layer.spec, f"{cls.__name__} has no spec()"


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logreg_is_scikit_learns_predict_proba(n_classes: int, tmp_path: Path) -> None:
    from nnlab.models.logreg.classifier import LogregClassifier
    from nnlab.models.logreg.section import LogregParams

    images = RNG.integers(0, 256, (120, 5, 5, 1), dtype=np.uint8)
    labels = np.arange(120) % n_classes
    split: Split = (images, labels)
    model = LogregClassifier(LogregParams(C=1.0, max_iter=200, seed=None), seed=0)
    model.fit(split, split, n_classes)
    model.save(tmp_path)
    np.testing.assert_allclose(portable.load(tmp_path).predict_proba(images),
                               model.predict_proba(images), atol=1e-6, rtol=0)


def test_nnlab_predicts_with_portable_for_the_models_saved_as_arrays(tmp_path: Path) -> None:
    """load_predictor (evaluate, `nnlab predict`) runs portable.py for numpy_dnn."""
    network = _randomized(build_mlp(64, [8], 10, "relu", "he", RNG))
    np.savez(tmp_path / portable.WEIGHTS_FILE, **network.to_arrays((8, 8, 1), True))
    predict = load_predictor("numpy_dnn", tmp_path)
    assert predict.__self__.__class__ is portable.SavedNetwork  # type: ignore[attr-defined]
    assert model_class("numpy_dnn").flavor == "pyfunc"


def test_portable_imports_only_the_standard_library_numpy_and_mlflow() -> None:
    tree = ast.parse(Path(portable.__file__).read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names}
    modules |= {str(node.module).split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)}
    assert modules - set(sys.stdlib_module_names) == {"numpy", "mlflow"}
    # Run as a file by a Python that cannot import nnlab, it loads a model.
    script = (f"import runpy, sys; sys.modules['nnlab'] = None; "  # `import nnlab` fails
              f"module = runpy.run_path({portable.__file__!r}, run_name='portable'); "
              "print(module['LAYER_KINDS'][0])")
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True,
                          text=True, check=True, cwd="/")
    assert done.stdout.strip() == "dense"


def _saved(tmp_path: Path) -> Path:
    network = _randomized(build_cnn((8, 8, 1), [(3, 1)], 10, "he", RNG))
    np.savez(tmp_path / portable.WEIGHTS_FILE, **network.to_arrays((8, 8, 1), False))
    return tmp_path / portable.WEIGHTS_FILE


def test_a_tampered_model_is_one_line_naming_its_file(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    tampered = {
        "missing": None,
        "truncated": path.read_bytes()[:300],
        "wrong shape": {**arrays, "4.W": arrays["4.W"][:5]},
        "missing weight": {key: value for key, value in arrays.items() if key != "0.W"},
        "a pickle": {**arrays, "0.W": np.array([{"x": 1}], dtype=object)},
        "an unknown layer": {**arrays, "layers": np.array('[["exec"]]')},
    }
    messages = {}
    for name, content in tampered.items():
        path.unlink(missing_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            np.savez(path, **content)  # allow_pickle: the object array is written as a pickle
        with pytest.raises(portable.ModelFileError) as error:
            portable.load(tmp_path)
        messages[name] = str(error.value)
        assert "\n" not in messages[name] and str(path) in messages[name], messages[name]
    assert "missing" in messages["missing"]
    assert "(5, 10)" in messages["wrong shape"] or "(5," in messages["wrong shape"]
    assert "'W'" in messages["missing weight"]
    assert "allow_pickle" in messages["a pickle"]
    assert "'exec'" in messages["an unknown layer"]
