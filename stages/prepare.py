"""Stage `prepare`: raw files -> uint8 arrays + classes.json, with a fixed test hold-out."""

from __future__ import annotations

from nnlab.core.layout import SKIPPED_FILE, Layout
from nnlab.core.schema import Params
from nnlab.data import ingest
from stages._common import run


def main(argv: list[str] | None = None) -> None:
    def body(params: Params) -> None:
        counts = ingest.prepare(params.data, Layout())
        print(f"prepare: {counts['train']} train+val and {counts['test']} test images")
        for name in counts["left_out"]:
            print(f"prepare: warning: class {name!r} left out: none of its files is a "
                  f"readable image (see data/prepared/{SKIPPED_FILE})")
        if counts["skipped"]:
            print(
                f"prepare: skipped {counts['skipped']} unreadable file(s); "
                f"see data/prepared/{SKIPPED_FILE}"
            )

    run("prepare", body, Layout().outputs("prepare"), sections=("data",))


if __name__ == "__main__":
    main()
