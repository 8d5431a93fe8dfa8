"""The Keras models on each Keras 3 backend, on each device, data parallel and in mixed
precision (docs/devices.md). Keras picks its backend once per process: the JAX checks run in
child processes, this one runs TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nnlab.core.errors import DeviceError
from nnlab.models.base import load_model, new_model
from tests.support.helpers import KERAS_BACKEND_UNDER_TEST, ROOT, make_images, project_params

pytestmark = pytest.mark.tensorflow

TINY_CNN = {"epochs": 3, "blocks": [{"filters": 4, "convs": 1}], "dense_units": [8],
            "block_dropout": 0, "dense_dropout": 0, "learning_rate": 0.01,
            "augment": {"shift": 0.0, "flip": False}, "early_stopping_patience": None}


def _child(script: str, env: dict[str, str], timeout: int = 300) -> str:
    """Run `script` in a fresh Python (its own Keras backend); its stdout."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_keras_model_tests_pass_on_jax_without_importing_tensorflow() -> None:
    """Every Keras test of fit, save/load, predict, the MLflow model, early stopping,
    determinism, the divergence rule and bit-for-bit resume, again on JAX, with TensorFlow's
    import refused (tests/conftest.py)."""
    tests = ["tests/unit/models/test_models.py", "tests/unit/training/test_checkpoints.py"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *tests, "-m", "tensorflow", "-k", "keras or cnn",
         "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=ROOT, env={**os.environ, KERAS_BACKEND_UNDER_TEST: "jax"},
        capture_output=True, text=True, timeout=500)
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0 and " passed" in summary and "failed" not in summary, \
        result.stdout[-4000:] + result.stderr[-2000:]
    assert int(summary.split(" passed")[0].split()[-1]) >= 12, summary


def test_a_keras_file_saved_on_one_backend_loads_on_the_other(tmp_path: Path) -> None:
    images, labels = make_images(12, 3, seed=1)
    params = project_params({"cnn": TINY_CNN})
    model = new_model("cnn", params.model_params("cnn"), seed=0)
    model.fit((images, labels), (images, labels), 3)
    model.save(tmp_path / "tensorflow")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    _child(f"""
        import numpy as np
        from pathlib import Path
        from nnlab.models.base import model_class
        from tests.support.helpers import project_params
        folder = Path({str(tmp_path)!r})
        images, labels = np.load(folder / "images.npy"), np.load(folder / "labels.npy")
        cnn = model_class("cnn")
        np.save(folder / "tf_on_jax.npy", cnn.load(folder / "tensorflow").predict_proba(images))
        model = cnn(project_params({{"cnn": {TINY_CNN!r}}}).model_params("cnn"), seed=0)
        model.fit((images, labels), (images, labels), 3)
        model.save(folder / "jax")
        np.save(folder / "jax_on_jax.npy", model.predict_proba(images))
        """, {KERAS_BACKEND_UNDER_TEST: "jax", "KERAS_BACKEND": "jax"})
    np.testing.assert_allclose(np.load(tmp_path / "tf_on_jax.npy"),
                               model.predict_proba(images), atol=1e-5)
    jax_model = load_model(tmp_path / "jax", "cnn")
    np.testing.assert_allclose(jax_model.predict_proba(images),
                               np.load(tmp_path / "jax_on_jax.npy"), atol=1e-5)


def test_data_parallel_on_tensorflow_is_refused_in_one_line() -> None:
    params = project_params({"cnn": TINY_CNN | {"data_parallel": True}})
    model = new_model("cnn", params.model_params("cnn"), seed=0)
    with pytest.raises(DeviceError, match=r"^cnn.data_parallel=true runs on the JAX backend "
                                          r"only; set cnn.backend=jax, or data_parallel=false$"):
        model.fit(make_images(4, 2, seed=0), make_images(2, 2, seed=1), 2)


