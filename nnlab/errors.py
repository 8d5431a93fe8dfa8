"""Errors a user can cause and fix; stages print them as one line instead of a traceback."""


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite (message names the epoch and the fix)."""


class DownloadError(RuntimeError):
    """No mirror could deliver a file (message lists the URLs and how to work offline)."""


class ChecksumError(DownloadError):
    """A file's SHA-256 differs from the pinned one (message names file, hashes and source)."""


class DataFormatError(ValueError):
    """A raw file is truncated, corrupt or not in the format its dataset promises."""


# Errors a user can cause (bad params, missing or corrupt inputs, no network, a diverging loss):
# the stages and the `nnlab` command print them as one line and exit 2. ParamsError and
# DataFormatError are ValueErrors; ChecksumError is a DownloadError.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, DivergenceError, DownloadError,
)
