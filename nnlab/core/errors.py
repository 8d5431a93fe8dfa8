"""Errors a user can cause and fix; stages print them as one line instead of a traceback."""

import errno


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite, or stayed far above a chance-level model's
    (message names the model, the epoch, the learning rate and the fix)."""


class DownloadError(RuntimeError):
    """No mirror could deliver a file (message lists the URLs and how to work offline)."""


class ChecksumError(DownloadError):
    """A file's SHA-256 differs from the pinned one (message names file, hashes and source)."""


class DataFormatError(ValueError):
    """A file is truncated, corrupt or not in the format it promises (message names the
    path and how to restore it)."""


class Pruned(Exception):
    """The sweep's pruner stopped a trial's training after an epoch (nnlab/search/trial_link.py).
    Not an error: the train stage records the trial as pruned and saves no model."""

    def __init__(self, epoch: int, message: str) -> None:
        super().__init__(message)
        self.epoch = epoch


class TrackingServerError(RuntimeError):
    """MLFLOW_TRACKING_URI names a server that does not answer or refuses us (message names
    the URI and the fix): before training starts, or when a finished training could not be
    logged (its checkpoint keeps it for the next run)."""


class DeviceError(RuntimeError):
    """params.yaml asks for a device or backend this machine cannot give (`device: gpu` with
    no usable GPU, a backend that is not installed): message names what is missing and how
    to install it."""


class ProcessesError(RuntimeError):
    """A training of several processes (docs/devices.md, "Several machines") could not start
    or go on: a process never joined, was refused (another commit, params or data), or stopped
    answering mid-training. The checkpoint is kept: started again with every process, the
    training goes on from it."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached a stage: unwinds like KeyboardInterrupt, so every `finally`
    and `with` runs (partial outputs removed, the MLflow run marked KILLED), then the stage
    prints one line. A BaseException, so that `except Exception` blocks never swallow it."""

    def __init__(self, signal_name: str, signal_number: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.signal_number = signal_number


# Errors a user can cause (bad params, missing or corrupt inputs, no network, a diverging loss,
# a tracking server that is down, a GPU that is not there):
# the stages and the `nnlab` command print them as one line and exit 2. ParamsError and
# DataFormatError are ValueErrors; ChecksumError is a DownloadError.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, DivergenceError, DownloadError, TrackingServerError,
    DeviceError, ProcessesError,
)


# A write refused by the disk or the file system: full, over a file-size or disk quota,
# read-only, or not ours to write.
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large "
                  "(over the file-size limit)", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted"}
# What SQLite says of the same faults (through SQLAlchemy and MLflow, in their messages).
SQLITE_STORAGE = {"database or disk is full": "free disk space",
                  "disk I/O error": "free disk space (or raise the file-size limit)",
                  "attempt to write a readonly database": "make mlflow.db and its folder "
                  "writable", "unable to open database file": "make mlflow.db and its folder "
                  "writable"}


def storage_problem(error: BaseException) -> str | None:
    """One line for a write the disk refused, naming the file and the fix, or None if
    `error` (or what it was raised from) is not one."""
    seen: BaseException | None = error
    for _ in range(10):  # the chain: MlflowException <- SQLAlchemy <- sqlite3 <- OSError
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in STORAGE_ERRNOS:
            where = f"{seen.filename}: " if seen.filename else ""
            fix = "make it writable" if seen.errno in (errno.EROFS, errno.EACCES, errno.EPERM) \
                else "free disk space (or raise the file-size limit)"
            return (f"{where}{STORAGE_ERRNOS[seen.errno]}: the write failed and nothing "
                    f"half-written was kept; {fix}, then run the command again")
        text = str(seen)
        for phrase, fix in SQLITE_STORAGE.items():
            if phrase in text:
                return (f"the MLflow store could not be written ({phrase}): {fix} (or point "
                        "MLFLOW_TRACKING_URI at another store), then run the command again")
        seen = seen.__cause__ or seen.__context__
    return None
