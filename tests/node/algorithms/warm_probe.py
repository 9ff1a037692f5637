"""A probe for warm starts: what a run can tell about the process it runs in."""

from __future__ import annotations

import os
import random
import sys
import tempfile

import numpy as np

STATE: str | None = None  # set by a run: a second run in the same process would see it


def remember(tag: str = "x") -> dict:
    """Set a module global and report the process: pid, parent, state before, random draws."""
    global STATE
    before, STATE = STATE, tag
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "state_before": before,
        "numpy": float(np.random.random()),
        "random": random.random(),
        "tmp": tempfile.gettempdir(),
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "argv": sys.argv[1:],
    }


def exit_with(code: int = 3) -> None:
    """Leave with ``code`` and no output."""
    print(f"warm_probe: leaving with {code}", flush=True)
    sys.exit(code)


def kill_self() -> None:
    """Die of SIGKILL."""
    os.kill(os.getpid(), 9)
