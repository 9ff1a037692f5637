"""Authenticated REST throughput (GET /api/organization) with 1 and 8 clients, and idle RSS.

Run: ``python -m benchmarks.rest [--seconds 5] [--clients 1,8] [--http stdlib,requests]``.
Clients are separate processes (so the load generator does not share the server's GIL), each
issuing sequential requests on one keep-alive connection, as the demo's researcher (a non-admin
user, so the permission filter runs). Two client kinds: a lean ``http.client`` loop (what a load
generator measures: the server's capacity) and ``requests.Session`` (what a Python client sees;
on this machine requests itself costs about 1 ms per call). Idle RSS is read 3 s after start-up,
for the server's whole process tree (gunicorn master + worker) and for each node.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from benchmarks._common import load_note, machine, rss_mb


def _client(url: str, token: str, seconds: float, start: float, kind: str, q: mp.Queue) -> None:
    """Issue sequential keep-alive GETs until ``start + seconds``; put (ok, errors) on ``q``."""
    if kind == "requests":
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"

        def get() -> int:
            return session.get(f"{url}/api/organization").status_code

    else:  # a lean stdlib keep-alive client, as a load generator (wrk, ab) would be
        import http.client

        host, port = url.split("//", 1)[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))
        headers = {"Authorization": f"Bearer {token}"}

        def get() -> int:
            conn.request("GET", "/api/organization", headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status

    get()  # connect before the clock starts
    while time.time() < start:
        time.sleep(0.001)
    n, errors, end = 0, 0, start + seconds
    while time.time() < end:
        if get() == 200:
            n += 1
        else:
            errors += 1
    q.put((n, errors))


def throughput(url: str, token: str, clients: int, seconds: float, kind: str) -> tuple[float, int]:
    """Requests/s (and error count) of ``clients`` client processes for ``seconds``."""
    q: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    procs = [
        mp.Process(target=_client, args=(url, token, seconds, start, kind, q))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / seconds, sum(r[1] for r in results)


def _tree_rss(pid: int) -> tuple[float, list[tuple[int, float]]]:
    """RSS of ``pid`` plus its children (gunicorn: master + worker), and each one's share."""
    parts = [(pid, rss_mb(pid))]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            parts += [(int(c), rss_mb(int(c))) for c in fh.read().split()]
    except OSError:
        pass
    return sum(r for _, r in parts), parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", default="1,8", help="comma-separated client counts")
    ap.add_argument(
        "--http",
        default="stdlib,requests",
        help="comma-separated client kinds: stdlib (http.client), requests (requests.Session)",
    )
    args = ap.parse_args()
    import requests

    from vantage6nb import demo

    print(f"# rest; {machine()}; {load_note()}")
    with demo.start(nodes=3) as net:
        time.sleep(3)  # let start-up settle before reading idle memory
        pids = net.pids()
        server_pid = pids.pop("server")
        assert server_pid is not None
        total, parts = _tree_rss(server_pid)
        detail = ", ".join(f"pid {p}: {r:.1f}" for p, r in parts)
        print(f"server idle RSS: {total:.1f} MB  ({detail})")
        for name, pid in pids.items():
            assert pid is not None
            print(f"node '{name}' idle RSS: {_tree_rss(pid)[0]:.1f} MB")
        token = requests.post(
            f"{net.url}/api/token/user",
            json={
                "username": net.credentials["username"],
                "password": net.credentials["password"],
            },
            timeout=10,
        ).json()["access_token"]
        for kind in args.http.split(","):
            for clients in (int(c) for c in args.clients.split(",")):
                rps, errors = throughput(net.url, token, clients, args.seconds, kind)
                print(
                    f"GET /api/organization, {clients} {kind} client(s): {rps:8.0f} requests/s"
                    f"  ({errors} errors; {load_note()})",
                    flush=True,
                )
        print(f"server RSS after load: {_tree_rss(server_pid)[0]:.1f} MB")
    print(f"# {load_note()}")


if __name__ == "__main__":
    main()
