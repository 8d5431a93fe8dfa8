"""The roll call before a training of several processes (nnlab/training/roll_call.py), on
loopback sockets: who is admitted, who is refused and why, in one line, and that process 0
goes on waiting, undisturbed, after a refusal or a hostile connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from nnlab.core.errors import ProcessesError
from nnlab.training.roll_call import MAX_LINE, RollCall, answer
from tests.support.loopback import coordinator_address

PRINT = {"processes": "3", "commit": "c0ffee" * 7, "code": "1" * 16, "params": "2" * 16,
         "data": "3" * 16}


def _in_thread(call: Callable[[], Any]) -> dict[str, Any]:
    """Run `call` in a thread; its result or error lands in the returned dict."""
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            result["value"] = call()
        except ProcessesError as error:
            result["error"] = str(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def _join(coordinator: str, process: int, fingerprint: dict[str, str] = PRINT,
          timeout: float = 20) -> dict[str, Any]:
    return _in_thread(lambda: answer("cnn", coordinator, process, fingerprint, timeout))


def _done(result: dict[str, Any], seconds: float = 20) -> dict[str, Any]:
    result["thread"].join(seconds)
    assert not result["thread"].is_alive()
    return result


def test_every_process_is_admitted_with_the_checkpoint_once_all_have_come(
        capsys: pytest.CaptureFixture[str]) -> None:
    coordinator = coordinator_address()
    first = _join(coordinator, 2)  # before process 0 listens: it tries again
    time.sleep(0.3)
    with RollCall("cnn", coordinator, 3, PRINT, timeout=20, checkpoint=b"state") as call:
        time.sleep(0.3)
        assert first["thread"].is_alive()  # held until every process has come
        late = _join(coordinator, 1)
        team = call.wait()
        host = socket.gethostname()
        assert team.hosts == {0: host, 1: host, 2: host}
        for result in (_done(first), _done(late)):
            joined, checkpoint = result["value"]
            assert joined.hosts == team.hosts and checkpoint == b"state"
        again = _done(_join(coordinator, 1))  # the training has started
        assert again["error"] == ("refused by process 0 at " + coordinator + ": process 0 "
                                  "already trains with all 3 processes")
    said = capsys.readouterr().err
    assert f"train@cnn: waiting up to 20 s for processes 1 and 2 of 3: on their machines run " \
           f"`nnlab join --model cnn --process-id N` (coordinator {coordinator})" in said
    assert f"train@cnn: process 2 of 3 joined from {host}" in said


@pytest.mark.parametrize(("check", "theirs", "refusal"), [
    ("commit", "beef" * 10, "this checkout is at commit beefbeefbeef, process 0's at "
                            "c0ffeec0ffee: `git checkout c0ffeec0ffee` (and `dvc pull`)"),
    ("params", "9" * 16, "params.yaml's cnn section, seed or data.dataset differ from process "
                         "0's: use the same params.yaml (the same commit and the same `-S` "
                         "changes)"),
    ("data", "9" * 16, "the data differs from process 0's (data/split, classes.json): `dvc "
                       "pull` (or `dvc repro split`) at process 0's commit"),
    ("processes", "2", "this params.yaml says cnn.processes=2, process 0's says 3: use "
                       "process 0's params.yaml"),
])
def test_a_joiner_that_differs_is_refused_in_one_line_and_process_0_waits_on(
        check: str, theirs: str, refusal: str, capsys: pytest.CaptureFixture[str]) -> None:
    coordinator = coordinator_address()
    with RollCall("cnn", coordinator, 3, PRINT, timeout=20) as call:
        refused = _done(_join(coordinator, 1, PRINT | {check: theirs}))
        assert refused["error"] == f"refused by process 0 at {coordinator}: {refusal}"
        good = [_join(coordinator, 1), _join(coordinator, 2)]
        assert len(call.wait().hosts) == 3
        assert all("value" in _done(result) for result in good)
    assert f"train@cnn: refused process 1 from {socket.gethostname()}: {refusal}" in \
        capsys.readouterr().err


def test_a_missing_process_is_named_when_process_0_gives_up() -> None:
    coordinator = coordinator_address()
    with RollCall("cnn", coordinator, 4, PRINT | {"processes": "4"}, timeout=0.5) as call:
        waiting = _join(coordinator, 2, PRINT | {"processes": "4"})
        with pytest.raises(ProcessesError) as raised:
            call.wait()
    assert str(raised.value) == (
        f"processes 1 and 3 of 4 never joined within 0.5 s (cnn.join_timeout); on their "
        f"machines run `nnlab join --model cnn --process-id N` (coordinator {coordinator}), "
        f"then this stage again")
    assert _done(waiting)["error"] == (f"refused by process 0 at {coordinator}: process 0 "
                                       f"stopped before every process had joined")


def test_taken_ids_and_ids_out_of_range_are_refused() -> None:
    coordinator = coordinator_address()
    with RollCall("cnn", coordinator, 3, PRINT, timeout=20) as call:
        first = _join(coordinator, 1)
        time.sleep(0.3)
        host = socket.gethostname()
        assert _done(_join(coordinator, 1))["error"].endswith(
            f"process 1 has already joined (from {host}); give each machine its own "
            f"--process-id")
        assert _done(_join(coordinator, 3))["error"].endswith(
            "--process-id 3 is not one of 1 and 2 (cnn.processes=3)")
        _join(coordinator, 2)
        call.wait()
        assert "value" in _done(first)


def test_a_hostile_or_broken_hello_is_dropped_and_process_0_goes_on() -> None:
    coordinator = coordinator_address()
    host, port = coordinator.rsplit(":", 1)
    two = PRINT | {"processes": "2"}
    with RollCall("cnn", coordinator, 2, two, timeout=20) as call:
        for junk in (b"GET / HTTP/1.1\r\n\r\n", b"x" * (MAX_LINE + 10), b'{"process_id": 1}\n',
                     b'{"payload": 1e9}\n', b""):
            with socket.create_connection((host, int(port) + 1)) as connection:
                connection.sendall(junk)
                connection.shutdown(socket.SHUT_WR)
                connection.settimeout(10)
                assert connection.recv(100) == b""  # closed, unanswered
        joined = _join(coordinator, 1, two)
        assert call.wait().hosts.keys() == {0, 1}
        assert "value" in _done(joined)


def test_a_joiner_that_leaves_while_waiting_is_forgotten(
        capsys: pytest.CaptureFixture[str]) -> None:
    coordinator = coordinator_address()
    host, port = coordinator.rsplit(":", 1)
    hello = b'{"process_id": 1, "host": "gone", "fingerprint": ' + \
        str(PRINT).replace("'", '"').encode() + b', "payload": 0}\n'
    with RollCall("cnn", coordinator, 3, PRINT, timeout=0.8) as call:
        with socket.create_connection((host, int(port) + 1)) as connection:
            connection.sendall(hello)
            time.sleep(0.3)
        with pytest.raises(ProcessesError, match="processes 1 and 2 of 3 never joined"):
            call.wait()
    assert "train@cnn: process 1 left before the start" in capsys.readouterr().err


def test_ports_that_are_taken_or_nobody_answering_are_one_line() -> None:
    coordinator = coordinator_address()
    host, port = coordinator.rsplit(":", 1)
    for taken in (int(port), int(port) + 1):
        with socket.socket() as squatter:
            squatter.bind(("", taken))
            squatter.listen()
            with pytest.raises(ProcessesError) as raised, \
                    RollCall("cnn", coordinator, 2, PRINT, timeout=0.5):
                pass
        assert str(raised.value).startswith(f"cnn.coordinator={coordinator}: ")
        assert f"port {taken} " in str(raised.value) and "\n" not in str(raised.value)
    started = time.monotonic()
    with pytest.raises(ProcessesError) as raised:
        answer("cnn", coordinator, 1, PRINT, timeout=0.5)
    assert time.monotonic() - started < 5
    assert str(raised.value).startswith(
        f"nobody answers at {host}:{int(port) + 1}, process 0's roll call "
        f"(cnn.coordinator={coordinator}, port + 1), after cnn.join_timeout (")
