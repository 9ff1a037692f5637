"""Task round trip (create -> all results) on 1 and 3 nodes, and how much of it the platform adds.

Run: ``python -m benchmarks.roundtrip [--runs 30] [--runtime process|docker]``.
The platform's share is the round trip minus the algorithm's own process time, measured by running
the same process (or ``docker run`` of the same image) bare, outside the platform.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time

from benchmarks._common import bare_python_run, machine, percentile, summarize_ms

IMAGE = "v6nb/diagnostics"
MODULE = "vantage6nb.algorithms.diagnostics"


def bare_docker_run(image: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", image,
                    "-c", "pass"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(nodes: int, runs: int, runtime: str) -> tuple[list[float], list[float]]:
    from vantage6nb import demo

    with demo.start(nodes=nodes, runtime=runtime) as net:
        client = net.client()
        orgs = client.organizations()["id"].tolist()[:nodes]
        # warm up: socket.io connection, node caches, image pulls
        for _ in range(3):
            client.task.create(organizations=orgs, image=IMAGE, method="echo", kwargs={"x": 1}).wait(timeout=120)
        times = []
        for i in range(runs):
            t0 = time.perf_counter()
            client.task.create(organizations=orgs, image=IMAGE, method="echo", kwargs={"i": i}).wait(timeout=120)
            times.append(time.perf_counter() - t0)
        image = net.image(IMAGE) if hasattr(net, "image") else IMAGE
    with tempfile.TemporaryDirectory() as tmp:
        if runtime == "docker":
            bare = [bare_docker_run(image) for _ in range(max(5, runs // 3))]
        else:
            bare = [bare_python_run(MODULE, "echo", {"x": 1}, tmp) for _ in range(max(5, runs // 3))]
    return times, bare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--runtime", default="process", choices=["process", "docker"])
    args = ap.parse_args()
    print(f"# roundtrip, {args.runtime} runtime, trivial algorithm ({IMAGE} echo); {machine()}")
    for nodes in (1, 3):
        times, bare = measure(nodes, args.runs, args.runtime)
        outside = statistics.median(times) - statistics.median(bare)
        print(f"{nodes} node(s): round trip {summarize_ms(times)}")
        print(f"           bare {'docker run' if args.runtime == 'docker' else 'algorithm process'}: {summarize_ms(bare)}")
        print(f"           platform adds (median round trip - median bare): {outside * 1000:.1f} ms;"
              f" p95 round trip - median bare: {(percentile(times, 0.95) - statistics.median(bare)) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
