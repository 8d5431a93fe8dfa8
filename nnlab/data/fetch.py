"""Get pinned files: from mirrors over HTTP(S), or from a local folder; verify every byte.

- A download goes to `<name>.part` and is renamed into place only after its SHA-256 matches,
  so a failed or corrupt download never leaves a file that looks complete.
- A partial `.part` (dropped connection, Ctrl-C) is resumed with an HTTP Range request.
- Transient errors (connection refused or reset, timeouts, HTTP 5xx/429) are retried with
  exponential backoff; a 404, another client error or an unknown host moves on to the next
  mirror at once.
- A file that is already present and verified is not fetched again.

Downloads are kept in `data/downloads/<dataset>/` at the repository root (`DVC_ROOT` under
`dvc exp run --queue`). DVC removes a stage's outputs before rerunning it; keeping the
downloads outside `data/raw` is what lets a rerun skip the network and resume a `.part`.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import shutil
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from nnlab.core.errors import ChecksumError, DataFormatError, DownloadError
from nnlab.core.files import atomic_path, project_root, sha256

RETRIES = 3  # attempts per mirror for transient errors (an unknown host is not retried)
BACKOFF = 1.0  # seconds before the first retry, doubled after each further failure
TIMEOUT = 20.0  # seconds without data before an attempt counts as failed
CHUNK = 1 << 16
USER_AGENT = "nnlab (+https://github.com/nnlab; dataset download)"


@dataclass(frozen=True)
class RemoteFile:
    """A file as its publisher distributes it: name, pinned SHA-256 and size in bytes."""

    name: str
    sha256: str
    size: int


class _MirrorFailed(Exception):
    """This mirror cannot deliver the file; try the next one."""


def downloads_dir(dataset: str) -> Path:
    """Where `dataset`'s verified downloads are kept, at the repository root."""
    return project_root() / "data" / "downloads" / dataset


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def local_path(source: str) -> Path:
    """`data.source` as a folder: relative paths are relative to the repository root."""
    path = Path(source).expanduser()
    return path if path.is_absolute() else project_root() / path


def fetch(
    files: Sequence[RemoteFile],
    target: Path,
    mirrors: Sequence[str],
    source: str | None = None,
    *,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    timeout: float = TIMEOUT,
) -> list[Path]:
    """Verified paths of `files`, in order, downloading into `target` what is missing.

    `source` is `data.source`: None tries `mirrors` in order, a URL is the only mirror
    tried, anything else is a local folder that must hold the files (verified, not copied).
    """
    if source is not None and not is_url(source):
        return [_verified_local(file, local_path(source), files) for file in files]
    bases = [source] if source is not None else list(mirrors)
    with _locked(target):  # queued experiments may fetch the same dataset at the same time
        return [
            _download(file, target, bases, files, retries=retries, backoff=backoff,
                      timeout=timeout)
            for file in files
        ]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _checksum_message(file: RemoteFile, actual: str, origin: str) -> str:
    return (
        f"{file.name}: SHA-256 mismatch (expected {file.sha256}, got {actual}) "
        f"for {origin}; the file is corrupt or not the original"
    )


def _verified_local(file: RemoteFile, folder: Path, all_files: Sequence[RemoteFile]) -> Path:
    path = folder / file.name
    if not path.is_file():
        names = ", ".join(item.name for item in all_files)
        raise FileNotFoundError(
            f"data.source={str(folder)!r}: {file.name} not found; the folder must hold {names}"
        )
    actual = sha256(path)
    if actual != file.sha256:
        raise ChecksumError(_checksum_message(file, actual, str(path)))
    return path


def copy_into(path: Path, folder: Path) -> Path:
    """Copy `path` into `folder` under the same name, atomically; return the copy."""
    final = folder / path.name
    if final.resolve() != path.resolve():
        with atomic_path(final) as part:
            shutil.copyfile(path, part)
    return final


def _download(
    file: RemoteFile,
    target: Path,
    bases: Sequence[str],
    all_files: Sequence[RemoteFile],
    *,
    retries: int,
    backoff: float,
    timeout: float,
) -> Path:
    final = target / file.name
    if final.is_file():
        if sha256(final) == file.sha256:
            return final
        final.unlink()  # damaged since it was verified: fetch it again
    part = final.with_name(final.name + ".part")
    failures = []
    for base in bases:
        url = f"{base.rstrip('/')}/{file.name}"
        try:
            _get_with_retries(url, part, file, retries, backoff, timeout)
        except _MirrorFailed as error:
            failures.append(f"{url} ({error})")
            continue
        actual = sha256(part)
        if actual != file.sha256:
            part.unlink()
            raise ChecksumError(_checksum_message(file, actual, url) + "; deleted it")
        os.replace(part, final)
        print(f"download: {file.name} ({file.size:,} bytes) from {url}", file=sys.stderr)
        return final
    names = " ".join(item.name for item in all_files)
    raise DownloadError(
        f"could not download {file.name}: tried {'; '.join(failures)}. To work offline, "
        f"put {names} in a folder and run with -S data.source=<folder>, "
        "or point data.source at a mirror URL"
    )


def _get_with_retries(
    url: str, part: Path, file: RemoteFile, retries: int, backoff: float, timeout: float
) -> None:
    delay = backoff
    for attempt in range(1, retries + 1):
        try:
            _get_once(url, part, file, timeout)
            return
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code not in (408, 429):
                raise _MirrorFailed(f"HTTP {error.code} {error.reason}") from None
            reason = f"HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            cause = getattr(error, "reason", None) or error
            reason = str(cause) or type(cause).__name__
            if isinstance(cause, socket.gaierror):
                raise _MirrorFailed(f"host not found: {reason}") from None
        if attempt == retries:
            raise _MirrorFailed(f"{reason}, after {retries} attempts")
        print(f"download: {url}: {reason}; retrying in {delay:g} s", file=sys.stderr)
        time.sleep(delay)
        delay *= 2


def _get_once(url: str, part: Path, file: RemoteFile, timeout: float) -> None:
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            return  # the .part is already whole; the checksum decides whether it is right
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        with (
            open(part, "ab" if have else "wb") as out,
            tqdm(
                total=expected or file.size, initial=have, desc=file.name, unit="B",
                unit_scale=True, unit_divisor=1024, disable=not sys.stderr.isatty(),
            ) as bar,
        ):
            written = have
            while chunk := response.read(CHUNK):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
    if expected is not None and written < expected:
        raise ConnectionError(f"connection closed after {written:,} of {expected:,} bytes")


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive into `target`, refusing any member that could escape it.

    Every member is checked before anything is written: names must stay inside `target`
    (no absolute paths, no `..`), and only regular files and folders are allowed (no links,
    devices or FIFOs). `filter="data"` then applies Python's own checks as well. The archive
    is unpacked next to `target` and renamed into place, so a failure leaves nothing behind.
    """
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    root = staging.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                destination = (root / member.name).resolve()
                if not destination.is_relative_to(root) or not (member.isfile() or member.isdir()):
                    raise DataFormatError(
                        f"{archive}: refusing member {member.name!r}: it would be written "
                        f"outside {target} or is not a plain file; delete the archive and "
                        "download the original"
                    )
            tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, DataFormatError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, DataFormatError):
            raise
        raise DataFormatError(
            f"{archive}: not a readable tar archive ({error}); delete it and download again"
        ) from None
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
