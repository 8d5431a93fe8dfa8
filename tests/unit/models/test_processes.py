"""The Keras models trained by several processes on JAX's distributed runtime
(nnlab/models/keras/cluster.py): the params that ask for it, and the training itself on
loopback, 2 and 3 processes with one CPU device each, against one process with as many
virtual devices. The stage, `nnlab join` and the faults: tests/e2e/test_processes_e2e.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nnlab.params import ParamsError
from tests.support.helpers import KERAS_BACKEND_UNDER_TEST, ROOT, project_params
from tests.support.loopback import coordinator_address

JAX_CNN = {"epochs": 4, "blocks": [{"filters": 4, "convs": 1}], "dense_units": [8],
           "block_dropout": 0, "dense_dropout": 0, "learning_rate": 0.05, "optimizer": "sgd",
           "augment": {"shift": 0.0, "flip": False}, "early_stopping_patience": None,
           "backend": "jax", "device": "cpu", "batch_size": 12}


@pytest.mark.parametrize(("changes", "error"), [
    ({"processes": 2}, "cnn.processes=2: several processes train on JAX's distributed runtime "
                       "only; set backend=jax, or processes=1"),
    ({"processes": 2, "backend": "jax"}, "cnn.processes=2: set coordinator to process 0's "
                                         "host:port, as the other machines reach it (e.g. "
                                         "node0.example.org:7070)"),
    ({"coordinator": "node0"}, "cnn.coordinator='node0': not host:port (e.g. "
                               "node0.example.org:7070, with a port from 1 to 65534: the roll "
                               "call takes the next one)"),
    ({"coordinator": "node0:65535"}, "cnn.coordinator='node0:65535': not host:port"),
    ({"processes": 0}, "cnn.processes=0: Input should be greater than or equal to 1"),
    ({"join_timeout": 0}, "cnn.join_timeout=0: Input should be greater than 0"),
])
def test_the_processes_params_are_checked_in_one_line(changes: dict[str, object],
                                                       error: str) -> None:
    with pytest.raises(ParamsError) as raised:
        project_params({"cnn": changes})
    assert str(raised.value).startswith(error) and "\n" not in str(raised.value)


def test_ipv6_and_named_coordinators_are_accepted() -> None:
    for address in ("[::1]:7070", "node0.example.org:7070", "10.0.0.1:1"):
        section = project_params({"keras_mlp": {"backend": "jax", "processes": 3,
                                                "coordinator": address}}
                                 ).model_params("keras_mlp")
        assert (section.processes, section.coordinator) == (3, address)


TRAIN = """
    import json, sys
    from nnlab.models.base import new_model
    from tests.support.helpers import make_images, project_params
    process, processes, coordinator = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    images, labels = make_images(15, 4, seed=3)  # 60 images: 5 whole batches of 12
    val = make_images(10, 4, seed=4)  # 40: the last batch padded for 3 devices
    extra = ({{"processes": processes, "coordinator": coordinator, "join_timeout": 120}}
             if coordinator != "-" else {{"data_parallel": True}})
    found = {{}}
    for name, changes in [("model", extra)] + ([("one device", {{}})] if process == -1 else []):
        params = project_params({{"cnn": {cnn} | changes}})
        model = new_model("cnn", params.model_params("cnn"), seed=0, process=max(process, 0))
        rows = model.fit((images, labels), val, 4)
        found[name] = {{"losses": [[row["loss"], row["val_loss"]] for row in rows],
                       "device": model.runtime()["device"],
                       "probabilities": model.predict_proba(images[:4]).tolist()}}
    print(json.dumps(found))
    """


def _start(process: int, processes: int, coordinator: str, devices: int
           ) -> subprocess.Popen[str]:
    env = {**os.environ, KERAS_BACKEND_UNDER_TEST: "jax", "KERAS_BACKEND": "jax",
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    script = textwrap.dedent(TRAIN.format(cnn=JAX_CNN))
    return subprocess.Popen([sys.executable, "-c", script, str(process), str(processes),
                             coordinator], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])
def test_several_processes_train_what_one_process_with_as_many_devices_trains(
        processes: int) -> None:
    """Each process feeds its rows of every batch; every process ends with the same model,
    whose losses are those of one process whose batches split over as many virtual devices
    (within 2e-4; equal to the last bits in practice), and which predicts alone afterwards;
    and those are one device's (DataParallel). With SGD: Adam divides a gradient by its own
    size, so a last-bit difference in a gradient that is almost 0 (the halves' sum against
    one device's) becomes a whole learning-rate step."""
    coordinator = coordinator_address()
    children = [_start(index, processes, coordinator, 1) for index in range(processes)]
    # The reference: 1 process with N virtual devices, and (-1) with 1 device too.
    children.append(_start(-1 if processes == 2 else 0, 1, "-", processes))
    results = []
    for child in children:
        out, err = child.communicate(timeout=400)
        assert child.returncode == 0, err[-3000:]
        assert "[Gloo]" not in out, out
        results.append(json.loads(out.strip().splitlines()[-1]))
    *together, alone = [result["model"] for result in results]
    assert alone["device"] == f"{processes} x cpu"
    if "one device" in results[-1]:  # DataParallel itself: N devices give 1 device's losses
        one = results[-1]["one device"]
        assert one["device"] == "cpu"
        np.testing.assert_allclose(alone["losses"], one["losses"], rtol=2e-4)
    gap = max(abs(a - b) / b for result in together
              for a, b in zip(np.ravel(result["losses"]), np.ravel(alone["losses"]), strict=True))
    print(f"{processes} processes against 1 x {processes} devices: largest relative loss "
          f"difference {gap:.1e} over 4 epochs")  # (-s shows it)
    for result in together:
        assert result["device"] == f"{processes} x cpu in {processes} processes"
        np.testing.assert_allclose(result["losses"], alone["losses"], rtol=2e-4)
        np.testing.assert_allclose(result["probabilities"], alone["probabilities"],
                                   atol=1e-5)
    assert together[0]["losses"] == together[-1]["losses"]  # one model, not N
    assert alone["losses"][-1][0] < alone["losses"][0][0]  # it learns
