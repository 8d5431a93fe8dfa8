"""`nnlab promote` and predicting from the registry, on a real MLflow store: versions, the
@champion rule (validation accuracy, same data), the refusals, and the same probabilities
from `models:/NAME@champion` as from the workspace's model folder."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from nnlab.core.files import write_json
from nnlab.core.layout import TRAIN_INFO_FILE
from nnlab.handoff import promotion
from nnlab.handoff.prediction import predict, predict_registered
from nnlab.models import logged_model
from nnlab.models.base import new_model
from nnlab.tracking import mlflow_runs
from tests.support.helpers import make_images, project_params

CLASSES = ["a", "b", "c"]


def _trained(tmp_path: Path, val: float, digest: str = "d1", status: str = "FINISHED",
             tags: dict[str, str] | None = None, name: str = "m") -> str:
    """A logreg trained on tiny images, logged as the train stage logs it, with the
    evaluate stage's metrics; its run id."""
    images, labels = make_images(20, 3, seed=1)
    model = new_model("logreg", project_params({}).model_params("logreg"), seed=0)
    model.fit((images, labels), (images, labels), 3)
    folder = tmp_path / name
    model.save(folder)
    metadata = {"model": "logreg", "classes": CLASSES, "dataset": "tiny",
                "input_shape": [8, 8, 1]}
    run_tags = {"model": "logreg", "dataset": "tiny", "dataset.digest": digest,
                "dvc.exp_name": name, "git.commit": "abc", **(tags or {})}
    with mlflow_runs.training_run("tiny", "logreg", {}, run_tags) as run_id:
        uri = logged_model.log_model(model, "logreg", folder, images[:5], metadata)
        mlflow.log_metrics({"val.accuracy": val, "test.accuracy": val - 0.01})
    write_json(folder / TRAIN_INFO_FILE, {**metadata, "mlflow_run_id": run_id,
                                          "mlflow_model_uri": uri})
    if status != "FINISHED":
        mlflow.MlflowClient().set_terminated(run_id, status)
    return run_id


def _champion() -> int:
    version = mlflow.MlflowClient().get_model_version_by_alias("tiny-logreg", "champion")
    return int(version.version)


def test_champion_moves_only_to_a_better_validation_accuracy(mlflow_store: str,
                                                            tmp_path: Path) -> None:
    lines: list[str] = []
    first = promotion.candidate(_trained(tmp_path, 0.90, name="one"))
    assert promotion.promote(first, report=lines.append) == 1 and _champion() == 1
    assert "no champion before" in lines[-1]
    worse = promotion.candidate(_trained(tmp_path, 0.85, name="two"))
    assert promotion.promote(worse, report=lines.append) == 2 and _champion() == 1
    assert "stays version 1: its val.accuracy 0.9000 is not beaten by 0.8500" in lines[-1]
    better = promotion.candidate(_trained(tmp_path, 0.95, name="three"))
    assert promotion.promote(better, report=lines.append) == 3 and _champion() == 3
    assert "beats version 1's 0.9000" in lines[-1]
    assert promotion.promote(better, report=lines.append) == 3  # once per run
    assert "already version 3" in lines[-2]
    version = mlflow.MlflowClient().get_model_version("tiny-logreg", "3")
    assert version.tags["val.accuracy"] == "0.950000"
    assert version.tags["dataset.digest"] == "d1" and version.tags["dvc.exp_name"] == "three"
    assert version.tags["git.commit"] == "abc"
    forced = promotion.candidate(_trained(tmp_path, 0.50, name="four"))
    promotion.promote(forced, force=True, report=lines.append)
    assert _champion() == 4 and "by --force, though it does not beat" in lines[-1]


def test_what_cannot_be_promoted_is_refused_in_one_line(mlflow_store: str,
                                                       tmp_path: Path) -> None:
    promotion.promote(promotion.candidate(_trained(tmp_path, 0.9, name="one")),
                     report=lambda line: None)
    cases = {
        _trained(tmp_path, 0.99, status="FAILED", name="f"): "is FAILED, not FINISHED",
        _trained(tmp_path, 0.99, status="KILLED", name="k"): "is KILLED, not FINISHED",
        _trained(tmp_path, 0.99, tags={"nnlab.trial_state": "PRUNED"}, name="p"): "pruned",
        "0" * 32: "no MLflow run",
    }
    for run_id, reason in cases.items():
        with pytest.raises(promotion.PromoteError, match=reason) as error:
            promotion.candidate(run_id)
        assert "\n" not in str(error.value)
    other_data = promotion.candidate(_trained(tmp_path, 0.99, digest="d2", name="o"))
    with pytest.raises(promotion.PromoteError, match="trained on other data .* --force"):
        promotion.promote(other_data, report=lambda line: None)
    assert _champion() == 1


def test_a_model_is_found_by_workspace_experiment_or_run(mlflow_store: str,
                                                         tmp_path: Path) -> None:
    run_id = _trained(tmp_path, 0.9, name="exp-1")
    (tmp_path / "models").mkdir()
    (tmp_path / "exp-1").rename(tmp_path / "models" / "logreg")
    assert promotion.find_run(model="logreg", root=tmp_path) == run_id
    assert promotion.find_run(model="logreg", experiment="exp-1") == run_id
    assert promotion.find_run(run_id=run_id) == run_id
    with pytest.raises(promotion.PromoteError, match="no MLflow run of logreg in DVC"):
        promotion.find_run(model="logreg", experiment="nope")
    with pytest.raises(promotion.PromoteError, match="no trained cnn in this workspace"):
        promotion.find_run(model="cnn", root=tmp_path)


def test_predict_from_the_registry_gives_the_workspace_models_probabilities(
        mlflow_store: str, tmp_path: Path) -> None:
    run_id = _trained(tmp_path, 0.9, name="one")
    promotion.promote(promotion.candidate(run_id), report=lambda line: None)
    images = tmp_path / "images"
    images.mkdir()
    pixels, _ = make_images(3, 3, seed=5)
    for index, image in enumerate(pixels):
        Image.fromarray(image[:, :, 0]).save(images / f"{index}.png")
    files = sorted(images.iterdir())
    here, _ = predict(tmp_path / "one", files, top=3)
    served, _ = predict_registered("models:/tiny-logreg@champion", files, top=3)
    assert [item.as_dict() for item in served] == [item.as_dict() for item in here]
    assert {name for item in served for name, _ in item.top} <= set(CLASSES)
    with pytest.raises(ValueError, match="models:/tiny-logreg@nobody: not found in"):
        predict_registered("models:/tiny-logreg@nobody", files)
    np.testing.assert_allclose(sum(p for _, p in served[0].top), 1.0, atol=1e-6)
