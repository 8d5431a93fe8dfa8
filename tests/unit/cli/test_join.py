"""`nnlab join`'s own refusals, before any roll call (nnlab/cli/join.py): one line, exit 2.
The roll call: tests/unit/training/test_roll_call.py; a whole join:
tests/e2e/test_processes_e2e.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.helpers import ROOT


@pytest.mark.parametrize(("arguments", "error"), [
    (["--process-id", "1"], "cnn.processes=1 in params.yaml: there is nothing to join; set "
                            "cnn.processes (and coordinator) on every machine, the same as "
                            "process 0's"),
    (["--process-id", "1", "--coordinator", "node0"],
     "--coordinator='node0': not host:port (e.g. node0.example.org:7070, with a port from 1 "
     "to 65534: the roll call takes the next one)"),
])
def test_nnlab_join_refuses_in_one_line(arguments: list[str], error: str) -> None:
    result = subprocess.run([sys.executable, "-m", "nnlab.cli", "join", "--model", "cnn",
                             *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"nnlab join: error: {error}\n"
