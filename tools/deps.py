"""`make deps`: write each dvc.yaml stage's code deps, exactly the files the stage runs, from
the imports (nnlab/training/stage_code.py; the train stage keys its checkpoints on the same
lists). Only the code lines of each `deps:` list change: data deps, params, outs and comments
stay as written.

    python tools/deps.py           rewrite dvc.yaml's code deps
    python tools/deps.py --check   exit 1, naming `make deps`, if dvc.yaml is out of date
                                   (`make test` runs it)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: the checkout's nnlab, installed or not

from nnlab.training import stage_code  # noqa: E402

MARK = "# code: `make deps` writes these from the imports"
_STAGE = re.compile(r"^  (\w+):")
_DEPS = re.compile(r"^(\s+)deps:\s*$")


def _is_code(item: str) -> bool:
    value = item.strip()[2:].split("#")[0].strip()
    return value.startswith(("nnlab/", "stages/")) or value == "${item.code}"


def rewrite(text: str, root: Path = ROOT) -> str:
    """dvc.yaml's text with every stage's code deps as stage_code computes them."""
    lines, out, stage = text.splitlines(), [], None
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        if match := _STAGE.match(line):
            stage = match.group(1)
        deps = _DEPS.match(line)
        if not deps or stage not in stage_code.STAGE_SECTIONS:
            continue
        item_indent = deps.group(1) + "  "
        kept = []
        while index < len(lines) and lines[index].startswith(item_indent):
            item = lines[index]
            index += 1
            if item.strip() == MARK or (item.strip().startswith("- ") and _is_code(item)):
                continue
            kept.append(item)
        out += [*kept, item_indent + MARK,
                *(f"{item_indent}- {dep}" for dep in stage_code.code_deps(stage, root))]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if dvc.yaml's code deps are out of date")
    args = parser.parse_args(argv)
    path = ROOT / "dvc.yaml"
    text = path.read_text(encoding="utf-8")
    wanted = rewrite(text)
    if wanted == text:
        print("dvc.yaml: every stage's code deps are up to date")
        return 0
    if args.check:
        print("dvc.yaml: the code deps differ from what the stages import: run `make deps` "
              "(then `dvc repro`, and commit dvc.yaml with dvc.lock)", file=sys.stderr)
        return 1
    path.write_text(wanted, encoding="utf-8")
    print("dvc.yaml: code deps written; `dvc status` shows which stages they rerun")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
