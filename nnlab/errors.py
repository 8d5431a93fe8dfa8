"""Errors a user can cause and fix; stages print them as one line instead of a traceback."""


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite (message names the epoch and the fix)."""