def test_data_parallel_on_jax_needs_a_batch_the_devices_divide() -> None:
    out = _child(f"""
        from nnlab.models.base import load_model, new_model
        from tests.support.helpers import make_images, project_params
        params = project_params({{"cnn": {TINY_CNN!r} | {{"batch_size": 15,
                                                       "data_parallel": True}}}})
        model = new_model("cnn", params.model_params("cnn"), seed=0)
        try:
            model.fit(make_images(8, 2, seed=0), make_images(2, 2, seed=1), 2)
        except ValueError as error:
            print(error)
        """, {KERAS_BACKEND_UNDER_TEST: "jax", "KERAS_BACKEND": "jax",
              "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert out.strip() == ("cnn.batch_size=15: data_parallel splits each batch over 2 devices; "
                           "use a multiple of 2")


def test_mixed_precision_computes_in_bfloat16_with_float32_weights_and_logits() -> None:
    import keras

    images, labels = make_images(12, 3, seed=1)
    params = project_params({"cnn": TINY_CNN | {"mixed_precision": True, "epochs": 6}})
    model = new_model("cnn", params.model_params("cnn"), seed=0)
    rows = model.fit((images, labels), (images, labels), 3)
    conv = next(layer for layer in model.model.layers if "conv" in layer.name)
    assert (conv.compute_dtype, conv.variable_dtype) == ("bfloat16", "float32")
    assert model.model.layers[-1].compute_dtype == "float32"  # the logits
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    probabilities = model.predict_proba(images)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert rows[-1]["loss"] < rows[0]["loss"] and np.isfinite(rows[-1]["val_loss"])


@pytest.mark.parametrize("name", ["keras_mlp", "cnn"])
def test_a_gpu_that_is_not_there_is_a_one_line_error(name: str) -> None:
    params = project_params({name: {"device": "gpu"}})
    with pytest.raises(DeviceError, match=(
            rf"^{name}\.device='gpu', but Keras on tensorflow sees no GPU \(TensorFlow .* "
            r"CUDA, or no CUDA device visible\); `make install ACCEL=cuda` installs the CUDA "
            rf"builds \(Linux, an NVIDIA driver\), or set {name}\.device=auto$")):
        new_model(name, params.model_params(name), seed=0)


def test_another_backend_than_the_running_one_is_refused_by_name() -> None:
    params = project_params({"cnn": {"backend": "jax"}})
    with pytest.raises(RuntimeError, match="cnn.backend='jax', but Keras already runs on "
                                           "tensorflow in this process"):
        new_model("cnn", params.model_params("cnn"), seed=0)


def test_the_backend_and_device_are_recorded() -> None:
    params = project_params({"keras_mlp": {"device": "cpu"}})
    assert params.model_params("keras_mlp").environment() == {
        "KERAS_BACKEND": "tensorflow", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "-1"}
    assert project_params().model_params("cnn").environment() == {"KERAS_BACKEND": "tensorflow"}
    model = new_model("cnn", project_params().model_params("cnn"), seed=0)
    assert model.runtime() == {"backend": "tensorflow", "device": "cpu"}


COMPILE_TWICE = """
    import json, jax
    from nnlab.models.base import load_model, new_model
    from tests.support.helpers import make_images, project_params
    params = project_params({{"cnn": {cnn!r}}})
    model = new_model("cnn", params.model_params("cnn"), seed=0)
    rows = model.fit(make_images(8, 2, seed=0), make_images(4, 2, seed=1), 2)
    print(json.dumps({{"folder": jax.config.jax_compilation_cache_dir,
                      "loss": [row["loss"] for row in rows]}}))
"""


def test_jax_keeps_compiled_steps_for_the_next_process(tmp_path: Path) -> None:
    """The second process compiles nothing new (every step it needs is in the user's cache)
    and trains to the same losses; a cache the user chose is left as it is."""
    env = {KERAS_BACKEND_UNDER_TEST: "jax", "KERAS_BACKEND": "jax", "NNLAB_CACHE_DIR": "",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    folder = tmp_path / "cache" / "nnlab" / "jax"
    results, counts = [], []
    for _ in range(2):
        results.append(json.loads(_child(COMPILE_TWICE.format(cnn=TINY_CNN), env)
                                  .strip().splitlines()[-1]))
        counts.append(len(list(folder.iterdir())))
    assert results[0]["folder"] == results[1]["folder"] == str(folder)
    assert counts[0] > 0 and counts[1] == counts[0]
    assert results[0]["loss"] == results[1]["loss"]
    own = _child(COMPILE_TWICE.format(cnn=TINY_CNN),
                 {**env, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "own")})
    assert json.loads(own.strip().splitlines()[-1])["folder"] == str(tmp_path / "own")


def test_training_on_jax_prints_no_progress_bar(tmp_path: Path) -> None:
    """The train step of a cnn on JAX, model logged to MLflow: only its own lines, no Keras
    progress bar (JAX draws it from callback threads) and no ANSI escapes."""
    script = f"""
        import os
        from pathlib import Path
        from nnlab.arrays.contract import save_classes, save_split
        from nnlab.core.layout import Layout
        from nnlab.training import train as train_step
        from tests.support.helpers import make_images, project_params
        os.environ["DVC_ROOT"] = {str(tmp_path)!r}
        layout = Layout(Path({str(tmp_path)!r}))
        save_split(layout.split, "train", *make_images(12, 2, seed=1))
        save_split(layout.split, "val", *make_images(4, 2, seed=2))
        save_classes(layout.prepared, ["top", "bottom"])
        params = project_params({{"cnn": {TINY_CNN} | {{"epochs": 2, "backend": "jax"}}}})
        train_step.train("cnn", params, layout)
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True,
        text=True, timeout=300, env={**os.environ, KERAS_BACKEND_UNDER_TEST: "jax",
                                     "KERAS_BACKEND": "jax", "MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "\x1b[" not in output and "step" not in output and "Warning" not in output, output
    assert "train@cnn: epoch 2/2" in output, output


def test_a_mixed_precision_cnn_exports_to_onnx_in_float32() -> None:
    """ONNX has no bfloat16 for the exporter's operators: the file computes in float32, equal
    to the same model computing in float32 (the export's check), and near the bfloat16
    model's probabilities."""
    import onnxruntime

    from nnlab.handoff.onnx_export.keras_nets import in_float32, to_onnx
    from nnlab.models.keras.inference import Predictor

    images, labels = make_images(12, 3, seed=1)
    params = project_params({"cnn": TINY_CNN | {"mixed_precision": True}})
    model = new_model("cnn", params.model_params("cnn"), seed=0)
    model.fit((images, labels), (images, labels), 3)
    exported = to_onnx(model.probability_model(), 3)
    session = onnxruntime.InferenceSession(exported.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    onnx_probabilities = session.run(["probabilities"], {"images": images})[0]
    float32 = in_float32(model.probability_model())
    assert all(layer.compute_dtype == "float32" for layer in float32.layers)
    np.testing.assert_allclose(onnx_probabilities, Predictor(float32)(images), atol=1e-5)
    np.testing.assert_allclose(onnx_probabilities, model.predict_proba(images), atol=5e-2)


RESUME = """
    import json, sys
    from pathlib import Path
    import numpy as np
    from nnlab.models.base import load_model, new_model
    from tests.support.helpers import make_images, project_params

    class FileCheckpoint:  # the Checkpoint protocol, in two files
        def __init__(self, folder):
            self.folder = Path(folder)
        def saved(self):
            if not (self.folder / "meta.json").is_file():
                return None
            with np.load(self.folder / "arrays.npz") as archive:
                arrays = {{key: archive[key] for key in archive.files}}
            return arrays, json.loads((self.folder / "meta.json").read_text())
        def save(self, arrays, meta):
            np.savez(self.folder / "arrays.npz", **arrays)
            (self.folder / "meta.json").write_text(json.dumps(meta))

    images, labels = make_images(16, 4, seed=3)
    params = project_params({{"cnn": {cnn} | {{"batch_size": 16, "data_parallel": True,
                                          "epochs": {epochs}, "optimizer": "sgd"}}}})
    model = new_model("cnn", params.model_params("cnn"), seed=0)
    rows = model.fit((images, labels), (images, labels), 4,
                     checkpoint=FileCheckpoint({folder!r}))
    print(json.dumps({{"epochs": [row["epoch"] for row in rows],
                      "trained_on": model.trained_on()}}))
    """


def test_a_data_parallel_checkpoint_resumes_only_on_as_many_devices(tmp_path: Path) -> None:
    """2 devices for 2 epochs; then 1 device: it starts over, saying why; then 1 device again:
    it resumes. The run's record says where the epochs trained."""
    def run(devices: int, epochs: int) -> tuple[dict[str, object], str]:
        env = {KERAS_BACKEND_UNDER_TEST: "jax", "KERAS_BACKEND": "jax",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        script = RESUME.format(cnn=TINY_CNN, epochs=epochs, folder=str(tmp_path))
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr

    first, said = run(2, 2)
    assert first == {"epochs": [1, 2], "trained_on": "epochs 1-2 on 2 x cpu"}
    assert "training from scratch" not in said
    other, said = run(1, 3)
    assert other == {"epochs": [1, 2, 3], "trained_on": "epochs 1-3 on cpu"}, other
    assert ("cnn: training from scratch: the checkpoint was made with each batch split over 2 "
            "device(s), and this run has 1; resuming would not give the result of an "
            "unstopped run") in said, said
    again, said = run(1, 4)  # as many devices: it resumes
    assert again == {"epochs": [1, 2, 3, 4], "trained_on": "epochs 1-4 on cpu"}, again
    assert "training from scratch" not in said
