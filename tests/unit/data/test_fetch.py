"""The real download code against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nnlab.core.errors import ChecksumError, DownloadError
from nnlab.data import fetch
from nnlab.data.fetch import RemoteFile
from tests.support.loopback import Loopback, closed_port_url, loopback_server

BODY = bytes(range(256)) * 400  # 102,400 bytes: several read chunks
SPEC = RemoteFile("train-images-idx3-ubyte.gz", hashlib.sha256(BODY).hexdigest(), len(BODY))
FAST = {"retries": 3, "backoff": 0.01, "timeout": 5.0}


@pytest.fixture
def server() -> Iterator[Loopback]:
    with loopback_server() as state:
        yield state


def test_good_download_is_verified_and_not_fetched_again(server: Loopback, tmp_path: Path) -> None:
    server.serve(f"/mirror/{SPEC.name}", BODY)
    (path,) = fetch.fetch([SPEC], tmp_path, [server.url + "/mirror"], **FAST)
    assert path == tmp_path / SPEC.name and path.read_bytes() == BODY
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock", SPEC.name]
    fetch.fetch([SPEC], tmp_path, [server.url + "/mirror"], **FAST)
    assert len(server.requests) == 1  # already downloaded and verified: no second request


def test_dropped_connection_resumes_with_a_range_request(
    server: Loopback, tmp_path: Path
) -> None:
    path = f"/m/{SPEC.name}"
    server.serve(path, BODY)
    server.drop_once.add(path)
    (result,) = fetch.fetch([SPEC], tmp_path, [server.url + "/m"], **FAST)
    assert result.read_bytes() == BODY
    assert server.requests == [(path, None), (path, f"bytes={len(BODY) // 2}-")]


def test_a_part_left_by_an_earlier_run_is_resumed(server: Loopback, tmp_path: Path) -> None:
    server.serve(f"/m/{SPEC.name}", BODY)
    (tmp_path / f"{SPEC.name}.part").write_bytes(BODY[:1000])
    (result,) = fetch.fetch([SPEC], tmp_path, [server.url + "/m"], **FAST)
    assert result.read_bytes() == BODY
    assert server.requests == [(f"/m/{SPEC.name}", "bytes=1000-")]


def test_transient_503_is_retried(server: Loopback, tmp_path: Path) -> None:
    server.serve(f"/m/{SPEC.name}", BODY)
    server.fail_once.add(f"/m/{SPEC.name}")
    (result,) = fetch.fetch([SPEC], tmp_path, [server.url + "/m"], **FAST)
    assert result.read_bytes() == BODY and len(server.requests) == 2


def test_404_on_the_first_mirror_falls_back_to_the_second(
    server: Loopback, tmp_path: Path
) -> None:
    server.serve(f"/second/{SPEC.name}", BODY)
    (result,) = fetch.fetch(
        [SPEC], tmp_path, [server.url + "/first", server.url + "/second"], **FAST
    )
    assert result.read_bytes() == BODY
    # a 404 is not retried: one request per mirror
    assert [path for path, _ in server.requests] == [f"/first/{SPEC.name}", f"/second/{SPEC.name}"]


def test_corrupt_bytes_raise_a_checksum_error_and_leave_no_file(
    server: Loopback, tmp_path: Path
) -> None:
    corrupt = bytearray(BODY)
    corrupt[5000] ^= 0xFF
    url = server.serve(f"/m/{SPEC.name}", bytes(corrupt))
    with pytest.raises(ChecksumError) as error:
        fetch.fetch([SPEC], tmp_path, [server.url + "/m"], **FAST)
    message = str(error.value)
    actual = hashlib.sha256(bytes(corrupt)).hexdigest()
    assert SPEC.name in message and SPEC.sha256 in message and actual in message
    assert url in message
    assert [path.name for path in tmp_path.iterdir()] == [".lock"]


def test_server_down_gives_the_offline_message(tmp_path: Path) -> None:
    other = RemoteFile("t10k-labels-idx1-ubyte.gz", "0" * 64, 10)
    dead = [closed_port_url() + "/a", closed_port_url() + "/b"]
    with pytest.raises(DownloadError) as error:
        fetch.fetch([SPEC, other], tmp_path, dead, **FAST)
    message = str(error.value)
    assert f"{dead[0]}/{SPEC.name}" in message and f"{dead[1]}/{SPEC.name}" in message
    assert "after 3 attempts" in message
    assert "data.source=<folder>" in message and other.name in message and "mirror URL" in message
    assert "\n" not in message
    assert [path.name for path in tmp_path.iterdir()] == [".lock"]


def test_source_url_is_the_only_mirror_tried(server: Loopback, tmp_path: Path) -> None:
    server.serve(f"/mine/{SPEC.name}", BODY)
    (result,) = fetch.fetch(
        [SPEC], tmp_path, [closed_port_url()], source=server.url + "/mine/", **FAST
    )
    assert result.read_bytes() == BODY and len(server.requests) == 1


def test_local_folder_is_verified_in_place(tmp_path: Path) -> None:
    folder = tmp_path / "offline"
    folder.mkdir()
    (folder / SPEC.name).write_bytes(BODY)
    (result,) = fetch.fetch([SPEC], tmp_path / "dl", [closed_port_url()], source=str(folder))
    assert result == folder / SPEC.name
    (folder / SPEC.name).write_bytes(BODY[:-1])
    with pytest.raises(ChecksumError, match=f"{SPEC.name}: SHA-256 mismatch.*{folder}"):
        fetch.fetch([SPEC], tmp_path / "dl", [], source=str(folder))
    (folder / SPEC.name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{SPEC.name} not found; the folder must hold"):
        fetch.fetch([SPEC], tmp_path / "dl", [], source=str(folder))


def test_a_damaged_download_is_fetched_again(server: Loopback, tmp_path: Path) -> None:
    server.serve(f"/m/{SPEC.name}", BODY)
    (tmp_path / SPEC.name).write_bytes(b"damaged")
    (result,) = fetch.fetch([SPEC], tmp_path, [server.url + "/m"], **FAST)
    assert result.read_bytes() == BODY and len(server.requests) == 1


def test_parallel_fetches_of_one_dataset_download_once(server: Loopback, tmp_path: Path) -> None:
    # Two queued experiments switching to the same dataset run `download` at the same time.
    server.serve(f"/m/{SPEC.name}", BODY)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(
            lambda _: fetch.fetch([SPEC], tmp_path, [server.url + "/m"], **FAST), range(2)
        ))
    assert results[0] == results[1] and results[0][0].read_bytes() == BODY
    assert len(server.requests) == 1
