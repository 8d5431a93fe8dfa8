"""One console format for every model with epochs.

- In a terminal: one progress bar per training, with the epoch, the loss, the validation
  accuracy and tqdm's ETA.
- In a log (no TTY: `dvc repro > log`, CI): at most one line per epoch and about 15 per
  training: the first epoch, every k-th, and the last.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import IO

MAX_LINES = 15  # epoch lines of one training in a log


class EpochProgress:
    """Shows each finished epoch of one training (`update`), then `close`."""

    def __init__(self, label: str, epochs: int, done: int = 0, stream: IO[str] | None = None,
                 tty: bool | None = None) -> None:
        self.label, self.epochs, self.done = label, epochs, done
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = max(1, math.ceil(epochs / MAX_LINES))
        self._start, self._first = time.monotonic(), done
        self._first_end = self._start
        self._bar = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=epochs, initial=done, desc=label, unit="epoch",
                             file=self.stream, dynamic_ncols=True, leave=True)

    def restart_clock(self) -> None:
        """Training starts now (the time per epoch leaves out the set-up before it)."""
        self._start = time.monotonic()

    def update(self, row: Mapping[str, float]) -> None:
        epoch = int(row["epoch"])
        self.done = epoch
        figures = {"loss": row.get("loss"), "val_acc": row.get("val_accuracy")}
        text = " ".join(f"{name} {value:.4f}" for name, value in figures.items()
                        if value is not None)
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(epoch - self._bar.n)
            return
        now = time.monotonic()
        if epoch == self._first + 1:  # the first epoch also pays for compiling and warm-up
            self._first_end = now
            per_epoch = now - self._start
        else:  # from then on, the epochs since the first
            per_epoch = (now - self._first_end) / (epoch - self._first - 1)
        if epoch == self._first + 1:  # no time left yet: the first epoch's says too little
            print(f"{self.label}: epoch {epoch}/{self.epochs}  {text}  {per_epoch:.2f} s "
                  "(with the start-up)", file=self.stream, flush=True)
        elif epoch % self.every == 0 or epoch == self.epochs:
            left = per_epoch * (self.epochs - epoch)
            print(f"{self.label}: epoch {epoch}/{self.epochs}  {text}  "
                  f"{per_epoch:.2f} s/epoch, at most {_duration(left)} left", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
