"""Exactly once with containers: a node killed (SIGKILL) once a run's algorithm container wrote its
output adopts that output after its restart and never runs the algorithm again (Docker, Podman)."""

# The algorithm's one side effect is a subtask for an organization that has no node: the server
# keeps it, so the number of subtasks of a task is the number of times its algorithm ran, whatever
# the node says. Its result names that subtask: a result from a second execution would name another.

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import secrets
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker_images import PROBE_IMAGE, build_test_images
from tests.support import NodeProcess, wait_for

from .harness import ROOT_PASSWORD, Api, probe_node, server_process
from .test_podman_runtime import (  # noqa: F401 - the Podman fixtures, asked for by name
    podman_client,
    podman_socket,
    shared_base,
)

pytestmark = pytest.mark.integration

TRIALS = 5  # per runtime: each costs a node restart (the deterministic windows are below)
IMAGE = "v6nb-test/once:latest"
REGISTRY = "127.0.0.1:5000"
RESUMED = "its output was returned without running it again"
# how long the algorithm lingers: a node that ran it again would finish it, and be caught
_LONG_MS = 30_000

_MODULE = '''\
"""One execution = one subtask (the exactly-once container tests)."""
import atexit
import time

from vantage6nb.algorithm import algorithm_client


@algorithm_client
def record(client, other, nonce, pause_ms=0, before_ms=0):
    print(f"v6nb-once started {nonce}", flush=True)
    task = client.task.create({"method": "noop", "args": [], "kwargs": {}}, [other])
    time.sleep(before_ms / 1000)  # still running, no output yet

    def written():  # at interpreter exit: the wrapper has renamed the output into place
        print(f"v6nb-once written {nonce}", flush=True)
        time.sleep(pause_ms / 1000)

    atexit.register(written)
    return {"subtask": task["id"], "nonce": nonce}
'''


# -- images and stations ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def once_image(docker_client, tmp_path_factory) -> str:
    """IMAGE: the probe image (current kit source) with the module above as its algorithm."""
    folder = tmp_path_factory.mktemp("once-image")
    build_test_images(docker_client, folder)
    ctx = folder / "once"
    ctx.mkdir()
    (ctx / "once_algo.py").write_text(_MODULE)
    (ctx / "Dockerfile").write_text(
        f"FROM {PROBE_IMAGE}\nCOPY once_algo.py /opt/v6nb-test/\nENV PKG_NAME=once_algo\n"
    )
    docker_client.images.build(path=str(ctx), tag=IMAGE, network_mode="none", rm=True)
    return IMAGE


class Station:
    """What a test needs of one runtime: the node's settings, its engine, a folder it may use."""

    def __init__(self, runtime: str, engine: Any, folder: Path, settings: dict[str, Any]) -> None:
        self.runtime = runtime
        self.engine = engine
        self.folder = folder
        self.settings = settings


@pytest.fixture(
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("podman", marks=pytest.mark.podman),
    ]
)
def station(request, docker_client, once_image, tmp_path) -> Iterator[Station]:
    if request.param == "docker":
        yield Station("docker", docker_client, tmp_path, {"runtime": "docker"})
        return
    sock = request.getfixturevalue("podman_socket")
    engine = request.getfixturevalue("podman_client")
    repo = f"{REGISTRY}/{once_image.rsplit(':', 1)[0]}"
    docker_client.images.get(once_image).tag(repo, "latest")
    docker_client.images.push(repo, tag="latest")
    base = request.getfixturevalue("shared_base")  # the Podman user may traverse it
    folder = Path(tempfile.mkdtemp(dir=base))
    folder.chmod(0o711)
    yield Station(
        "podman",
        engine,
        folder,
        {"runtime": "podman", "podman_socket": str(sock), "image_registry": REGISTRY},
    )


def _network(tmp: Path, server_url: str) -> dict[str, Any]:
    """One organization with a node, one without (where each execution's subtask waits)."""
    root = Api(server_url, "root", ROOT_PASSWORD)
    tag = secrets.token_hex(3)
    org = root.call("POST", "/organization", json={"name": f"once-{tag}"})["id"]
    other = root.call("POST", "/organization", json={"name": f"away-{tag}"})["id"]
    collab = root.call(
        "POST",
        "/collaboration",
        json={"name": f"once-{tag}", "organization_ids": [org, other], "encrypted": False},
    )["id"]
    key = root.call(
        "POST", "/node", json={"organization_id": org, "collaboration_id": collab, "name": "n"}
    )["api_key"]
    user = {"username": f"once-{tag}", "password": "research-pass-1"}
    root.call("POST", "/user", json={**user, "organization_id": org})
    api = Api(server_url, user["username"], user["password"])
    return {"api": api, "org": org, "other": other, "collab": collab, "key": key}


