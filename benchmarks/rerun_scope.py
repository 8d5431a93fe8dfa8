"""Which stages a code change reruns: for each file given, append a comment to it in a clone of
a commit, run `dvc status`, and print the stages whose code deps changed.

    python benchmarks/rerun_scope.py [--rev REV] FILE [FILE ...]

Works on a clone without any trained outputs: only changed deps under nnlab/ and stages/ are
counted, so missing data does not show. The clone's dvc.lock must match its code (it does on
every commit of main). tests/e2e/test_rerun_scope.py checks every file, on a trained copy,
against what each stage really imports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_changes(clone: Path) -> set[str]:
    """The stages whose dvc.lock'd code deps differ from the files in `clone`."""
    output = subprocess.run(["dvc", "status", "--json"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    changed = set()
    for stage, changes in json.loads(output or "{}").items():
        for change in changes:
            deps = change.get("changed deps", {}) if isinstance(change, dict) else {}
            if any(path.startswith(("nnlab/", "stages/")) for path in deps):
                changed.add(stage)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="files to touch, relative to the repo root")
    parser.add_argument("--rev", default="HEAD", help="the commit to clone (default: HEAD)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clone = Path(folder) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", args.rev], cwd=clone, check=True)
        before = code_changes(clone)
        if before:
            raise SystemExit(f"dvc.lock of {args.rev} does not match its code: {before}")
        total = len(subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=clone,
                                   capture_output=True, text=True, check=True).stdout.split())
        print(f"{args.rev}: {total} stages")
        for file in args.files:
            path = clone / file
            original = path.read_bytes()
            path.write_bytes(original + b"\n# touched\n")
            changed = code_changes(clone)
            path.write_bytes(original)
            print(f"{file}: {len(changed)} stages: {', '.join(sorted(changed)) or '-'}")


if __name__ == "__main__":
    main()
