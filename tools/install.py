"""Create the project venv and install requirements.lock into it, with uv (pip as a fallback).

Run by `make install` with the system Python, before anything else exists, so it uses the
standard library only. uv does not read pip's configuration: the index, extra indexes,
find-links, trusted hosts and CA certificate that pip is configured with (`pip config list`,
PIP_* variables included) are passed on to uv, so a machine that reaches only those sources
installs the same way with either tool.

    python3 tools/install.py sync .venv requirements.lock          # make install
    python3 tools/install.py sync .venv requirements-cuda.lock     # make install ACCEL=cuda
    python3 tools/install.py lock .venv                            # make lock: both lock files
    python3 tools/install.py check .venv                           # make test: every platform

The lock files are universal (`uv pip compile --universal`): one file for Python 3.11 to 3.13
on Linux x86_64 and aarch64 and on macOS arm64, with environment markers where a package
differs (TensorFlow's CPU-only build exists for Linux x86_64 only). `check` resolves each
lock for every supported Python and platform with wheels only, as uv would install it there.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# pip's keys (as `pip config list` spells them) -> how they reach uv.
LIST_OPTIONS = {"extra-index-url": "--extra-index-url", "find-links": "--find-links",
                "trusted-host": "--allow-insecure-host"}
SINGLE_OPTIONS = {"index-url": "--index-url"}
TRUE = {"1", "true", "yes", "on"}
# `pip config list` lines: `global.index-url='https://...'`, `:env:.find-links='/opt/wheels'`
CONFIG_LINE = re.compile(r"^(?P<variant>[^.]*)\.(?P<key>[a-z0-9-]+)='(?P<value>.*)'$")
SECTION_RANK = {"global": 0, "install": 1, "download": 1, ":env:": 2}

SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
# uv's target names. glibc 2.28 is onnxruntime's floor; macOS 14 is onnxruntime's and
# TensorFlow's floor on Apple Silicon.
PLATFORMS = {"Linux x86_64": "x86_64-manylinux_2_28", "Linux aarch64": "aarch64-manylinux_2_28",
             "macOS arm64": "aarch64-apple-darwin"}
MACOS_VERSION = "14.0"
# (platform.system(), platform.machine()) -> the name above.
MACHINES = {("Linux", "x86_64"): "Linux x86_64", ("Linux", "aarch64"): "Linux aarch64",
            ("Darwin", "arm64"): "macOS arm64"}
# What `make install ACCEL=...` installs, and where it can.
VARIANTS = {"cpu": (Path("requirements.lock"), tuple(PLATFORMS)),
            "cuda": (Path("requirements-cuda.lock"), ("Linux x86_64", "Linux aarch64"))}
CUDA_OVERRIDES = Path("tools/cuda-overrides.txt")
# Pure-Python packages published as source only: built on any machine in a second.
SOURCE_ONLY = ("antlr4-python3-runtime",)


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


def python_problem(version: tuple[int, int], executable: str) -> str | None:
    """One line if this Python cannot make the venv, else None."""
    if f"{version[0]}.{version[1]}" in SUPPORTED_PYTHONS:
        return None
    return (f"install: {executable} is Python {version[0]}.{version[1]}; nnlab needs Python "
            f"{', '.join(SUPPORTED_PYTHONS[:-1])} or {SUPPORTED_PYTHONS[-1]}: install one, or "
            "name it with `make PYTHON=/path/to/python3.12 ...`")


def platform_problem(lock: Path, system: str, machine: str) -> str | None:
    """One line if `lock` is not made for this machine (an Intel Mac, the CUDA lock on a Mac),
    else None."""
    here = MACHINES.get((system, machine))
    if here is None:
        return (f"install: nnlab installs on {', '.join(PLATFORMS)} (TensorFlow 2.21's wheels), "
                f"not on {system} {machine}; on Windows, use WSL 2")
    for accel, (path, platforms) in VARIANTS.items():
        if path.name == lock.name and here not in platforms:
            return (f"install: ACCEL={accel} installs on {' and '.join(platforms)}, not on "
                    f"{here}; run `make install ACCEL=cpu`")
    return None


def sync(venv: Path, lock: Path, use_pip: bool) -> None:
    """Make the venv hold exactly the lock file's packages, plus nnlab itself (editable)."""
    start = time.monotonic()
    python = str(venv.resolve() / "bin" / "python")
    problem = platform_problem(lock, platform.system(), platform.machine())
    if problem:
        raise SystemExit(problem)
    if not Path(python).exists():
        problem = python_problem(sys.version_info[:2], sys.executable)
        if problem:
            raise SystemExit(problem)
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


def venv_uv(venv: Path) -> tuple[str, list[str], dict[str, str]]:
    """The venv's uv, with pip's sources as uv options and environment."""
    python = str(venv.resolve() / "bin" / "python")
    uv = Path(python).parent / "uv"
    if not uv.exists():
        raise SystemExit("install: no uv in the venv; run `make install` first")
    options, env = uv_arguments(pip_config(python))
    return str(uv), options, env