@contextlib.contextmanager
def _station_node(station: Station) -> Iterator[tuple[NodeProcess, dict[str, Any], str]]:
    """A server, the network, and a node on ``station``'s runtime (stopped and cleaned at the end)."""
    name = f"once-{os.getpid()}-{secrets.token_hex(2)}"
    with server_process(station.folder) as server:
        net = _network(station.folder, server.url)
        node = probe_node(
            station.folder,
            name,
            server.url,
            net["key"],
            allowed_images=["v6nb-test/*"],
            databases=[],
            **station.settings,
        )
        node.start()
        try:
            yield node, net, name
        finally:
            node.stop()
            for c in _algorithms(station.engine, name, any_role=True):
                with contextlib.suppress(Exception):
                    c.remove(force=True)
            # a killed life's warm spares leave their run volumes: remove them too
            for v in station.engine.volumes.list(filters={"label": "v6nb.node"}):
                labels = v.attrs.get("Labels") or {}
                if labels.get("v6nb.node", "").startswith(f"{name}@"):
                    with contextlib.suppress(Exception):
                        v.remove(force=True)


def _algorithms(engine: Any, name: str, *, any_role: bool = False) -> list[Any]:
    """The containers (algorithm ones unless ``any_role``) of node ``name``, of any life."""
    found = []
    for c in engine.containers.list(all=True, sparse=True, filters={"label": "v6nb.node"}):
        labels = c.attrs.get("Labels") or {}
        if labels.get("v6nb.node", "").startswith(f"{name}@") and (
            any_role or labels.get("v6nb.role") == "algorithm"
        ):
            found.append(c)
    return found


def _printed(engine: Any, name: str, line: str) -> Callable[[], Any]:
    """A condition: the algorithm container of node ``name`` that printed ``line``."""

    def seen() -> Any:
        for c in _algorithms(engine, name):
            with contextlib.suppress(Exception):  # removed meanwhile
                if line.encode() in c.logs(stdout=True, stderr=True):
                    return c
        return None

    return seen


def _subtasks(api: Api, task_id: int) -> list[int]:
    """The subtasks of ``task_id``: one per execution of its algorithm."""
    return [t["id"] for t in api.call("GET", "/task", params={"parent_id": task_id})["data"]]


def _task(net: dict[str, Any], nonce: str, **kwargs: Any) -> dict[str, Any]:
    return net["api"].create_task(
        net["collab"],
        [net["org"]],
        IMAGE,
        "record",
        databases=[],
        other=net["other"],
        nonce=nonce,
        **kwargs,
    )


def _completed_once(net: dict[str, Any], task: dict[str, Any], nonce: str, what: str) -> dict:
    """Assert the task's run completed with the result of its one and only execution."""
    (run,) = net["api"].wait_runs(task["id"])
    subtasks = _subtasks(net["api"], task["id"])
    assert len(subtasks) == 1, (what, "executions:", subtasks, run)
    assert run["status"] == "completed", (what, run)
    assert json.loads(run["result"]) == {"subtask": subtasks[0], "nonce": nonce}, (what, run)
    return run


def _prime(net: dict[str, Any]) -> None:
    """Run one task to its end in this life of the node: the runtime then keeps a warm spare."""
    nonce = f"prime-{secrets.token_hex(3)}"
    _completed_once(net, _task(net, nonce), nonce, "priming run")


def _unname(engine: Any, container: Any, name: str) -> bool:
    """Give a warm container its spare's name back, as if the node died before renaming it at the
    handoff (its labels say `spare`): the restarted node then learns its run from its bundle."""
    with contextlib.suppress(Exception):  # gone meanwhile
        if (container.attrs.get("Labels") or {}).get("v6nb.run") == "spare":
            engine.containers.get(container.id).rename(f"v6nb-{name}-spare-{secrets.token_hex(4)}")
            return True
    return False


def _state(engine: Any, container: Any) -> str:
    with contextlib.suppress(Exception):
        return str(engine.containers.get(container.id).status)
    return "gone"


# -- the tests -------------------------------------------------------------------------------------


