"""Many process-runtime nodes under a steady stream of tasks: is every task completed, is any
lost, does any run execute twice, does any healthy request fail?

Run: ``python -m benchmarks.node_load [--nodes 20] [--seconds 180] [--researchers 4]``; the
soak of issue 13 is ``--nodes 100 --researchers 10 --seconds 600``.

A demo network of ``--nodes`` organizations (one process-runtime node each, the default 30 s
re-sync) gets tasks to every organization from ``--researchers`` threads (one client each), each
creating an ``echo`` task, waiting for its results and checking that every organization's result
is its own task's, for ``--seconds`` seconds. Then tasks still open get ``--drain`` seconds to
finish, and the counts are taken:

- from the client: tasks created, completed (every result in and right), failed (a run ended
  without a result: ``TaskFailed``), create calls that raised (the task may exist all the same);
- from the server's database: every task of the run and its runs; a task with a run that is not
  final after the drain is **lost**, as is a task the client created that the database lacks;
- from the node logs: ``previous life`` (a node starting a run again that it had started in this
  life), ``unreachable`` (a request that failed with a transport error while the server was up:
  spurious), and every ``run N (task ...) started`` line, so a run started twice shows.

Exit status 1 when a task was lost, failed or wrong, or a run started twice; else 0.

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
from typing import Any

from benchmarks._common import load_note, machine, summarize_ms
from vantage6nb.common.schemas import FINAL_VALUES

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


def server_counts(db_url: str, task_ids: set[int]) -> dict[str, Any]:
    """What the server's database holds: its tasks, runs by status, tasks with a run still open,
    and which of ``task_ids`` it lacks."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                sa.text("SELECT task_id, status, COUNT(*) FROM run GROUP BY task_id, status")
            ).all()
            tasks = {int(r[0]) for r in conn.execute(sa.text("SELECT id FROM task")).all()}
    finally:
        engine.dispose()
    by_status: collections.Counter[str] = collections.Counter()
    open_tasks: set[int] = set()
    for task_id, status, count in runs:
        by_status[str(status)] += int(count)
        if str(status) not in FINAL_VALUES:
            open_tasks.add(int(task_id))
    return {
        "tasks": tasks,
        "runs_by_status": dict(by_status),
        "open_tasks": open_tasks,
        "missing": task_ids - tasks,
    }


