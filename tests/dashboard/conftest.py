"""The browser tests' set-up installs what they need, as the README's test command promises.

On a fresh machine Debian's chromium is not there yet: the first browser test of the session
runs ``.ci/browser-setup.sh`` (apt-get install chromium, pip install playwright when missing).
A failed install fails the tests with the script's output; it never skips them.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / ".ci" / "browser-setup.sh"


def _browser_missing() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return True
    return not Path("/usr/bin/chromium").exists()


@pytest.fixture(scope="session")
def browser_installed() -> None:
    if not _browser_missing():
        return
    bash = shutil.which("bash") or "/bin/bash"
    done = subprocess.run(
        [bash, str(SETUP)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0 or _browser_missing():
        pytest.fail(
            f"{SETUP} could not install the browser (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    # A package installed just now must be importable in this interpreter too.
    importlib.invalidate_caches()
