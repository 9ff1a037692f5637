"""Task round trip (create -> all results) on 1 and 3 nodes, and how much of it the platform adds.

Run: ``python -m benchmarks.roundtrip [--runs 30] [--nodes 1,3] [--runtime process|docker]``.

One round trip is ``client.task.create(...)`` + ``task.results()`` (which waits, woken by socket.io
``run_status`` events, then fetches and decodes every result) of the trivial ``v6nb/diagnostics``
``echo`` method. The platform's share is the round trip minus the algorithm's own process time,
measured by running the same algorithm process (or ``docker run`` of the same image) bare, outside
the platform, the way the runtime starts it, right after each round trip (so both see the same
machine load). With 3 nodes the three algorithm processes run in parallel on 2 cores, so the bare
figure for 3 nodes is three bare processes started together.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks._common import bare_python_run, load_note, machine, summarize_ms

IMAGE = "v6nb/diagnostics"
MODULE = "vantage6nb.algorithms.diagnostics"
WARMUP = 3


def bare_docker_run(image: str, workdir: str) -> float:
    """Wall time of ``docker run`` of ``image`` running the same trivial method (``echo``), the
    engine's own cost: the image's entrypoint (the algorithm wrapper), input and output mounted,
    no network, read-only root, non-root, output checked."""
    import json
    import os

    from vantage6nb.common import contract

    os.chmod(workdir, 0o777)  # the image's non-root user writes its output here
    inp, out = os.path.join(workdir, "input.json"), os.path.join(workdir, "output.json")
    with open(inp, "w") as fh:
        json.dump(contract.make_input("echo", kwargs={"x": 1}), fh)
    open(os.path.join(workdir, "token"), "w").close()
    if os.path.exists(out):
        os.unlink(out)
    env = contract.build_environment(
        input_file="/v6nb/input.json",
        output_file="/v6nb/output.json",
        token_file="/v6nb/token",
        temporary_folder="/tmp",
        host="http://127.0.0.1",
        port=1,
        api_path="",
        databases={},
    )
    _wait_engine_settled()
    cmd = ["docker", "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp"]
    cmd += ["-v", f"{workdir}:/v6nb"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    t0 = time.perf_counter()
    subprocess.run(
        [*cmd, image],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - t0
    if not os.path.exists(out):
        raise RuntimeError(f"bare docker run of {image} wrote no output")
    return elapsed


def _wait_engine_settled(timeout: float = 5.0) -> None:
    """Wait until the nodes have removed their finished runs' containers in the background (only
    spare relays left), so that work does not slow the bare run down (it would flatter the platform)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                "label=v6nb.node",
                "--format",
                '{{.Label "v6nb.run"}}',
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if all(r == "spare" for r in runs):
            return
        time.sleep(0.02)


def bare_run(parallel: int, runtime: str, pool: ThreadPoolExecutor, tmp: Path) -> float:
    """Wall time of ``parallel`` bare algorithm processes started together (as the nodes do)."""
    dirs = [tmp / str(i) for i in range(parallel)]
    for d in dirs:
        d.mkdir(exist_ok=True)

    def one(d: Path) -> float:
        if runtime == "docker":
            return bare_docker_run(IMAGE, str(d))
        return bare_python_run(MODULE, "echo", {"x": 1}, str(d))

    t0 = time.perf_counter()
    list(pool.map(one, dirs))
    return time.perf_counter() - t0


def measure(
    nodes: int, runs: int, runtime: str, warm: bool = True
) -> tuple[list[float], list[float]]:
    """Round-trip times of ``runs`` echo tasks sent to ``nodes`` organizations, each followed by a
    bare run of ``nodes`` algorithm processes, so both see the same machine load."""
    from vantage6nb import demo

    with (
        demo.start(nodes=nodes, runtime=runtime, node_settings={"process_warm": warm}) as net,
        tempfile.TemporaryDirectory() as tmp,
        ThreadPoolExecutor(nodes) as pool,
    ):
        client = net.client()
        orgs = list(net.organizations.values())[:nodes]

        def once(i: int) -> None:
            task = client.task.create(
                organizations=orgs, image=IMAGE, method="echo", kwargs={"i": i}
            )
            results = task.results(timeout=120)
            assert len(results) == nodes and all(r["kwargs"] == {"i": i} for r in results), results

        for i in range(WARMUP):  # socket.io connection, caches, first imports
            once(-1 - i)
            bare_run(nodes, runtime, pool, Path(tmp))
        times, bare = [], []
        for i in range(runs):
            t0 = time.perf_counter()
            once(i)
            times.append(time.perf_counter() - t0)
            bare.append(bare_run(nodes, runtime, pool, Path(tmp)))
    return times, bare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--nodes", default="1,3", help="comma-separated node counts")
    ap.add_argument("--runtime", default="process", choices=["process", "docker"])
    ap.add_argument(
        "--process-warm",
        default="on",
        choices=["on", "off"],
        help="process runtime: fork each run from a warm zygote (process_warm), or not",
    )
    args = ap.parse_args()
    print(
        f"# roundtrip, {args.runtime} runtime (process_warm {args.process_warm}), trivial "
        f"algorithm ({IMAGE} echo)"
    )
    print(f"# {machine()}; {load_note()}")
    for nodes in (int(n) for n in args.nodes.split(",")):
        times, bare = measure(nodes, args.runs, args.runtime, args.process_warm == "on")
        paired = [t - b for t, b in zip(times, bare, strict=True)]
        what = "docker run" if args.runtime == "docker" else "algorithm process"
        print(f"{nodes} node(s): round trip {summarize_ms(times)}")
        print(f"           bare {what} x{nodes} in parallel: {summarize_ms(bare)}")
        print(
            f"           outside the algorithm (round trip - bare, paired): {summarize_ms(paired)};"
            f" median - median: {(statistics.median(times) - statistics.median(bare)) * 1e3:.1f} ms"
            f"  ({load_note()})",
            flush=True,
        )
    print(f"# {load_note()}")


if __name__ == "__main__":
    main()