def test_a_node_killed_after_the_output_never_runs_the_container_again(station: Station) -> None:
    rng = random.Random(14)
    seen: collections.Counter[str] = collections.Counter()
    with _station_node(station) as (node, net, name):
        for trial in range(TRIALS):
            nonce = f"trial{trial}-{secrets.token_hex(3)}"
            if trial % 2:  # a run in this life first: the trial's run takes a warm spare
                _prime(net)
            # the kill lands from the algorithm's exit (it lingers 0-40 ms) to after the upload
            task = _task(net, nonce, pause_ms=10 * (trial % 5))
            container = wait_for(
                _printed(station.engine, name, f"v6nb-once written {nonce}"),
                120,
                f"trial {trial}: the output to be written",
                interval=0.005,
            )
            time.sleep(rng.uniform(0, 0.06))
            node.stop(signal.SIGKILL)
            (run,) = net["api"].runs(task["id"])
            work = node.folder / "state" / "runs" / f"run-{run['id']}"
            if (work / "output.json").exists():
                seen["output taken by the node"] += 1
            elif not work.exists():
                seen["uploaded"] += 1
            else:
                seen[f"algorithm {_state(station.engine, container)}"] += 1
                if trial % 2 and _unname(station.engine, container, name):
                    seen["a warm one not renamed yet"] += 1  # killed before the rename landed
            node.start()
            _completed_once(net, task, nonce, f"trial {trial}")
    log = node.log_path.read_text()
    assert "previous life of this node: running it again" not in log, log[-3000:]
    print(f"{station.runtime}: where the {TRIALS} kills landed: {dict(seen)}")


def test_killed_while_the_algorithm_lingers_after_its_output(station: Station) -> None:
    """The (warm) container still runs at the restart, its output complete: stopped, output adopted."""
    with _station_node(station) as (node, net, name):
        _prime(net)  # this run's algorithm then runs in a warm spare
        nonce = f"lingers-{secrets.token_hex(3)}"
        task = _task(net, nonce, pause_ms=_LONG_MS)
        container = wait_for(
            _printed(station.engine, name, f"v6nb-once written {nonce}"), 120, "output"
        )
        assert (container.attrs.get("Labels") or {}).get("v6nb.run") == "spare", container.attrs
        node.stop(signal.SIGKILL)
        node.start()
        run = _completed_once(net, task, nonce, "lingering")
        assert RESUMED in run["reason"], run
    _never_ran_again(node)


def test_killed_after_the_exit_before_the_output_was_copied(station: Station) -> None:
    """The container exited; the node (frozen, then killed) never copied its output out."""
    with _station_node(station) as (node, net, name):
        nonce = f"exited-{secrets.token_hex(3)}"
        task = _task(net, nonce, pause_ms=1500)
        container = wait_for(
            _printed(station.engine, name, f"v6nb-once written {nonce}"), 120, "output"
        )
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: _state(station.engine, container) == "exited", 60, "its exit")
            (run,) = net["api"].runs(task["id"])
            work = node.folder / "state" / "runs" / f"run-{run['id']}"
            assert (work / "started.json").exists() and not (work / "output.json").exists()
        finally:
            node.stop(signal.SIGKILL)
        node.start()
        run = _completed_once(net, task, nonce, "exited")
        assert RESUMED in run["reason"], run
    _never_ran_again(node)


def test_killed_while_running_before_any_output_fails_not_run_again(station: Station) -> None:
    """The container still runs at the restart, no output yet: stopped, and the run fails."""
    with _station_node(station) as (node, net, name):
        nonce = f"running-{secrets.token_hex(3)}"
        task = _task(net, nonce, before_ms=_LONG_MS)
        wait_for(_printed(station.engine, name, f"v6nb-once started {nonce}"), 120, "its start")
        wait_for(lambda: _subtasks(net["api"], task["id"]), 60, "its subtask")
        node.stop(signal.SIGKILL)
        node.start()
        (run,) = net["api"].wait_runs(task["id"])
        assert len(_subtasks(net["api"], task["id"])) == 1, run
        assert run["status"] == "failed", run
        assert "stopped it before it had written its output" in run["reason"], run
        assert "not run again" in run["reason"], run
    _never_ran_again(node)


def _never_ran_again(node: NodeProcess) -> None:
    """Assert the node's log shows no second start of a run."""
    again = [
        ln
        for ln in node.log_path.read_text().splitlines()
        if "previous life of this node: running it again" in ln
    ]
    assert not again, again
