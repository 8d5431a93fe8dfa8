"""`nnlab --version`: pyproject.toml's version, read from the installed package's metadata,
and the package ships its type hints (PEP 561)."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import nnlab
from tests.support.helpers import ROOT


def test_version_comes_from_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = subprocess.run([sys.executable, "-m", "nnlab.cli", "--version"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == f"nnlab {declared}"
    assert nnlab.__version__ == declared


def test_the_package_says_it_is_typed() -> None:
    assert (ROOT / "nnlab" / "py.typed").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in package_data["package-data"]["nnlab"]
