"""Warm single-use sandboxes in the Docker runtime: one spare container per run, never a second run."""

# The same tests run against Podman from test_podman_warm.py, with the fixtures `warm_runtime`,
# `warm_image`, `publish`, `engine` and `proxy_socket` bound to Podman there.

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from node_app.runtimes.base import Limits, RunSpec
from node_app.runtimes.docker import LABEL_NODE, DockerRuntime
from tests.docker_images import PROBE_IMAGE, SIDECAR_IMAGE, build_test_images
from tests.support import wait_for
from vantage6nb.common.schemas import RunStatus

from .runtime_contract import RuntimeContract
from .test_docker_runtime import _ProxyHandler, _UnixHTTPServer

pytestmark = pytest.mark.docker

WARM_IMAGE = "v6nb-test/warm:latest"
LIMITS = Limits(memory_mb=512, cpus=1, pids=128, timeout_s=60)

_MODULE = '''\
"""What one run can tell about the container it runs in (warm-start tests)."""
import os
import sys
import time

from vantage6nb.common import contract

VERSION = "{version}"
MARKER = "/tmp/v6nb-warm-marker"


def info():
    seen = os.path.exists(MARKER)
    with open(MARKER, "w") as fh:
        fh.write("a run was here")
    with open("/proc/1/cmdline", "rb") as fh:
        pid1 = fh.read()
    with open("/proc/self/mountinfo") as fh:
        # /etc/hostname is the sandbox's (its relay's, whose network the algorithm joins)
        sandbox = next(ln.split()[3] for ln in fh if " /etc/hostname " in ln)
    env = os.environ
    return {{
        "version": VERSION,
        "marker_seen": seen,
        "warm": b"v6nb warm spare" in pid1,
        "sandbox": sandbox,
        "secret": env.get("WARM_SECRET"),
        "token": open(contract.read_environment(env, contract.TOKEN_FILE)).read(),
        "pandas_loaded": "pandas" in sys.modules,
    }}


def crash():
    raise RuntimeError("warm probe crashed on purpose")


def sleep(seconds=60):
    print("warm probe: sleeping", flush=True)
    time.sleep(seconds)
    return {{}}
'''


def build_warm_image(docker_client, folder: Path, version: str) -> str:
    """WARM_IMAGE (module ``warm_algo``, ``VERSION = version``) on the probe image."""
    ctx = folder / f"warm-{version}"
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir(parents=True)
    (ctx / "warm_algo.py").write_text(_MODULE.format(version=version))
    (ctx / "Dockerfile").write_text(
        f"FROM {PROBE_IMAGE}\nCOPY warm_algo.py /opt/v6nb-test/\nENV PKG_NAME=warm_algo\n"
    )
    docker_client.images.build(path=str(ctx), tag=WARM_IMAGE, network_mode="none", rm=True)
    return WARM_IMAGE


# -- fixtures (Podman's test module binds its own) -----------------------------------------------


