"""Shared helpers for the benchmark scripts: percentiles, RSS, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize_ms(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return f"median {statistics.median(ms):7.1f} ms   p95 {percentile(ms, 0.95):7.1f} ms   (n={len(ms)})"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )


def load_note() -> str:
    """The load average right now, e.g. ``load 1.23 0.98 0.70 (1/5/15 min)``."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"


def bare_python_run(
    module: str,
    method: str,
    kwargs: dict,
    workdir: str,
    databases: dict[str, tuple[str, str]] | None = None,
) -> float:
    """Wall time of the algorithm's own process for one run, started the way the process runtime
    does (``python -m vantage6nb.algorithm <module>``, same environment, output captured)."""
    import json

    from vantage6nb.common import contract

    inp = os.path.join(workdir, "input.json")
    out = os.path.join(workdir, "output.json")
    tok = os.path.join(workdir, "token")
    with open(inp, "w") as fh:
        json.dump(contract.make_input(method, kwargs=kwargs), fh)
    open(tok, "w").close()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: os.environ[k] for k in ("PATH", "LANG", "HOME", "VIRTUAL_ENV") if k in os.environ}
    env.update(PYTHONPATH=root, PYTHONUNBUFFERED="1", TMPDIR=workdir)
    env.update(
        contract.build_environment(
            input_file=inp,
            output_file=out,
            token_file=tok,
            temporary_folder=workdir,
            host="http://127.0.0.1",
            port=1,
            api_path="",
            databases=databases or {},
        )
    )
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vantage6nb.algorithm", module],
        env=env,
        cwd=workdir,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return time.perf_counter() - t0
