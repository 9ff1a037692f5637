"""An algorithm that records each execution in a file, for the exactly-once crash test."""

from __future__ import annotations

import atexit
import os
import time


def record(path: str, pause_ms: float = 0.0) -> dict[str, int]:
    """Append one line to ``path`` (one per execution) and return how many there are.

    After the wrapper has renamed the output into place, at interpreter exit, ``path.written``
    is created and the process lingers ``pause_ms`` ms: the test kills the node from that moment on.
    """
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    with open(path, encoding="utf-8") as fh:
        executions = sum(1 for _ in fh)

    def written() -> None:
        with open(f"{path}.written", "w", encoding="utf-8"):
            pass
        time.sleep(pause_ms / 1000)

    atexit.register(written)
    return {"executions": executions, "pid": os.getpid()}
