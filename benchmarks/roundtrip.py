"""Task round trip (create -> all results) on 1 and 3 nodes, and how much of it the platform adds.

Run: ``python -m benchmarks.roundtrip [--runs 30] [--nodes 1,3] [--runtime process|docker|podman]
[--work trivial|pandas]``.

One round trip is ``client.task.create(...)`` + ``task.results()`` (which waits, woken by socket.io
``run_status`` events, then fetches and decodes every result) of a ``v6nb/diagnostics`` method:
``--work trivial`` (the default) its ``echo``; ``--work pandas`` its ``shape``, a pandas ``@data``
partial that loads the node's database (1,000 rows of CSV) into a DataFrame. The platform's share
is the round trip minus the algorithm's own process time, measured by running the same algorithm
process (or ``docker run``/``podman run`` of the same image, same work, same data mounted) bare,
outside the platform, the way the runtime starts it, right after each round trip (so both see the
same machine load). With 3 nodes the three algorithm processes run in parallel on 2 cores, so the
bare figure for 3 nodes is three bare processes started together.

With Docker or Podman it then says where the time goes: the same work run by the runtime itself
in this process (warm spares on, as a node runs them), phase by phase: ``start`` (a warm run: take
its waiting sandbox and hand the run over; a cold one: create and start the containers),
``algorithm`` (handoff to exit), ``output`` (exit state, log and output copied out); the rest of
the round trip (token, status reports, encryption, upload, the client's fetch) is the round trip
minus the runtime's whole run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import bare_python_run, load_note, machine, summarize_ms

IMAGE = "v6nb/diagnostics"
MODULE = "vantage6nb.algorithms.diagnostics"
REGISTRY = "127.0.0.1:5000"
WARMUP = 3
ROWS = 1000
#: work -> (method, kwargs, uses the database)
WORKS = {"trivial": ("echo", {"x": 1}, False), "pandas": ("shape", {}, True)}


def dataset(folder: Path) -> Path:
    """1,000 rows of mixed columns as CSV, readable by a container's user."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 90, ROWS),
            "bmi": rng.normal(26, 4, ROWS).round(1),
            "sex": rng.choice(["f", "m"], ROWS),
            "site": rng.choice(["a", "b", "c"], ROWS),
        }
    )
    path = folder / "data.csv"
    df.to_csv(path, index=False)
    folder.chmod(0o755)
    path.chmod(0o644)
    return path


def engine_cmd(runtime: str) -> list[str]:
    """The ``docker`` CLI, pointed at the rootless Podman service for ``podman``."""
    if runtime == "podman":
        from vantage6nb.demo._podman import podman_socket

        return ["docker", "-H", f"unix://{podman_socket()}"]
    return ["docker"]


def bare_image(runtime: str) -> str:
    """The image the bare run starts: as the nodes run it (Podman pulls from the registry)."""
    if runtime != "podman":
        return IMAGE
    ref = f"{REGISTRY}/{IMAGE}:latest"
    subprocess.run([*engine_cmd(runtime), "pull", "-q", ref], check=True, capture_output=True)
    return ref


def bare_docker_run(
    image: str,
    workdir: str,
    work: str = "trivial",
    data: Path | None = None,
    runtime: str = "docker",
) -> float:
    """Wall time of ``docker run`` (or ``podman run``) of ``image`` doing the same ``work``, the
    engine's own cost: the image's entrypoint (the algorithm wrapper), input and output mounted,
    the data mounted read-only, no network, read-only root, non-root, output checked."""
    import json
    import os

    from vantage6nb.common import contract

    method, kwargs, uses_data = WORKS[work]
    os.chmod(workdir, 0o777)  # the image's non-root user writes its output here
    inp, out = os.path.join(workdir, "input.json"), os.path.join(workdir, "output.json")
    with open(inp, "w") as fh:
        json.dump(contract.make_input(method, kwargs=kwargs), fh)
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
        databases={"default": ("/v6nb/data/0-default.csv", "csv")} if uses_data else {},
    )
    _wait_engine_settled(runtime)
    cmd = [*engine_cmd(runtime), "run", "--rm", "--network", "none", "--read-only"]
    cmd += ["--tmpfs", "/tmp", "-v", f"{workdir}:/v6nb"]
    if uses_data and data is not None:
        cmd += ["-v", f"{data}:/v6nb/data/0-default.csv:ro"]
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


