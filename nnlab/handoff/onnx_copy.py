"""`nnlab export --model M`: a trained model as an ONNX file, for a phone, a browser or a C++
service, checked against the model and logged to its run.

M is the workspace's model (`cnn`: models/cnn/), a run (`--run ID`), or a model in MLflow
(`models:/digits-cnn@champion`). Each family has its exporter (nnlab/handoff/onnx_export/): Keras's
own for keras_mlp and cnn, a graph built layer by layer for numpy_dnn and numpy_cnn, skl2onnx
for logreg. Every file takes uint8 `images` (N, H, W, C) and gives `probabilities` (N, classes)
(nnlab/handoff/onnx_export/graph.py).

Before anything is written, onnxruntime runs the file on the workspace's test images (random
images of the input shape when there are none) and its probabilities must equal the model's
within TOLERANCE. The file is then logged to the model's run as MLflow's `onnx` flavor,
named "onnx", with the same metadata (classes, input shape): `nnlab promote --onnx`
registers it, `nnlab serve` serves it in onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from nnlab.core.files import atomic_path, read_json
from nnlab.core.layout import TRAIN_INFO_FILE, Layout
from nnlab.models.base import load_model

ONNX_NAME = "onnx"  # the logged model's name in its run; the native one is "model"
TOLERANCE = 1e-5
CHECKED_IMAGES = 1024


@dataclass
class Exportable:
    """A trained model, wherever it was named: what exporting and checking it needs."""

    label: str  # how the user named it
    model: str  # its params.yaml name
    metadata: dict[str, Any]  # classes, input_shape, dataset, model
    predict_proba: Callable[[np.ndarray], np.ndarray]
    to_onnx: Callable[[], Any]
    run_id: str | None
    # A mixed-precision model's own probabilities; predict_proba is then its float32 copy's.
    mixed: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        height, width, channels = (int(size) for size in self.metadata["input_shape"])
        return height, width, channels


def workspace_source(model: str, root: Path) -> Exportable:
    folder = Layout(root).model_dir(model)
    info_path = folder / TRAIN_INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"{folder}: no trained {model} model; run `dvc repro` first")
    info = read_json(info_path)
    # On Keras's TensorFlow backend whatever it trained on: tf2onnx exports from TensorFlow.
    classifier = load_model(folder, info.get("model", model))
    metadata = {key: info[key] for key in ("model", "classes", "dataset", "input_shape")}
    found = Exportable(model, model, metadata, classifier.predict_proba, lambda: None,
                       info.get("mlflow_run_id"))
    found.to_onnx = lambda: to_onnx(classifier, found.input_shape, len(info["classes"]))
    if classifier.flavor == "keras":
        _checked_in_float32(found, cast(Any, classifier).probability_model())
    return found


def _checked_in_float32(found: Exportable, keras_model: Any) -> None:
    """A mixed-precision Keras model exports in float32: the ONNX file is checked against
    the same model computing in float32, and the message says how far that is from the
    model's own bfloat16 probabilities."""
    from nnlab.handoff.onnx_export.keras_nets import in_float32
    from nnlab.models.keras.inference import Predictor

    model32 = in_float32(keras_model)
    if model32 is keras_model:
        return
    found.mixed = found.predict_proba
    found.predict_proba = Predictor(model32)


def to_onnx(classifier: Any, input_shape: tuple[int, int, int], n_classes: int) -> Any:
    """A trained classifier as an onnx.ModelProto, by its family's exporter."""
    if classifier.flavor == "keras":
        from nnlab.handoff.onnx_export.keras_nets import to_onnx as keras_to_onnx

        return keras_to_onnx(classifier.probability_model(), n_classes)
    if classifier.name == "logreg":
        from nnlab.handoff.onnx_export.logreg import logreg_to_onnx

        return logreg_to_onnx(classifier.model, input_shape, n_classes)
    from nnlab.handoff.onnx_export.numpy_nets import network_to_onnx

    return network_to_onnx(classifier.model, input_shape, flat=classifier.flat_inputs,
                           name=classifier.name)


def run_model_uri(run_id: str) -> str:
    """`models:/<id>` of the model a training run logged."""
    from mlflow.exceptions import MlflowException

    from nnlab.handoff.promotion import tracking_client

    client = tracking_client()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"no MLflow run {run_id} in {client.tracking_uri}: check the id "
                         "(the runs table of `nnlab ui`), or MLFLOW_TRACKING_URI") from None
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' and name = 'model'")
    if not logged:
        raise ValueError(f"run {run_id} logged no model: export a run that trained one")
    return f"models:/{logged[0].model_id}"


