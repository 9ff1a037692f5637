"""Authenticated GET throughput through HAProxy over N instances sharing PostgreSQL and RabbitMQ,
against one instance directly; and each instance's idle RSS. Loopback only; bounded in time.

    python -m benchmarks.balanced_rest [--instances 2] [--clients 1,8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from benchmarks._common import load_note, machine, rss_mb
from benchmarks.rest import throughput

ROOT_PW = "bench-balanced-pw"


def _tree_rss(pid: int) -> float:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return rss_mb(pid) + sum(rss_mb(int(k)) for k in kids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--worker-class", default="gevent")
    args = ap.parse_args()
    import requests

    from tests.support import (
        AMQP_URL,
        PG_URL,
        ServerProcess,
        free_port,
        fresh_database,
        wait_for,
    )
    from tests.support.processes import REPO

    haproxy = shutil.which("haproxy")
    if haproxy is None:
        sys.exit("haproxy is not installed: sudo bash scripts/setup-haproxy.sh")
    print(f"# balanced_rest; {machine()}; {load_note()}")
    tmp = Path(tempfile.mkdtemp(prefix="v6nb-bench-lb-"))
    with fresh_database(PG_URL) as url:
        shared = {
            "database_url": url,
            "root_password": ROOT_PW,
            "message_queue_url": AMQP_URL,
            "message_queue_channel": f"v6nb-bench-{uuid.uuid4().hex[:8]}",
            "secret_key": uuid.uuid4().hex,
            "worker_class": args.worker_class,
            "max_connections_per_address": 0,
            "log_level": "WARNING",
        }
        servers = [ServerProcess(tmp, shared, name=f"i{i}") for i in range(args.instances)]
        lb_port = free_port()
        cfg = subprocess.run(
            [
                sys.executable,
                "-m",
                "server_app",
                "haproxy-config",
                "--bind",
                f"127.0.0.1:{lb_port}",
                "--max-per-address",
                "0",
                *[f"127.0.0.1:{s.port}" for s in servers],
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (tmp / "haproxy.cfg").write_text(cfg)
        lb = None
        try:
            threads = [threading.Thread(target=s.start) for s in servers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            lb = subprocess.Popen(
                [haproxy, "-f", str(tmp / "haproxy.cfg"), "-db"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            lb_url = f"http://127.0.0.1:{lb_port}"

            def up() -> bool:
                try:
                    return requests.get(lb_url + "/api/health", timeout=5).status_code == 200
                except requests.RequestException:
                    return False

            wait_for(up, 60, "the balancer to pass a health check")
            time.sleep(3)
            for s in servers:
                assert s.proc is not None
                print(
                    f"instance {s.name} idle RSS: {_tree_rss(s.proc.pid):.1f} MB (master + worker)"
                )
            token = servers[0].login("root", ROOT_PW)
            for clients in (int(c) for c in args.clients.split(",")):
                for label, target in (
                    ("one instance, direct", servers[0].url),
                    ("balancer", lb_url),
                ):
                    rps, errors = throughput(target, token, clients, args.seconds, "stdlib")
                    print(
                        f"GET /api/organization, {clients} client(s), {label}: {rps:8.0f} req/s "
                        f"({errors} errors; {load_note()})",
                        flush=True,
                    )
        finally:
            if lb is not None:
                lb.terminate()
                lb.wait(10)
            for s in servers:
                s.stop()
    print(f"# {load_note()}")


if __name__ == "__main__":
    main()