def _wait_engine_settled(runtime: str = "docker", timeout: float = 5.0) -> None:
    """Wait until the nodes have removed their finished runs' containers in the background and
    started the next run's spares (only running spares left), so that work does not slow the
    bare run down (it would flatter the platform)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = subprocess.run(
            [
                *engine_cmd(runtime),
                "ps",
                "-a",
                "--filter",
                "label=v6nb.node",
                "--format",
                '{{.Label "v6nb.run"}}/{{.State}}',
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if all(r == "spare/running" for r in runs):
            return
        time.sleep(0.02)


def bare_run(
    parallel: int,
    runtime: str,
    pool: ThreadPoolExecutor,
    tmp: Path,
    work: str = "trivial",
    data: Path | None = None,
    image: str = IMAGE,
) -> float:
    """Wall time of ``parallel`` bare algorithm processes started together (as the nodes do)."""
    dirs = [tmp / str(i) for i in range(parallel)]
    for d in dirs:
        d.mkdir(exist_ok=True)

    def one(d: Path) -> float:
        if runtime in ("docker", "podman"):
            return bare_docker_run(image, str(d), work, data, runtime)
        method, kwargs, uses_data = WORKS[work]
        dbs = {"default": (str(data), "csv")} if uses_data and data is not None else None
        return bare_python_run(MODULE, method, kwargs, str(d), dbs)

    t0 = time.perf_counter()
    list(pool.map(one, dirs))
    return time.perf_counter() - t0


def measure(
    nodes: int,
    runs: int,
    runtime: str,
    warm: bool = True,
    work: str = "trivial",
    data: Path | None = None,
    spares: int = 4,
) -> tuple[list[float], list[float]]:
    """Round-trip times of ``runs`` tasks doing ``work`` sent to ``nodes`` organizations, each
    followed by a bare run of ``nodes`` algorithm processes, so both see the same machine load."""
    from vantage6nb import demo

    method, _, uses_data = WORKS[work]
    settings = {"process_warm": warm, "container_warm_spares": spares}
    extra = {"datasets": [str(data)] * nodes} if uses_data and data is not None else {}
    with (
        demo.start(nodes=nodes, runtime=runtime, node_settings=settings, **extra) as net,
        tempfile.TemporaryDirectory() as tmp,
        ThreadPoolExecutor(nodes) as pool,
    ):
        client = net.client()
        orgs = list(net.organizations.values())[:nodes]
        image = bare_image(runtime)
        Path(tmp).chmod(0o711)  # a rootless Podman's user mounts the folders inside

        def once(i: int) -> None:
            kwargs = {"i": i} if method == "echo" else {}
            task = client.task.create(
                organizations=orgs,
                image=IMAGE,
                method=method,
                kwargs=kwargs,
                databases=["default"] if uses_data else None,
            )
            results = task.results(timeout=120)
            assert len(results) == nodes, results
            if method == "echo":
                assert all(r["kwargs"] == {"i": i} for r in results), results
            else:
                assert all(r["rows"] == ROWS for r in results), results

        for i in range(WARMUP):  # socket.io connection, caches, first imports
            once(-1 - i)
            bare_run(nodes, runtime, pool, Path(tmp), work, data, image)
        times, bare = [], []
        for i in range(runs):
            t0 = time.perf_counter()
            once(i)
            times.append(time.perf_counter() - t0)
            bare.append(bare_run(nodes, runtime, pool, Path(tmp), work, data, image))
    return times, bare


def phases(runtime: str, runs: int, work: str, data: Path | None) -> dict[str, list[float]]:
    """Seconds per phase of ``runs`` warm runs of ``work`` by the runtime itself, in this process."""
    import json

    from node_app.runtimes.base import DatabaseMount, Limits, RunSpec
    from vantage6nb.common import contract

    method, kwargs, uses_data = WORKS[work]
    if runtime == "podman":
        from node_app.runtimes.podman import PodmanRuntime
        from vantage6nb.demo._podman import podman_socket

        rt: Any = PodmanRuntime(
            socket=podman_socket(), node_name="bench", registry=REGISTRY, warm=True, warm_spares=1
        )
    else:
        from node_app.runtimes.docker import DockerRuntime

        rt = DockerRuntime(node_name="bench", registry=REGISTRY, warm=True, warm_spares=1)
    from vantage6nb.demo._docker import registry_digest

    digest = registry_digest(REGISTRY, IMAGE, "latest")  # pinned, as the demo's nodes pin it
    out: dict[str, list[float]] = {"start": [], "algorithm": [], "output": [], "run": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        try:
            rt.cleanup()
            for i in range(runs + 2):  # the first is cold, the second may meet a spare starting
                work_dir = base / f"run{i}"
                work_dir.mkdir()
                (work_dir / "input.json").write_text(
                    json.dumps(contract.make_input(method, kwargs=kwargs))
                )
                (work_dir / "token").write_text("benchmark-token")
                spec = RunSpec(
                    run_id=i + 1,
                    task_id=1,
                    image=IMAGE,
                    workdir=work_dir,
                    input_file=work_dir / "input.json",
                    output_file=work_dir / "output.json",
                    token_file=work_dir / "token",
                    tmp_dir=work_dir / "tmp",
                    databases=[DatabaseMount("default", str(data), "csv")] if uses_data else [],
                    proxy_host="http://127.0.0.1",
                    proxy_port=9,
                    limits=Limits(memory_mb=1024, cpus=2, pids=256, timeout_s=120),
                    digest=digest,
                )
                _wait_engine_settled(runtime)
                deadline = time.monotonic() + 30  # the spare's imports done: a warm run
                while i and time.monotonic() < deadline:
                    if any(spare.ready() for spare in rt._pool.waiting()):
                        break
                    time.sleep(0.05)
                t0 = time.perf_counter()
                rt.prepare(spec)
                outcome = rt.run(spec)
                elapsed = time.perf_counter() - t0
                assert outcome.status.value == "completed", outcome
                _, how, seconds = rt.phases[-1]
                if i >= 2 and how == "warm":
                    for name, value in seconds.items():
                        out[name].append(value)
                    out["run"].append(elapsed)
        finally:
            rt.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--nodes", default="1,3", help="comma-separated node counts")
    ap.add_argument("--runtime", default="process", choices=["process", "docker", "podman"])
    ap.add_argument(
        "--work",
        default="trivial",
        choices=sorted(WORKS),
        help="trivial: diagnostics echo; pandas: diagnostics shape, a @data partial on 1,000 rows",
    )
    ap.add_argument(
        "--spares",
        type=int,
        default=4,
        help="docker/podman: container_warm_spares of the nodes (0: every run cold)",
    )
    ap.add_argument(
        "--process-warm",
        default="on",
        choices=["on", "off"],
        help="process runtime: fork each run from a warm zygote (process_warm), or not",
    )
    args = ap.parse_args()
    method = WORKS[args.work][0]
    warmth = (
        f"process_warm {args.process_warm}"
        if args.runtime == "process"
        else f"container_warm_spares {args.spares}"
    )
    print(f"# roundtrip, {args.runtime} runtime ({warmth}), {args.work} work ({IMAGE} {method})")
    print(f"# {machine()}; {load_note()}")
    holder = tempfile.TemporaryDirectory()
    data = dataset(Path(holder.name)) if WORKS[args.work][2] else None
    for nodes in (int(n) for n in args.nodes.split(",")):
        times, bare = measure(
            nodes,
            args.runs,
            args.runtime,
            args.process_warm == "on",
            args.work,
            data,
            args.spares,
        )
        paired = [t - b for t, b in zip(times, bare, strict=True)]
        what = {"docker": "docker run", "podman": "podman run"}.get(
            args.runtime, "algorithm process"
        )
        print(f"{nodes} node(s): round trip {summarize_ms(times)}")
        print(f"           bare {what} x{nodes} in parallel: {summarize_ms(bare)}")
        print(
            f"           outside the algorithm (round trip - bare, paired): {summarize_ms(paired)};"
            f" median - median: {(statistics.median(times) - statistics.median(bare)) * 1e3:.1f} ms"
            f"  ({load_note()})",
            flush=True,
        )
    if args.runtime in ("docker", "podman") and args.spares > 0:
        seen = phases(args.runtime, max(3, args.runs // 2), args.work, data)
        if seen["run"]:
            print("where a warm run's time goes (the runtime alone, in this process):")
            for name in ("start", "algorithm", "output", "run"):  # run: prepare + run
                print(f"    {name:>9}: {summarize_ms(seen[name])}")
            rest = statistics.median(times) - statistics.median(seen["run"])
            print(
                f"    outside the runtime (token, reports, crypto, upload, client; last round "
                f"trip median - run median): {rest * 1e3:.1f} ms"
            )
    holder.cleanup()
    print(f"# {load_note()}")


if __name__ == "__main__":
    main()