def mlflow_source(uri: str) -> Exportable:
    """A model in MLflow, loaded with nothing of the workspace."""
    import mlflow

    from nnlab.handoff.prediction import registered_metadata, registered_predictor

    metadata = registered_metadata(uri)
    info = mlflow.models.get_model_info(uri)
    if "onnx" in info.flavors:
        raise ValueError(f"{uri}: already an ONNX model (`mlflow.onnx.load_model` loads it)")
    n_classes = len(metadata["classes"])
    found = Exportable(uri, str(metadata["model"]), metadata, registered_predictor(uri),
                       lambda: None, info.run_id)
    if "keras" in info.flavors:
        import mlflow.keras

        from nnlab.handoff.onnx_export.keras_nets import to_onnx as keras_to_onnx

        keras_model = mlflow.keras.load_model(uri, load_model_kwargs={"safe_mode": True})
        found.to_onnx = lambda: keras_to_onnx(keras_model, n_classes)
        _checked_in_float32(found, keras_model)
    else:  # portable.py over its model.npz (or, logged before, the folder "model")
        from nnlab.models.logged_model import weights_folder

        folder = weights_folder(Path(mlflow.artifacts.download_artifacts(uri)))
        classifier = load_model(folder, metadata["model"])
        found.to_onnx = lambda: to_onnx(classifier, found.input_shape, n_classes)
    return found


def check_images(source: Exportable, root: Path) -> np.ndarray:
    """The workspace's test images when they fit the model, else seeded random ones."""
    path = Layout(root).prepared / "test_images.npy"
    if path.is_file():
        images = np.load(path, mmap_mode="r", allow_pickle=False)
        if tuple(images.shape[1:]) == source.input_shape and images.dtype == np.uint8:
            return np.asarray(images[:CHECKED_IMAGES])
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (256, *source.input_shape), dtype=np.uint8)


def export(source: Exportable, output: Path, images: np.ndarray) -> tuple[Any, float]:
    """Write `output` (via a temporary file) once onnxruntime's probabilities equal the
    model's within TOLERANCE; (the ONNX model, the largest difference)."""
    import onnxruntime

    model = source.to_onnx()
    serialized = model.SerializeToString()
    session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": images})[0]
    difference = float(np.abs(exported - source.predict_proba(images)).max()) if len(images) \
        else 0.0
    if not difference <= TOLERANCE:
        raise ValueError(f"{source.label}: the ONNX graph's probabilities differ from the "
                         f"model's by {difference:.2e} (over {TOLERANCE:g}); nothing written. "
                         "Please report it with the model's params")
    with atomic_path(output) as partial:  # a refused write leaves nothing behind
        partial.write_bytes(serialized)
    return model, difference


def log_to_run(source: Exportable, model: Any, images: np.ndarray) -> str:
    """Log the ONNX model to the source's run (the run stays as it was); its URI."""
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature

    from nnlab.handoff.promotion import tracking_client
    from nnlab.models.logged_model import pins

    client = tracking_client()  # MLflow pointed at the project's store
    # Logged models go to the active experiment: the run's, or the ONNX model is not found
    # beside the run's own model.
    mlflow.set_experiment(experiment_id=client.get_run(source.run_id).info.experiment_id)
    sample = images[:5]
    info = mlflow.onnx.log_model(
        model, name=ONNX_NAME, run_id=source.run_id,
        signature=infer_signature(sample, source.predict_proba(sample)),
        metadata={**source.metadata, "format": "onnx"},
        pip_requirements=pins("onnx", "onnxruntime", "numpy"), save_as_external_data=False)
    return str(info.model_uri)


def main(model: str | None, run_id: str | None, output: Path | None, log: bool,
         root: Path = Path(".")) -> None:
    """`nnlab export`: find the model, write and check its file, log it to its run."""
    from nnlab.core.catalog import MODEL_NAMES

    if bool(model) == bool(run_id):
        raise ValueError("name one model: --model M (the workspace's, or models:/...) or "
                         "--run RUN_ID")
    if run_id:
        source = mlflow_source(run_model_uri(run_id))
    elif str(model).startswith("models:/"):
        source = mlflow_source(str(model))
    elif model in MODEL_NAMES:
        source = workspace_source(model, root)
    else:
        raise ValueError(f"--model {model!r}: give one of {', '.join(MODEL_NAMES)}, or "
                         "models:/NAME@ALIAS")
    output = output or root / "exports" / f"{source.model}.onnx"
    images = check_images(source, root)
    onnx_model, difference = export(source, output, images)
    print(f"{output}: {source.label} as ONNX ({output.stat().st_size / 1e6:.2f} MB); "
          f"onnxruntime matches the model within {difference:.1e} on {len(images)} images")
    if source.mixed is not None:
        gap = float(np.abs(source.mixed(images) - source.predict_proba(images)).max())
        print(f"{source.label} trains in mixed precision: the ONNX file computes in float32, "
              f"the model as it was checked; its probabilities differ from the bfloat16 "
              f"model's by up to {gap:.1e}")
    if log and source.run_id:
        uri = log_to_run(source, onnx_model, images)
        print(f"logged to run {source.run_id} as {uri} (`nnlab promote --run {source.run_id} "
              "--onnx` registers it)")
