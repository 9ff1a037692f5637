"""Peak memory (RSS) of node, server and client for one large result, JSON path vs binary path.

Each configuration runs in a fresh process with its own one-node demo network, so every peak
(``VmHWM``: the high-water mark of resident memory) belongs to that configuration alone. The
algorithm (``v6nb/diagnostics`` ``blob``) runs in its own process and is not counted.

Run: ``python benchmarks/payload.py [--mb 100]``; one configuration:
``python benchmarks/payload.py --one --encrypted --path binary``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_note, machine  # noqa: E402

_NEVER = 10**9  # binary_result_kb that keeps every result on the JSON path


def _hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _tree_hwm_mb(pid: int) -> float:
    """The largest peak in ``pid`` and its descendants (the gunicorn worker, for the server)."""
    best, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            best = max(best, _hwm_mb(p))
            todo += _children(p)
        except (OSError, RuntimeError):
            continue
    return best


def one(encrypted: bool, path: str, mb: float) -> dict:
    """Run one configuration; returns peaks in MiB before and after fetching the result."""
    from vantage6nb import demo

    settings = {"binary_result_kb": 1024 if path == "binary" else _NEVER}
    with demo.start(nodes=1, encrypted=encrypted, node_settings=settings) as net:
        client = net.client()
        pids = net.pids()
        node_pid = next(p for n, p in pids.items() if n != "server")
        org = client.whoami["organization_id"]
        before = {
            "node": _hwm_mb(node_pid),
            "server": _tree_hwm_mb(pids["server"]),
            "client": _hwm_mb(os.getpid()),
        }
        t0 = time.perf_counter()
        task = client.task.create(
            organizations=[org],
            image="v6nb/diagnostics",
            method="blob",
            kwargs={"megabytes": mb},
        )
        task.wait(timeout=1800)
        t_done = time.perf_counter()
        value = task.result()
        t_fetch = time.perf_counter()
        assert value["lines"] == int(mb * 1024), value["lines"]
        del value
        return {
            "encrypted": encrypted,
            "path": path,
            "mb": mb,
            "run_s": round(t_done - t0, 2),
            "fetch_s": round(t_fetch - t_done, 2),
            "before": before,
            "peak": {
                "node": _hwm_mb(node_pid),
                "server": _tree_hwm_mb(pids["server"]),
                "client": _hwm_mb(os.getpid()),
            },
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0, help="result size in MiB")
    ap.add_argument("--one", action="store_true", help="run one configuration, print JSON")
    ap.add_argument("--encrypted", action="store_true")
    ap.add_argument("--path", choices=("json", "binary"), default="binary")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.encrypted, args.path, args.mb)))
        return
    print(f"# {machine()}; {load_note()}; result of {args.mb:g} MiB (JSON)")
    print("| encryption | path | node peak | server peak | client peak | run | fetch |")
    print("|---|---|---|---|---|---|---|")
    for encrypted in (False, True):
        for path in ("json", "binary"):
            cmd = [sys.executable, __file__, "--one", "--path", path, "--mb", str(args.mb)]
            if encrypted:
                cmd.append("--encrypted")
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"| {'on' if encrypted else 'off'} | {path} | failed: {out.stderr[-300:]} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            b, p = r["before"], r["peak"]
            cells = [f"{p[k]:.0f} MiB (idle {b[k]:.0f})" for k in ("node", "server", "client")]
            print(
                f"| {'on' if encrypted else 'off'} | {path} | {' | '.join(cells)} "
                f"| {r['run_s']:.1f} s | {r['fetch_s']:.1f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