def compile_lock(venv: Path, upgrade: bool) -> None:
    """Re-pin both lock files from pyproject.toml (the dev and benchmark extras included) with
    `uv pip compile --universal`. uv keeps every version already pinned that still fits,
    unless `upgrade`; the CUDA lock is the CPU lock's versions plus the `cuda` extra."""
    uv, options, env = venv_uv(venv)
    common = [uv, "pip", "compile", "pyproject.toml", "--universal", "--python-version",
              SUPPORTED_PYTHONS[0], "--extra", "dev", "--extra", "benchmark", *options,
              *(["--upgrade"] if upgrade else []), "--custom-compile-command", "make lock",
              "--quiet"]
    cpu, cuda = VARIANTS["cpu"][0], VARIANTS["cuda"][0]
    run([*common, "-o", str(cpu)], env)
    run([*common, "--extra", "cuda", "--override", str(CUDA_OVERRIDES), "--constraint",
         str(cpu), "-o", str(cuda)], env)
    print(f"lock: {cpu} and {cuda} re-pinned; review `git diff`, then `make install`, and "
          "`make test` checks both on every platform")


def pinned(text: str) -> set[tuple[str, str]]:
    """(package name, version) of a lock file's lines; markers ignored, so a package pinned at
    two versions for two Pythons gives two pairs."""
    pins = set()
    for line in text.splitlines():
        spec = line.split(";")[0].split("#")[0].strip()
        if "==" in spec and not spec.startswith("-"):
            name, _, version = spec.partition("==")
            pins.add((name.strip().lower(), version.strip()))
    return pins


UvSetup = tuple[str, list[str], dict[str, str]]  # venv_uv's answer


def resolve(tool: UvSetup, lock: Path, python_version: str, where: str, output: Path,
            offline: bool) -> subprocess.CompletedProcess[str]:
    """`uv pip compile` of `lock` for one Python and platform, from wheels only."""
    uv, options, env = tool
    # --python: the venv's interpreter, so uv does not query every python on PATH (a pyenv
    # shim takes a second each) before resolving for `python_version`.
    return subprocess.run(
        [uv, "pip", "compile", str(lock), "--python", str(Path(uv).parent / "python"),
         "--python-version", python_version,
         "--python-platform", PLATFORMS[where], "--only-binary", ":all:",
         *[arg for name in SOURCE_ONLY for arg in ("--no-binary", name)], *options,
         *(["--offline"] if offline else []), "--no-header", "--no-annotate", "--quiet", "-o",
         str(output)],
        capture_output=True, text=True, check=False,
        env={**os.environ, **env, "MACOSX_DEPLOYMENT_TARGET": MACOS_VERSION})


def check_target(venv: Path, lock: Path, python_version: str, where: str,
                 tool: UvSetup | None = None) -> str | None:
    """None if `lock` installs from wheels with Python `python_version` on `where` and holds
    every package needed there; else one line saying what is wrong. uv's cache answers first
    (a pinned release's files do not change); the index is asked only when the cache cannot
    (a new machine, a new pin) or says no. `tool`: venv_uv(venv), if already known."""
    tool = tool or venv_uv(venv)
    with tempfile.TemporaryDirectory() as folder:
        resolved = Path(folder) / "resolved.txt"
        result = resolve(tool, lock, python_version, where, resolved, offline=True)
        if result.returncode != 0:
            result = resolve(tool, lock, python_version, where, resolved, offline=False)
        if result.returncode != 0:
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            cause = next((line for line in lines if line.startswith("cause:")),
                         lines[-1] if lines else f"uv exited {result.returncode}")
            return f"{lock} on Python {python_version}, {where}: {cause}"
        extra = pinned(resolved.read_text()) - pinned(lock.read_text())
    if extra:
        needed = ", ".join(f"{name}=={version}" for name, version in sorted(extra))
        return (f"{lock} on Python {python_version}, {where}: needs {needed}, which the lock "
                "does not pin there; run `make lock`")
    return None


def check_locks(venv: Path) -> int:
    """Resolve every lock for every supported Python and platform, four at a time (each is a
    uv process mostly waiting on the index); print a line for each, in a fixed order. 1 s
    for the 15 from uv's cache, 51 s from an empty one (docs/development.md)."""
    targets = [(lock, python_version, where) for lock, platforms in VARIANTS.values()
               for where in platforms for python_version in SUPPORTED_PYTHONS]
    tool = venv_uv(venv)  # pip's sources, read once
    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = list(pool.map(lambda target: check_target(venv, *target, tool=tool),
                                 targets))
    for (lock, python_version, where), problem in zip(targets, problems, strict=True):
        print(f"check: {problem}" if problem else
              f"check: {lock} installs on Python {python_version}, {where}", flush=True)
    failures = sum(problem is not None for problem in problems)
    if failures:
        print(f"check: {failures} of {len(targets)} combinations do not install; see above",
              file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["sync", "lock", "check"])
    parser.add_argument("venv", type=Path)
    parser.add_argument("lock", type=Path, nargs="?", default=VARIANTS["cpu"][0],
                        help="sync: the lock file to install (default: %(default)s)")
    parser.add_argument("--pip", action="store_true", help="sync with pip, not uv")
    parser.add_argument("--upgrade", action="store_true", help="lock: newest versions allowed")
    args = parser.parse_args(argv)
    if args.command == "sync":
        sync(args.venv, args.lock, args.pip or os.environ.get("NNLAB_INSTALLER") == "pip")
    elif args.command == "lock":
        compile_lock(args.venv, args.upgrade)
    else:
        return check_locks(args.venv)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        print(f"install: `{' '.join(map(str, error.cmd))}` failed (exit {error.returncode}); "
              "see the lines above", file=sys.stderr)
        sys.exit(1)