class Tally:
    """The client's counts, shared by the researcher threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: dict[int, tuple[Any, dict[str, Any]]] = {}  # id -> (Task, its kwargs)
        self.completed: set[int] = set()
        self.failed: dict[int, str] = {}
        self.wrong: dict[int, str] = {}
        self.late: set[int] = set()  # not final within --task-timeout: waited for in the drain
        self.create_errors: list[str] = []
        self.times: list[float] = []

    def settle(self, task: Any, kwargs: dict[str, Any], orgs: int, timeout: float) -> bool:
        """Wait for ``task`` and file it as completed, failed or wrong; False when it is late."""
        from vantage6nb.errors import TaskFailed, TaskTimeout

        try:
            results = task.results(timeout=timeout)
        except TaskTimeout:
            return False
        except TaskFailed as exc:
            with self.lock:
                self.failed[task.id] = str(exc).splitlines()[0][:300]
            return True
        bad = [r for r in results if not isinstance(r, dict) or r.get("kwargs") != kwargs]
        with self.lock:
            if len(results) != orgs or bad:
                self.wrong[task.id] = f"{len(results)} results, {len(bad)} not its own"
            else:
                self.completed.add(task.id)
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--researchers", type=int, default=4, help="threads creating tasks")
    ap.add_argument(
        "--task-timeout", type=float, default=300.0, help="a researcher's wait for one task"
    )
    ap.add_argument(
        "--drain", type=float, default=300.0, help="seconds open tasks get after the load"
    )
    ap.add_argument(
        "--process-warm",
        choices=["on", "off"],
        default="on",
        help="nodes fork runs from a warm zygote (about 100 MiB more per node), or not",
    )
    ap.add_argument("--workdir", default=None, help="keep the network's folder (logs) here")
    args = ap.parse_args()

    from vantage6nb import demo
    from vantage6nb.demo import _network

    # 100 node processes start at once on 2 cores: give them longer than the demo's 90 s
    _network.STARTUP_TIMEOUT_S = max(_network.STARTUP_TIMEOUT_S, 3.0 * args.nodes)

    print(
        f"# node_load: {args.nodes} process-runtime nodes (process_warm {args.process_warm}), "
        f"{args.researchers} researchers"
    )
    print(f"# {machine()}; {load_note()}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="v6nb-load-"))
    tally = Tally()
    settings = {"process_warm": args.process_warm == "on"}
    with demo.start(
        nodes=args.nodes, runtime="process", workdir=workdir / "net", node_settings=settings
    ) as net:
        orgs = list(net.organizations.values())
        clients = [net.client() for _ in range(args.researchers)]
        print(f"# {args.nodes} nodes online; load for {args.seconds:.0f} s")
        deadline = time.monotonic() + args.seconds

        def researcher(n: int) -> None:
            client = clients[n]
            i = 0
            while time.monotonic() < deadline:
                i += 1
                kwargs = {"r": n, "i": i}
                t0 = time.perf_counter()
                try:
                    task = client.task.create(
                        organizations=orgs, image=IMAGE, method="echo", kwargs=kwargs
                    )
                except Exception as exc:  # counted and shown, the load goes on
                    with tally.lock:
                        tally.create_errors.append(f"researcher {n} task {i}: {exc!r}"[:300])
                    time.sleep(1.0)
                    continue
                with tally.lock:
                    tally.created[task.id] = (task, kwargs)
                if tally.settle(task, kwargs, len(orgs), args.task_timeout):
                    with tally.lock:
                        tally.times.append(time.perf_counter() - t0)
                else:
                    with tally.lock:
                        tally.late.add(task.id)

        threads = [
            threading.Thread(target=researcher, args=(n,), daemon=True)
            for n in range(args.researchers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # the drain: tasks that were not final within a researcher's wait get --drain seconds
        drain_end = time.monotonic() + args.drain
        for tid in sorted(tally.late):
            task, kwargs = tally.created[tid]
            left = max(1.0, drain_end - time.monotonic())
            tally.settle(task, kwargs, len(orgs), left)
        found = scan_logs(sorted((workdir / "net" / "logs").glob("node-*.log")))
        server = server_counts(net.server_db_url, set(tally.created))

    created = len(tally.created)
    settled = tally.completed | set(tally.failed) | set(tally.wrong)
    lost = sorted((set(tally.created) - settled) | server["open_tasks"] | server["missing"])
    doubles: list[Any] = found["double_starts"]  # type: ignore[assignment]
    print(f"tasks created: {created} ({created * len(orgs)} runs) in {args.seconds:.0f} s")
    print(f"tasks completed (every result in, each its own): {len(tally.completed)}")
    print(f"tasks failed (a run ended without a result): {len(tally.failed)}")
    print(f"tasks with a wrong or missing result: {len(tally.wrong)}")
    print(f"tasks lost (a run not final after the drain, or not on the server): {len(lost)}")
    print(f"tasks not final within --task-timeout (waited for in the drain): {len(tally.late)}")
    print(f"create calls that raised: {len(tally.create_errors)}")
    unseen = server["tasks"] - set(tally.created)  # a create that raised yet was stored
    print(f"tasks on the server the client did not get back (counted above if open): {len(unseen)}")
    print(f"runs on the server by status: {server['runs_by_status']}")
    if tally.times:
        print(f"task round trip ({len(orgs)} runs each): {summarize_ms(tally.times)}")
    print(f"runs started twice by one node: {len(doubles)}")
    print(f"'previous life' re-runs in node logs: {found['previous_life']}")
    print(f"'unreachable' retries in node logs (server up throughout): {found['unreachable']}")
    details = [
        *tally.create_errors[:5],
        *[f"task {k} failed: {v}" for k, v in list(tally.failed.items())[:5]],
        *[f"task {k} wrong: {v}" for k, v in list(tally.wrong.items())[:5]],
        *[f"task {k} lost" for k in lost[:10]],
        *[f"{name}: run {rid} started {n} times" for name, rid, n in doubles[:10]],
        *found["samples"],  # type: ignore[misc]
    ]
    for line in details:
        print(f"  {line}")
    print(f"# logs in {workdir / 'net' / 'logs'}; {load_note()}")
    bad = bool(lost or tally.failed or tally.wrong or doubles)
    print("RESULT: " + ("FAILED (see the counts above)" if bad else "ok: every task completed"))
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
