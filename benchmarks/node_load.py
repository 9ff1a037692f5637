"""Many process-runtime nodes under a steady stream of tasks: does any run execute twice, does any
healthy request fail?

Run: ``python -m benchmarks.node_load [--nodes 20] [--seconds 180] [--researchers 4]``.

A demo network of ``--nodes`` organizations (one process-runtime node each, the default 30 s
re-sync) gets tasks to every organization from ``--researchers`` threads, each creating a task and
waiting for its results, for ``--seconds`` seconds. Afterwards the node logs are read for:

- ``previous life``: a node starting a run again that it had started in this life;
- ``unreachable``: a request that failed with a transport error while the server was up
  (the server runs throughout, so every such line is spurious);
- executions per run: every ``run N (task ...) started`` line, so a run started twice shows.

The server's keep-alive timeout (30 s) equals the nodes' re-sync interval, the setting in which
stale pooled connections used to surface as ``ConnectionError`` on every re-sync tick.
"""

from __future__ import annotations

import argparse
import collections
import re
import tempfile
import threading
import time
from pathlib import Path

from benchmarks._common import load_note, machine, summarize_ms

IMAGE = "v6nb/diagnostics"
_STARTED = re.compile(r"run (\d+) \(task \d+, [^)]*\) started on the")


def scan_logs(logs: list[Path]) -> dict[str, object]:
    """What the node logs say: previous-life re-runs, transport-error retries, double starts."""
    previous = unreachable = 0
    doubles: list[tuple[str, int, int]] = []
    samples: list[str] = []
    for path in logs:
        starts: collections.Counter[int] = collections.Counter()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if "previous life" in line:
                previous += 1
                samples.append(f"{path.name}: {line.strip()}")
            if "unreachable" in line:
                unreachable += 1
                samples.append(f"{path.name}: {line.strip()}")
            if m := _STARTED.search(line):
                starts[int(m.group(1))] += 1
        doubles += [(path.name, rid, n) for rid, n in starts.items() if n > 1]
    return {
        "previous_life": previous,
        "unreachable": unreachable,
        "double_starts": doubles,
        "samples": samples[:20],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--researchers", type=int, default=4, help="threads creating tasks")
    ap.add_argument("--workdir", default=None, help="keep the network's folder (logs) here")
    args = ap.parse_args()

    from vantage6nb import demo

    print(f"# node_load: {args.nodes} process-runtime nodes, {args.researchers} researchers")
    print(f"# {machine()}; {load_note()}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="v6nb-load-"))
    times: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    with demo.start(nodes=args.nodes, runtime="process", workdir=workdir) as net:
        orgs = list(net.organizations.values())
        deadline = time.monotonic() + args.seconds

        def researcher(n: int) -> None:
            client = net.client()
            i = 0
            while time.monotonic() < deadline:
                i += 1
                t0 = time.perf_counter()
                try:
                    task = client.task.create(
                        organizations=orgs, image=IMAGE, method="echo", kwargs={"r": n, "i": i}
                    )
                    results = task.results(timeout=300)
                    assert len(results) == len(orgs), results
                except Exception as exc:  # counted and shown, the load goes on
                    with lock:
                        failures.append(f"researcher {n} task {i}: {exc!r}"[:300])
                    continue
                with lock:
                    times.append(time.perf_counter() - t0)

        threads = [
            threading.Thread(target=researcher, args=(n,), daemon=True)
            for n in range(args.researchers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        logs = sorted((workdir / "logs").glob("node-*.log"))
        found = scan_logs(logs)
        runs = len(times) * len(orgs)
    print(
        f"tasks completed: {len(times)} ({runs} runs) in {args.seconds:.0f} s; failed: {len(failures)}"
    )
    if times:
        print(f"task round trip ({len(orgs)} runs each): {summarize_ms(times)}")
    print(f"'previous life' re-runs in node logs: {found['previous_life']}")
    print(f"'unreachable' retries in node logs (server up throughout): {found['unreachable']}")
    print(f"runs started twice by one node: {len(found['double_starts'])}")  # type: ignore[arg-type]
    for line in [*failures[:5], *found["samples"]]:  # type: ignore[misc]
        print(f"  {line}")
    print(f"# logs in {workdir / 'logs'}; {load_note()}")


if __name__ == "__main__":
    main()
