"""Work in chunks sized by a memory budget, never by the dataset (scikit-learn's
`working_memory` and `gen_batches`): prediction and evaluation hold the data plus a constant,
whether a set has 300 images or 60,000."""

from __future__ import annotations

from collections.abc import Iterator

WORKING_MEMORY = 64 << 20  # bytes one chunk of work may take beyond the data and the model


def chunk_rows(bytes_per_row: int, budget: int | None = None) -> int:
    """How many rows (images) fit in `budget` (default: WORKING_MEMORY), at least 1."""
    return max(1, (budget or WORKING_MEMORY) // max(1, bytes_per_row))


def chunks(total: int, rows: int) -> Iterator[slice]:
    """Slices of at most `rows` that cover range(total) in order."""
    for start in range(0, total, rows):
        yield slice(start, min(start + rows, total))
