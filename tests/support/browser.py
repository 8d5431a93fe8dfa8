"""A real browser for the UI tests: Debian's Chromium, headless (.ci/run installs it).
Screenshots go under .test-artifacts/ui/ (look at them)."""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.support.e2e import ROOT

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / ".test-artifacts" / "ui"
MISSING = "Chromium is not installed: apt-get install chromium (.ci/run does)"


def page(url: str, screenshot: str | None = None) -> tuple[str, str]:
    """(the page's DOM once its scripts ran and its charts drew, its text), and a
    screenshot of it."""
    base = [str(BROWSER), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--run-all-compositor-stages-before-draw", "--virtual-time-budget=30000",
            "--window-size=1600,1000"]
    if screenshot:
        SHOTS.mkdir(parents=True, exist_ok=True)
        subprocess.run([*base, f"--screenshot={SHOTS / screenshot}", url],
                       capture_output=True, timeout=180, check=True)
    done = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                          timeout=180, check=True)
    text = " ".join(re.sub(r"<!--.*?-->|<[^>]+>", " ", done.stdout).split())
    return done.stdout, text
