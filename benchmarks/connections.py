"""Connections one instance holds: health p99 and task round trip idle, with 1,000 socket.io clients
(from separate processes), and with 500 half-open connections; and how fast a stopped node is
offline. Loopback only; every loop is bounded in count and time.

    python -m benchmarks.connections [--clients 1000] [--half-open 500] [--worker-class gevent]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import load_note, machine, percentile, rss_mb

ROOT_PW = "bench-connections-pw"
CTX = mp.get_context("spawn")  # clients patch gevent before importing anything else


def _hold_clients(url: str, tokens: list[str], seconds: float, q: Any) -> None:
    """A process holding one socket.io connection per token for ``seconds`` (gevent: greenlets)."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import socketio

    clients: list[Any] = []

    def one(token: str) -> None:
        c = socketio.Client(reconnection=False)
        try:
            c.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=60)
            clients.append(c)
        except Exception:  # counted as not connected
            pass

    jobs = [gevent.spawn(one, t) for t in tokens]
    gevent.joinall(jobs, timeout=min(seconds, 120))
    q.send(len(clients))
    gevent.sleep(seconds)
    live = sum(1 for c in clients if c.connected)
    q.send(live)
    for c in clients:
        try:
            c.disconnect()
        except Exception:
            pass


def _half_open(port: int, count: int, seconds: float, q: Any) -> None:
    """Keep ``count`` connections that sent half a request head open for ``seconds``: one that the
    server closes (header_timeout_s) is opened again, as a slowloris client would."""
    import selectors

    sel = selectors.DefaultSelector()
    opened = closed = 0

    def open_one() -> None:
        nonlocal opened
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        opened += 1

    for _ in range(count):
        open_one()
    q.send(opened)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()  # type: ignore[union-attr]
                closed += 1
                open_one()
    q.send((opened, closed))


def _recv(conn: Any, timeout: float) -> Any:
    """What a client process sent (a pipe: multiprocessing queues do not work under gevent)."""
    if not conn.poll(timeout):
        raise TimeoutError(f"a client process sent nothing within {timeout:.0f} s")
    return conn.recv()


def _health(url: str, n: int) -> list[float]:
    import requests

    s = requests.Session()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = s.get(url + "/api/health", timeout=30)
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        time.sleep(0.02)
    return out


