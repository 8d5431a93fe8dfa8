"""A process that joins a training of several processes (`nnlab join`, docs/devices.md
"Several machines"): it reports to process 0 (the train stage) with its commit, code, params
and data, and, admitted, trains its share of every batch beside the others. Process 0 alone
writes the DVC outputs, the checkpoint and the MLflow run, and prints the epochs; this one
prints a line when it starts and one when it ends."""

from __future__ import annotations

import os
import socket
import sys

from nnlab.arrays.contract import load_classes, load_split
from nnlab.core.errors import ProcessesError
from nnlab.core.layout import Layout
from nnlab.core.schema import Params
from nnlab.models.base import new_model
from nnlab.training.checkpoints import StageCheckpoint, fingerprint
from nnlab.training.roll_call import answer


def join(model_name: str, params: Params, process: int, coordinator: str | None = None,
         layout: Layout | None = None) -> dict[str, object]:
    """Train `model_name` as `process` of its section's `processes`, with process 0 at
    `coordinator` (params.yaml's unless given). What this process did, for its last line."""
    layout = layout or Layout()
    model_params = params.model_params(model_name)
    processes = getattr(model_params, "processes", 1)
    if processes == 1:
        raise ProcessesError(f"{model_name}.processes=1 in params.yaml: there is nothing to "
                             f"join; set {model_name}.processes (and coordinator) on every "
                             f"machine, the same as process 0's")
    if not 1 <= process < processes:
        raise ProcessesError(f"--process-id {process}: {model_name}.processes={processes}, "
                             f"so the joining processes are 1 to {processes - 1}")
    coordinator = coordinator or model_params.coordinator
    data = (load_split(layout.split, "train"), load_split(layout.split, "val"),
            load_classes(layout.prepared))
    team, saved = answer(model_name, coordinator, process,
                         fingerprint(model_name, params), model_params.join_timeout)
    model_params = model_params.model_copy(update={"coordinator": coordinator})
    os.environ.update(model_params.environment())
    model = new_model(model_name, model_params, params.model_seed(model_name), process)
    runtime = model.runtime()
    print(f"join@{model_name}: process {process} of {processes} on {socket.gethostname()}, "
          f"with process 0 on {team.hosts.get(0, '?')} ({coordinator}): training on "
          f"{runtime['device']} ({runtime['backend']})", file=sys.stderr, flush=True)
    history = model.fit(data[0], data[1], n_classes=len(data[2]),
                        checkpoint=StageCheckpoint.received(model_name, params, saved))
    return {"process": process, "processes": processes, "epochs": len(history),
            "loss": history[-1]["loss"] if history else None}
