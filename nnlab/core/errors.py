"""Errors a user can cause and fix; stages print them as one line instead of a traceback."""


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
    """The sweep's pruner stopped a trial's training after an epoch (nnlab/search/link.py).
    Not an error: the train stage records the trial as pruned and saves no model."""

    def __init__(self, epoch: int, message: str) -> None:
        super().__init__(message)
        self.epoch = epoch


class TrackingServerError(RuntimeError):
    """MLFLOW_TRACKING_URI names a server that does not answer or refuses us (message names
    the URI and the fix): before training starts, or when a finished training could not be
    logged (its checkpoint keeps it for the next run)."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached a stage: unwinds like KeyboardInterrupt, so every `finally`
    and `with` runs (partial outputs removed, the MLflow run marked KILLED), then the stage
    prints one line. A BaseException, so that `except Exception` blocks never swallow it."""

    def __init__(self, signal_name: str, signal_number: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.signal_number = signal_number


# Errors a user can cause (bad params, missing or corrupt inputs, no network, a diverging loss,
# a tracking server that is down):
# the stages and the `nnlab` command print them as one line and exit 2. ParamsError and
# DataFormatError are ValueErrors; ChecksumError is a DownloadError.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, DivergenceError, DownloadError, TrackingServerError,
)