def _round_trips(client: Any, collab: int, orgs: list[int], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        task = client.task.create(
            collaboration=collab,
            organizations=orgs,
            image="test/probe",
            method="echo",
            kwargs={"x": 1},
            databases=[],
        )
        task.results(timeout=120)
        out.append(time.perf_counter() - t)
    return out


def _fmt(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (
        f"median {percentile(ms, 0.5):7.1f} ms  p99 {percentile(ms, 0.99):7.1f} ms  "
        f"max {ms[-1]:7.1f} ms  (n={len(ms)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=100, help="how many of the clients are nodes")
    ap.add_argument("--processes", type=int, default=4, help="client processes")
    ap.add_argument("--half-open", type=int, default=500)
    ap.add_argument(
        "--researchers-as-root",
        action="store_true",
        help="connect every researcher as root: all of them get every event of the measured task",
    )
    ap.add_argument("--worker-class", default="gevent")
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--hold-s", type=float, default=60.0)
    ap.add_argument("--health-n", type=int, default=300)
    ap.add_argument("--tasks-n", type=int, default=10)
    args = ap.parse_args()

    import vantage6nb as v6
    from tests.node.harness import probe_node
    from tests.support import ServerProcess, wait_for

    print(f"# connections; {machine()}; {load_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="v6nb-bench-conn-"))
    srv = ServerProcess(
        tmp,
        {
            "root_password": ROOT_PW,
            "worker_class": args.worker_class,
            "threads": args.threads,
            "max_connections_per_address": 0,
            "log_level": "WARNING",
        },
    )
    node_procs: list[Any] = []
    with srv:
        root = srv.login("root", ROOT_PW)
        org = srv.ok("POST", "/api/organization", root, json={"name": "bench"})["id"]
        collab = srv.ok(
            "POST",
            "/api/collaboration",
            root,
            json={"name": "bench", "organization_ids": [org], "encrypted": False},
        )["id"]
        real = srv.ok(
            "POST", "/api/node", root, json={"organization_id": org, "collaboration_id": collab}
        )
        node = probe_node(tmp, "real-node", srv.url, real["api_key"], log_level="WARNING")
        node.start()
        node_procs.append(node)
        # more collaborations for the socket-only nodes (one node per org and collaboration)
        node_tokens = []
        for i in range(args.nodes):
            c = srv.ok(
                "POST",
                "/api/collaboration",
                root,
                json={"name": f"bench-{i}", "organization_ids": [org], "encrypted": False},
            )["id"]
            key = srv.ok(
                "POST", "/api/node", root, json={"organization_id": org, "collaboration_id": c}
            )["api_key"]
            node_tokens.append(
                srv.ok("POST", "/api/token/node", json={"api_key": key})["access_token"]
            )
        # researchers of other organizations, each in a collaboration of their own (the default),
        # or all as root, who is in every room and gets every event (--researchers-as-root)
        researcher_tokens = []
        for i in range(0 if args.researchers_as_root else 10):
            o = srv.ok("POST", "/api/organization", root, json={"name": f"r-{i}"})["id"]
            srv.ok(
                "POST",
                "/api/collaboration",
                root,
                json={"name": f"r-{i}", "organization_ids": [o], "encrypted": False},
            )
            pw = f"researcher-{i}-password"
            srv.ok(
                "POST",
                "/api/user",
                root,
                json={"username": f"r{i}", "password": pw, "organization_id": o},
            )
            researcher_tokens.append(srv.login(f"r{i}", pw))
        client = v6.Client(srv.url, state_dir=False).login("root", ROOT_PW)
        orgs = [org]
        pid = int(srv.proc.pid)  # type: ignore[union-attr]
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

        def report(label: str) -> None:
            health = _health(srv.url, args.health_n)
            trips = _round_trips(client, collab, orgs, args.tasks_n)
            rss = rss_mb(pid) + sum(rss_mb(k) for k in kids)
            print(f"{label}: health {_fmt(health)}", flush=True)
            print(f"{label}: task round trip {_fmt(trips)}; server RSS {rss:.0f} MB", flush=True)

        _round_trips(client, collab, orgs, 2)  # warm
        report("idle")

        if args.clients:
            others = researcher_tokens or [root]
            tokens = node_tokens[: args.nodes] + [
                others[i % len(others)] for i in range(args.clients - args.nodes)
            ]
            per = [tokens[i :: args.processes] for i in range(args.processes)]
            pipes = [CTX.Pipe(duplex=False) for _ in per]
            procs = [
                CTX.Process(target=_hold_clients, args=(srv.url, p, args.hold_s, w))
                for p, (_, w) in zip(per, pipes, strict=True)
            ]
            t0 = time.monotonic()
            for p in procs:
                p.start()
            connected = sum(_recv(r, 300) for r, _ in pipes)
            who = "root" if args.researchers_as_root else "10 users of other organizations"
            print(
                f"{args.clients} clients ({args.nodes} nodes, researchers: {who}) from {args.processes} processes: "
                f"{connected} connected in {time.monotonic() - t0:.1f} s",
                flush=True,
            )
            report(f"with {connected} socket.io clients")
            live = sum(_recv(r, args.hold_s + 120) for r, _ in pipes)
            print(f"still connected at the end: {live}", flush=True)
            for p in procs:
                p.join(60)

        if args.half_open:
            r2, w2 = CTX.Pipe(duplex=False)
            p = CTX.Process(target=_half_open, args=(srv.port, args.half_open, args.hold_s, w2))
            p.start()
            print(f"half-open connections opened: {_recv(r2, 120)}", flush=True)
            report(f"with {args.half_open} half-open connections")
            opened, closed = _recv(r2, args.hold_s + 60)
            print(
                f"half-open: {opened} opened, {closed} closed by the server (header_timeout_s)",
                flush=True,
            )
            p.join(30)

        # liveness: how long until a stopped node is offline
        nid = real["id"]
        assert node.proc is not None
        t = time.monotonic()
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            wait_for(
                lambda: srv.ok("GET", f"/api/node/{nid}", root)["status"] == "offline",
                60,
                "the stopped node to be offline",
                interval=0.1,
            )
            print(f"stopped node offline after {time.monotonic() - t:.1f} s (node_offline_s 10)")
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        for n in node_procs:
            n.stop()
    print(f"# {load_note()}")


if __name__ == "__main__":
    main()
