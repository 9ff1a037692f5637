"""Fan-out: one task to every organization of a demo network of N process-runtime nodes.

Run: ``python -m benchmarks.fanout [--nodes 100] [--runs 5] [--process-warm on|off]``.

A demo network of ``--nodes`` organizations (one process-runtime node each) runs one warm-up task
to all of them (it starts each node's zygote with ``process_warm``), then ``--runs`` times one
task of the trivial ``v6nb/diagnostics`` ``echo`` to all N organizations, timed from just before
``client.task.create`` until all N results are decoded in the client. Where the time goes comes
from the clock of this machine, shared by every process: the client's own steps, and the nodes'
log lines (written at DEBUG, millisecond resolution) for each run:

- ``create``: ``client.task.create`` until it returns (the server stores the task and N runs);
- ``event``: until a node logs the ``new_task`` event (the server's emit, socket.io delivery);
- ``fetch/start``: from the event until the node logs that the algorithm started (reading the
  run, the container token, the ``active`` update);
- ``algorithm``: until the node logs the run's end (the forked child or the fresh interpreter,
  and the output check);
- ``upload``: from the last node's end until the client sees every run final (the PATCH with the
  result, the ``run_status`` events back to the client);
- ``reads``: ``task.results()`` after that (the client's GETs and decoding).

Each node milestone is given for the median node and the slowest one, as an offset from the
start of ``create``. Memory: after the warm-up, each node's resident set with its descendants
(the zygote; no algorithm child is alive then), as RSS and as PSS (shared pages counted once),
and what N nodes of that size would hold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import load_note, machine

IMAGE = "v6nb/diagnostics"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_EVENT = re.compile(r"new_task: (\d+)")
_STARTED = re.compile(r"run (\d+) \(task (\d+), [^)]*\) started on the")
_ENDED = re.compile(r"run (\d+) ended (\w+)")


def _stamp(line: str) -> float | None:
    m = _STAMP.match(line)
    if m is None:
        return None
    return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time


def node_milestones(log: Path, task_id: int) -> dict[str, float]:
    """When one node logged the ``new_task`` event, the start and the end of its run of
    ``task_id`` (epoch seconds; a milestone it did not log is missing)."""
    out: dict[str, float] = {}
    run_id = None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        at = _stamp(line)
        if at is None:
            continue
        if (m := _EVENT.search(line)) and int(m.group(1)) == task_id:
            out.setdefault("event", at)
        elif (m := _STARTED.search(line)) and int(m.group(2)) == task_id:
            run_id = int(m.group(1))
            out.setdefault("started", at)
        elif (m := _ENDED.search(line)) and run_id is not None and int(m.group(1)) == run_id:
            out.setdefault("ended", at)
    return out


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB of one process, from smaps_rollup."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def node_memory_mb(pid: int) -> tuple[float, float, int, float]:
    """RSS and PSS (MiB) of a node with its descendants, how many processes that is, and the
    RSS of the node process alone."""
    procs = _descendants(pid)
    sizes = [_memory_kb(p) for p in procs]
    rss, pss = sum(r for r, _ in sizes) / 1024, sum(p for _, p in sizes) / 1024
    return rss, pss, len(procs), sizes[0][0] / 1024


def server_connections(port: int) -> int:
    """Established TCP connections the server holds on ``port`` (its side of each), from
    /proc/net/tcp: every client on this machine comes from 127.0.0.1, one address."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except OSError:
            continue
    return count


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f}" if values else "       -"


