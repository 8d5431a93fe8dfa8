"""Create the project venv and install requirements.lock into it, with uv (pip as a fallback).

Run by `make install` with the system Python, before anything else exists, so it uses the
standard library only. uv does not read pip's configuration: the index, extra indexes,
find-links, trusted hosts and CA certificate that pip is configured with (`pip config list`,
PIP_* variables included) are passed on to uv, so a machine that reaches only those sources
installs the same way with either tool.

    python3.11 tools/install.py sync .venv requirements.lock   # make install
    python3.11 tools/install.py lock .venv requirements.lock   # make lock
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# pip's keys (as `pip config list` spells them) -> how they reach uv.
LIST_OPTIONS = {"extra-index-url": "--extra-index-url", "find-links": "--find-links",
                "trusted-host": "--allow-insecure-host"}
SINGLE_OPTIONS = {"index-url": "--index-url"}
TRUE = {"1", "true", "yes", "on"}
# `pip config list` lines: `global.index-url='https://...'`, `:env:.find-links='/opt/wheels'`
CONFIG_LINE = re.compile(r"^(?P<variant>[^.]*)\.(?P<key>[a-z0-9-]+)='(?P<value>.*)'$")
SECTION_RANK = {"global": 0, "install": 1, "download": 1, ":env:": 2}


def read_pip_config(text: str) -> dict[str, str]:
    """pip's effective settings from `pip config list` output: PIP_* variables beat the
    `install` section, which beats `global`; among equals the later line (a later file) wins."""
    best: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        match = CONFIG_LINE.match(line.strip())
        if not match:
            continue
        rank = SECTION_RANK.get(match["variant"], -1)
        if rank < 0:
            continue
        key = match["key"]
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, match["value"])
    return {key: value for key, (_, value) in best.items()}


def uv_arguments(config: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv command-line options and environment variables that give uv pip's sources."""
    args: list[str] = []
    env: dict[str, str] = {}
    for key, option in SINGLE_OPTIONS.items():
        if config.get(key):
            args += [option, config[key]]
    for key, option in LIST_OPTIONS.items():
        for value in config.get(key, "").split():
            args += [option, value]
    if config.get("extra-index-url") or config.get("find-links"):
        # pip takes the best version from all its sources; uv by default stops at the first
        # index that has the package, which can miss the pinned version.
        args += ["--index-strategy", "unsafe-best-match"]
    if config.get("no-index", "").lower() in TRUE:
        args.append("--no-index")
    if config.get("cert"):
        env["SSL_CERT_FILE"] = config["cert"]
    return args, env


def pip_config(python: str) -> dict[str, str]:
    result = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                            text=True, check=False)
    return read_pip_config(result.stdout) if result.returncode == 0 else {}


def locked_version(lock: Path, package: str) -> str | None:
    for line in lock.read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.split()[0] if version else None
    return None


def run(command: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(command, check=True, env={**os.environ, **(env or {})})


def install_uv(python: str, version: str | None) -> str | None:
    """The uv binary inside the venv, installed by pip (which knows pip's sources), or None."""
    uv = Path(python).parent / "uv"
    spec = f"uv=={version}" if version else "uv"
    result = subprocess.run([python, "-m", "pip", "install", "--quiet", spec],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0 or not uv.exists():
        reason = (result.stderr.strip().splitlines() or ["uv did not appear in the venv"])[-1]
        print(f"install: could not install uv ({reason}); installing with pip instead, "
              "which is several times slower", flush=True)
        return None
    return str(uv)


def sync(venv: Path, lock: Path, use_pip: bool) -> None:
    """Make the venv hold exactly the lock file's packages, plus nnlab itself (editable)."""
    start = time.monotonic()
    python = str(venv.resolve() / "bin" / "python")
    if not Path(python).exists():
        run([sys.executable, "-m", "venv", str(venv)])
    uv = None if use_pip else install_uv(python, locked_version(lock, "uv"))
    if uv:
        options, env = uv_arguments(pip_config(python))
        # sync: exactly the lock, nothing more (leftovers from an older lock are removed).
        # Bytecode is compiled here, as pip does. It costs about 15 s of the install, and
        # saves 40 s on the first `make run` (measured: 81 s against 121 s from a fresh
        # clone), whose stage processes would otherwise compile what they import.
        run([uv, "pip", "sync", "--python", python, *options, "--compile-bytecode", "--quiet",
             str(lock)], env)
        run([uv, "pip", "install", "--python", python, *options, "--no-deps",
             "--no-build-isolation", "--quiet", "-e", "."], env)
    else:
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        run([*pip, "-r", str(lock)])
        run([*pip, "--no-deps", "--no-build-isolation", "-e", "."])
    print(f"install: {lock} installed into {venv} with {'uv' if uv else 'pip'} in "
          f"{time.monotonic() - start:.0f} s", flush=True)


def compile_lock(venv: Path, lock: Path, upgrade: bool) -> None:
    """Re-pin `lock` from pyproject.toml (the dev and benchmark extras included) with
    `uv pip compile`.
    uv keeps every version already pinned in `lock` that still fits, unless `upgrade`."""
    python = str(venv.resolve() / "bin" / "python")
    uv = Path(python).parent / "uv"
    if not uv.exists():
        raise SystemExit("install: no uv in the venv; run `make install` first")
    options, env = uv_arguments(pip_config(python))
    run([str(uv), "pip", "compile", "pyproject.toml", "--extra", "dev", "--extra", "benchmark",
         "--python", python,
         *options, *(["--upgrade"] if upgrade else []), "--custom-compile-command", "make lock",
         "--quiet", "-o", str(lock)], env)
    print(f"lock: {lock} re-pinned; review `git diff {lock}`, then `make install`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["sync", "lock"])
    parser.add_argument("venv", type=Path)
    parser.add_argument("lock", type=Path)
    parser.add_argument("--pip", action="store_true", help="sync with pip, not uv")
    parser.add_argument("--upgrade", action="store_true", help="lock: newest versions allowed")
    args = parser.parse_args(argv)
    if args.command == "sync":
        sync(args.venv, args.lock, args.pip or os.environ.get("NNLAB_INSTALLER") == "pip")
    else:
        compile_lock(args.venv, args.lock, args.upgrade)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"install: `{' '.join(map(str, error.cmd))}` failed (exit {error.returncode}); "
              "see the lines above", file=sys.stderr)
        sys.exit(1)
