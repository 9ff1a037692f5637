"""Authenticated REST throughput (GET /api/organization) with 1 and 8 clients, and idle RSS.

Run: ``python -m benchmarks.rest [--seconds 5]``. Clients are separate processes (so the load
generator does not share the server's GIL) each with a keep-alive ``requests.Session``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from benchmarks._common import machine, rss_mb


def _client(url: str, token: str, seconds: float, start: float, q: mp.Queue) -> None:
    import requests

    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    while time.time() < start:
        time.sleep(0.001)
    n, errors, end = 0, 0, start + seconds
    while time.time() < end:
        r = s.get(f"{url}/api/organization")
        if r.status_code == 200:
            n += 1
        else:
            errors += 1
    q.put((n, errors))


def throughput(url: str, token: str, clients: int, seconds: float) -> tuple[float, int]:
    q: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    procs = [mp.Process(target=_client, args=(url, token, seconds, start, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / seconds, sum(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    import requests

    from vantage6nb import demo

    print(f"# rest, {machine()}")
    with demo.start(nodes=3) as net:
        time.sleep(3)  # let start-up settle before reading idle memory
        print(f"server idle RSS: {rss_mb(net.server_pid):.1f} MB")
        for name, pid in net.node_pids.items():
            print(f"node '{name}' idle RSS: {rss_mb(pid):.1f} MB")
        user, password = net.credentials
        token = requests.post(f"{net.url}/api/token/user",
                              json={"username": user, "password": password}).json()["access_token"]
        for clients in (1, 8):
            rps, errors = throughput(net.url, token, clients, args.seconds)
            print(f"GET /api/organization, {clients} client(s): {rps:8.0f} requests/s  ({errors} errors)")
        print(f"server RSS after load: {rss_mb(net.server_pid):.1f} MB")


if __name__ == "__main__":
    main()
