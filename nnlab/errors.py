"""Errors a user can cause and fix; stages print them as one line instead of a traceback."""


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite (message names the epoch and the fix)."""


class DownloadError(RuntimeError):
    """No mirror could deliver a file (message lists the URLs and how to work offline)."""


class ChecksumError(DownloadError):
    """A file's SHA-256 differs from the pinned one (message names file, hashes and source)."""


class DataFormatError(ValueError):
    """A raw file is truncated, corrupt or not in the format its dataset promises."""