@pytest.fixture(scope="session")
def warm_test_images(docker_client, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("warm-images")
    build_test_images(docker_client, folder)
    return folder


@pytest.fixture
def proxy_socket(tmp_path_factory):
    """A proxy on a unix socket, as the node serves it to side-cars."""
    path = tmp_path_factory.mktemp("proxy") / "proxy.sock"
    server = _UnixHTTPServer(str(path), _ProxyHandler)
    path.chmod(0o666)  # as the node's proxy does: the relay runs as another user
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path
    server.shutdown()
    server.server_close()


@pytest.fixture
def engine(docker_client):
    """The engine client the runtime's containers live on."""
    return docker_client


@pytest.fixture
def warm_image(docker_client, warm_test_images) -> Callable[[str], str]:
    """Build (or rebuild) WARM_IMAGE with a module of the given version; returns its name."""
    return lambda version: build_warm_image(docker_client, warm_test_images, version)


@pytest.fixture
def warm_runtime(node_name) -> Callable[..., DockerRuntime]:
    made: list[DockerRuntime] = []

    def make(**kwargs) -> DockerRuntime:
        kwargs.setdefault("instance", node_name)
        rt = DockerRuntime(
            node_name=node_name, sidecar_image=SIDECAR_IMAGE, warm=True, warm_spares=2, **kwargs
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def node_name(request) -> str:
    import os

    return f"wtest-{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}"


# -- helpers ---------------------------------------------------------------------------------------


def make_spec(tmp_path: Path, image: str, method: str, run_id: int, proxy: Path, **kw) -> RunSpec:
    spec = RuntimeContract().make_spec(
        tmp_path, image, method, run_id=run_id, kwargs=kw.pop("kwargs", None)
    )
    kw.setdefault("limits", LIMITS)
    spec = dataclasses.replace(spec, proxy_socket=proxy, api_path="/api", **kw)
    return spec


def run(rt: DockerRuntime, spec: RunSpec) -> tuple:
    rt.prepare(spec)
    outcome = rt.run(spec)
    result = (
        json.loads(spec.output_file.read_text()) if outcome.status == RunStatus.COMPLETED else None
    )
    return outcome, result


def spares(engine, rt: DockerRuntime, role: str = "algorithm") -> list:
    """The runtime's spare containers as the engine lists them (no inspect: they may be going)."""
    return engine.containers.list(
        all=True,
        sparse=True,
        filters={"label": [f"{LABEL_NODE}={rt.instance}", "v6nb.run=spare", f"v6nb.role={role}"]},
    )


def running_spare(engine, rt: DockerRuntime):
    """The one spare algorithm container once it runs (it is started after the previous run)."""
    found = wait_for(
        lambda: [c for c in spares(engine, rt) if c.attrs.get("State") == "running"],
        120,
        "a running spare",
    )
    return engine.containers.get(found[0].id)


def gone(engine, container_id: str) -> bool:
    return container_id not in {c.id for c in engine.containers.list(all=True, sparse=True)}


# -- the tests -------------------------------------------------------------------------------------


def test_a_warm_run_ends_as_a_cold_one(warm_runtime, warm_image, engine, proxy_socket, tmp_path):
    rt = warm_runtime()
    image = warm_image("a")
    cold, _ = run(rt, make_spec(tmp_path, image, "crash", 1, proxy_socket))
    running_spare(engine, rt)
    warm, _ = run(rt, make_spec(tmp_path, image, "crash", 2, proxy_socket))
    assert cold.status == warm.status == RunStatus.CRASHED, (cold, warm)
    assert cold.reason == warm.reason, (cold, warm)
    assert "warm probe crashed on purpose" in warm.reason
    running_spare(engine, rt)
    outcome, seen = run(
        rt, make_spec(tmp_path, image, "info", 3, proxy_socket, extra_env={"WARM_SECRET": "s3"})
    )
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["warm"] is True and seen["pandas_loaded"] is True
    assert seen["token"] == "container-token-for-test" and seen["secret"] == "s3"
    assert seen["version"] == "a" and seen["marker_seen"] is False


def test_a_spare_serves_exactly_one_run(warm_runtime, warm_image, engine, proxy_socket, tmp_path):
    rt = warm_runtime()
    image = warm_image("a")
    seen = []
    for run_id in (1, 2, 3):
        if run_id > 1:
            running_spare(engine, rt)
        outcome, result = run(rt, make_spec(tmp_path, image, "info", run_id, proxy_socket))
        assert outcome.status == RunStatus.COMPLETED, outcome
        seen.append(result)
    assert [s["warm"] for s in seen] == [False, True, True]
    assert len({s["sandbox"] for s in seen}) == 3, seen  # a new sandbox each run
    assert not any(s["marker_seen"] for s in seen), seen  # nothing a run left is seen by the next


def test_a_spare_holds_nothing_of_a_run_before_its_handoff(
    warm_runtime, warm_image, engine, proxy_socket, tmp_path
):
    rt = warm_runtime()
    image = warm_image("a")
    first = make_spec(tmp_path, image, "info", 1, proxy_socket, extra_env={"WARM_SECRET": "one"})
    assert run(rt, first)[0].status == RunStatus.COMPLETED
    spare = running_spare(engine, rt)
    spare.reload()
    env = spare.attrs["Config"]["Env"]
    names = {e.split("=", 1)[0] for e in env}
    contract = {"INPUT_FILE", "OUTPUT_FILE", "TOKEN_FILE", "HOST", "PORT", "API_PATH"}
    assert not names & (contract | {"WARM_SECRET", "USER_REQUESTED_DATABASE_LABELS"}), env
    assert not any("container-token-for-test" in e or "one" == e.split("=", 1)[-1] for e in env)
    assert spare.labels["v6nb.run"] == "spare"
    second = make_spec(tmp_path, image, "info", 2, proxy_socket, extra_env={"WARM_SECRET": "two"})
    outcome, seen = run(rt, second)
    assert outcome.status == RunStatus.COMPLETED, outcome
    # the run that entered that very spare got its environment and token through the bundle
    relay = spare.attrs["HostConfig"]["NetworkMode"].split(":", 1)[1]
    assert spare.id in seen["sandbox"] or relay in seen["sandbox"], (spare.id, relay, seen)
    assert seen["secret"] == "two" and seen["token"] == "container-token-for-test"


def test_a_spare_is_discarded_when_the_limits_change(
    warm_runtime, warm_image, engine, proxy_socket, tmp_path
):
    rt = warm_runtime()
    image = warm_image("a")
    assert (
        run(rt, make_spec(tmp_path, image, "info", 1, proxy_socket))[0].status.value == "completed"
    )
    old = running_spare(engine, rt)
    tighter = dataclasses.replace(LIMITS, memory_mb=384)
    outcome, seen = run(rt, make_spec(tmp_path, image, "info", 2, proxy_socket, limits=tighter))
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["warm"] is False  # not the spare made for the old limits
    wait_for(lambda: gone(engine, old.id), 60, "the old spare removed")
    new = running_spare(engine, rt)
    new.reload()
    assert new.id != old.id


def test_a_spare_is_discarded_when_the_image_changes(
    warm_runtime, warm_image, publish, engine, proxy_socket, tmp_path
):
    rt = warm_runtime()
    image = publish(warm_image("a"))
    outcome, seen = run(rt, make_spec(tmp_path, image, "info", 1, proxy_socket))
    assert outcome.status == RunStatus.COMPLETED and seen["version"] == "a", outcome
    old = running_spare(engine, rt)
    publish(warm_image("b"))  # the same name, another image (and digest)
    outcome, seen = run(rt, make_spec(tmp_path, image, "info", 2, proxy_socket))
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["version"] == "b" and seen["warm"] is False, seen
    wait_for(lambda: gone(engine, old.id), 60, "the stale spare removed")


def _in_background(rt: DockerRuntime, spec: RunSpec) -> tuple[threading.Thread, list]:
    box: list = []
    rt.prepare(spec)
    worker = threading.Thread(target=lambda: box.append(rt.run(spec)))
    worker.start()
    return worker, box


def test_kill_and_timeout_end_a_warm_run(warm_runtime, warm_image, engine, proxy_socket, tmp_path):
    rt = warm_runtime()
    image = warm_image("a")
    short = dataclasses.replace(LIMITS, timeout_s=4)
    spec = make_spec(tmp_path, image, "sleep", 1, proxy_socket, kwargs={"seconds": 0}, limits=short)
    assert run(rt, spec)[0].status == RunStatus.COMPLETED
    spare = running_spare(engine, rt)
    spec = make_spec(
        tmp_path, image, "sleep", 2, proxy_socket, kwargs={"seconds": 600}, limits=short
    )
    worker, box = _in_background(rt, spec)
    try:
        wait_for(lambda: rt._containers.get(2), 60, "run 2 in its container")
        assert rt._containers[2].id == spare.id  # the warm one

        def named() -> bool:  # named for its run, as a cold run's container is
            found = engine.containers.list(all=True, sparse=True, filters={"name": "-run2-"})
            return spare.id in {c.id for c in found}

        wait_for(named, 30, "the warm container named for its run")
        assert rt.kill(2)
    finally:
        worker.join(60)
    assert box and box[0].status == RunStatus.KILLED, box
    spare = running_spare(engine, rt)
    spec = make_spec(
        tmp_path, image, "sleep", 3, proxy_socket, kwargs={"seconds": 600}, limits=short
    )
    worker, box = _in_background(rt, spec)
    try:
        wait_for(lambda: rt._containers.get(3), 60, "run 3 in its container")
        assert rt._containers[3].id == spare.id
    finally:
        worker.join(120)
    assert box and box[0].status == RunStatus.FAILED, box
    assert box[0].reason.startswith("timed out after 4 s"), box


def test_close_and_cleanup_leave_no_container(
    warm_runtime, warm_image, engine, proxy_socket, tmp_path, node_name
):
    rt = warm_runtime()
    image = warm_image("a")
    assert (
        run(rt, make_spec(tmp_path, image, "info", 1, proxy_socket))[0].status.value == "completed"
    )
    running_spare(engine, rt)
    # a next life of the node (same instance) removes the spares a crashed one left behind
    removed = warm_runtime().cleanup()
    assert any("-spare-" in r for r in removed), removed
    assert spares(engine, rt) == []
    assert (
        run(rt, make_spec(tmp_path, image, "info", 2, proxy_socket))[0].status.value == "completed"
    )
    running_spare(engine, rt)
    rt.close()
    mine = {"label": f"{LABEL_NODE}={rt.instance}"}
    assert engine.containers.list(all=True, sparse=True, filters=mine) == []
    assert engine.volumes.list(filters=mine) == []


@pytest.fixture
def publish() -> Callable[[str], str]:
    """Make a just-built image the one the runtime finds under its name (locally: nothing to do)."""
    return lambda name: name
