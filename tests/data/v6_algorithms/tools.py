"""The real vantage6-algorithm-tools for the tests: a cached venv (scripts/setup-v6-tools.sh) with
the vantage6-style test algorithms installed, and the wheels to build their Docker image offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from tests.support.services import unavailable

__all__ = ["AVERAGE", "AVERAGE_IMAGE", "AVERAGE_MODULE", "tools_dir", "venv_python"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
AVERAGE = HERE / "v6-average-py"
AVERAGE_MODULE = "v6-average-py"  # vantage6's template: the code folder is named like the package
AVERAGE_IMAGE = "v6test/v6-average-py"


@cache
def tools_dir() -> Path:
    """The cache folder holding ``venv/`` and ``wheels/`` (made once by scripts/setup-v6-tools.sh)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup-v6-tools.sh"), "--print-dir"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if out.returncode != 0:
        unavailable(
            "vantage6-algorithm-tools could not be installed (scripts/setup-v6-tools.sh needs the "
            f"PyPI index once): {out.stderr.strip().splitlines()[-1:] or out.returncode}"
        )
    return Path(out.stdout.strip().splitlines()[-1])


@cache
def venv_python() -> Path:
    """The venv's interpreter, with the test algorithms freshly installed (from a copy: no droppings)."""
    python = tools_dir() / "venv" / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="v6nb-v6alg-") as tmp:
        copy = Path(tmp) / AVERAGE.name
        shutil.copytree(AVERAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        out = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-build-isolation",
                "--force-reinstall",
                str(copy),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"installing {AVERAGE.name} into {python} failed:\n{out.stderr}")
    return python


if __name__ == "__main__":  # pragma: no cover - for a shell: print the interpreter
    print(venv_python(), file=sys.stdout)