def measure(nodes: int, runs: int, warm: bool, workdir: Path) -> int:
    from vantage6nb import demo
    from vantage6nb.demo import _network

    # N node processes start at once on 2 cores: give them longer than the demo's 90 s
    _network.STARTUP_TIMEOUT_S = max(_network.STARTUP_TIMEOUT_S, 3.0 * nodes)
    settings: dict[str, Any] = {"process_warm": warm, "log_level": "DEBUG"}
    t_start = time.perf_counter()
    with demo.start(nodes=nodes, runtime="process", workdir=workdir, node_settings=settings) as net:
        print(f"# {nodes} nodes online in {time.perf_counter() - t_start:.1f} s")
        orgs = list(net.organizations.values())
        client = net.client()
        t0 = time.perf_counter()
        warmup = client.task.create(organizations=orgs, image=IMAGE, method="echo", kwargs={})
        assert len(warmup.results(timeout=600)) == nodes
        print(f"# warm-up task: all {nodes} results in {time.perf_counter() - t0:.2f} s")

        pids = {name: pid for name, pid in net.pids().items() if name != "server" and pid}
        mem = [node_memory_mb(pid) for pid in pids.values()]
        rss = [m[0] for m in mem]
        pss = [m[1] for m in mem]
        server = net.pids()["server"] or 0
        server_rss = sum(_memory_kb(p)[0] for p in _descendants(server)) / 1024 if server else 0.0
        print(
            f"memory per node (node + zygote, {statistics.median([m[2] for m in mem]):.0f} "
            f"processes): RSS median {statistics.median(rss):.1f} MiB (max {max(rss):.1f}), "
            f"PSS median {statistics.median(pss):.1f} MiB; the node process alone RSS "
            f"{statistics.median([m[3] for m in mem]):.1f} MiB"
        )
        print(
            f"  {nodes} nodes hold RSS {sum(rss):.0f} MiB, PSS {sum(pss):.0f} MiB; at that size "
            f"100 nodes hold PSS {statistics.median(pss) * 100 / 1024:.1f} GiB "
            f"(RSS {statistics.median(rss) * 100 / 1024:.1f} GiB); the server (SQLite, master "
            f"+ worker) RSS {server_rss:.0f} MiB"
        )

        port = int(net.url.rsplit(":", 1)[1].split("/")[0])
        held = server_connections(port)
        print(
            f"connections to the server after the warm-up: {held} ({held / nodes:.1f} per node, "
            f"all from 127.0.0.1, which the demo server does not bound)"
        )
        node_logs = sorted((net.workdir / "logs").glob("node-*.log"))
        assert len(node_logs) == nodes, f"expected {nodes} node logs in {net.workdir / 'logs'}"
        # the client's own requests, timed (a wrapper around its transport; nothing else changes)
        transport = client._transport
        calls: list[tuple[str, str, float, float]] = []
        send = transport.request

        def timed(method: str, path: str, **kw: Any) -> Any:
            begin = time.time()
            try:
                return send(method, path, **kw)
            finally:
                calls.append((method, path, begin, time.time()))

        transport.request = timed
        rows: dict[str, list[float]] = {}
        requests_made: dict[str, list[int]] = {}
        totals: list[float] = []
        lost = 0
        for rep in range(runs):
            calls.clear()
            t_a = time.time()
            task = client.task.create(
                organizations=orgs, image=IMAGE, method="echo", kwargs={"rep": rep}
            )
            t_b = time.time()
            task.wait(timeout=600)
            t_c = time.time()
            results = task.results(timeout=600)
            t_d = time.time()
            lost += nodes - sum(r is not None for r in results)
            totals.append(t_d - t_a)
            time.sleep(0.5)  # the last log lines reach the files
            ms = [node_milestones(p, task.id) for p in node_logs]
            ev = sorted(m["event"] - t_a for m in ms if "event" in m)
            st = sorted(m["started"] - t_a for m in ms if "started" in m)
            en = sorted(m["ended"] - t_a for m in ms if "ended" in m)
            fetch = [m["started"] - m["event"] for m in ms if {"event", "started"} <= m.keys()]
            algo = [m["ended"] - m["started"] for m in ms if {"started", "ended"} <= m.keys()]
            post = [x for x in calls if x[0] == "POST" and x[1] == "/task"]
            post_at = post[0][2] if post else t_b
            counts = {
                "checks": sum(1 for x in calls if x[2] < post_at),
                "wait": sum(1 for x in calls if t_b <= x[2] < t_c),
                "reads": sum(1 for x in calls if x[2] >= t_c),
            }
            for name, n in counts.items():
                requests_made.setdefault(name, []).append(n)
            nan = float("nan")
            for key, value in (
                ("total", t_d - t_a),
                ("create", t_b - t_a),
                ("  client checks before the POST", post_at - t_a),
                ("  POST /task", (post[0][3] - post[0][2]) if post else nan),
                ("  client after the POST", (t_b - post[0][3]) if post else nan),
                ("event, median node", statistics.median(ev) if ev else nan),
                ("event, slowest node", ev[-1] if ev else nan),
                ("started, median node", statistics.median(st) if st else nan),
                ("started, slowest node", st[-1] if st else nan),
                ("ended, median node", statistics.median(en) if en else nan),
                ("ended, slowest node", en[-1] if en else nan),
                ("all final in the client", t_c - t_a),
                ("fetch/start per node, median", statistics.median(fetch) if fetch else nan),
                ("algorithm per node, median", statistics.median(algo) if algo else nan),
                ("upload: last end -> all final", (t_c - t_a) - (en[-1] if en else 0.0)),
                ("reads: results() after wait()", t_d - t_c),
            ):
                rows.setdefault(key, []).append(value)
            print(f"  run {rep + 1}: all {nodes} results in {(t_d - t_a) * 1000:.1f} ms")
        print(f"\none task to {nodes} nodes, median of {runs} (ms; node milestones from create):")
        for key, values in rows.items():
            print(f"  {key:34s} {_ms(values)}")
        made = ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in requests_made.items())
        print(f"  the client's REST requests (median): {made}")
        print(f"fan-out, create -> all {nodes} results: median {statistics.median(totals):.3f} s")
        print(f"results missing: {lost}")
        return lost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5, help="timed tasks after the warm-up")
    ap.add_argument(
        "--process-warm",
        choices=["on", "off"],
        default="on",
        help="fork each run from a warm zygote (process_warm), or start a fresh interpreter",
    )
    ap.add_argument("--workdir", default=None, help="keep the network's folder (logs) here")
    args = ap.parse_args()
    print(
        f"# fanout: {args.nodes} process-runtime nodes, process_warm {args.process_warm}, "
        f"{args.runs} timed tasks"
    )
    print(f"# {machine()}; {load_note()}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="v6nb-fanout-"))
    lost = measure(args.nodes, args.runs, args.process_warm == "on", workdir / "net")
    print(f"# logs in {workdir / 'net' / 'logs'}; {load_note()}")
    raise SystemExit(1 if lost else 0)


if __name__ == "__main__":
    main()
