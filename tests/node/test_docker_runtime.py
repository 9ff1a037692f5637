"""The Docker runtime: the shared runtime contract, and one test per isolation property."""

from __future__ import annotations

import dataclasses
import http.server
import os
import shutil
import socket
import socketserver
import threading
import urllib.request
from pathlib import Path

import pytest

from node_app.runtimes.base import DatabaseMount, Limits, RunSpec, RuntimeRefusal
from node_app.runtimes.docker import LABEL_NODE, DockerRuntime
from tests.docker_images import (
    ISOLATION_IMAGE,
    PROBE_IMAGE,
    SIDECAR_IMAGE,
    build_test_images,
)
from tests.support import unavailable, wait_for
from vantage6nb.common.schemas import RunStatus

from .runtime_contract import RuntimeContract

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="session")
def test_images(docker_client, tmp_path_factory) -> dict[str, str]:
    """Images with the test algorithms, built offline on the project's algorithm parent image."""
    return build_test_images(docker_client, tmp_path_factory.mktemp("docker-test-images"))


@pytest.fixture
def node_name(request) -> str:
    return f"test-{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}"


@pytest.fixture
def docker_runtime(test_images, node_name):
    rt = DockerRuntime(node_name=node_name, sidecar_image=SIDECAR_IMAGE)
    yield rt
    rt.close()


class TestDockerRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self, docker_runtime):
        return docker_runtime

    @pytest.fixture
    def probe_image(self, test_images) -> str:
        return test_images["probe"]

    @pytest.fixture
    def setup_step(self) -> str:
        return "_create_algorithm"  # called inside run(), after the side-car, before the container


# -- a proxy on a unix socket, as the node serves it to side-cars ----------------------------------


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body = f"proxy-ok {self.path} {self.headers.get('Authorization', '')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def client_address_string(self) -> str:
        return "unix"

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def proxy_socket(tmp_path_factory):
    path = tmp_path_factory.mktemp("proxy") / "proxy.sock"
    server = _UnixHTTPServer(str(path), _ProxyHandler)
    os.chmod(path, 0o666)  # as the node's proxy does: the relay runs as another user
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


@pytest.fixture
def host_tcp_server():
    """A TCP server on the host's loopback that greets whoever connects."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"host-secret")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(5)
    srv.close()


def probe_spec(
    tmp_path: Path, method: str, *, proxy_socket: Path | None, image: str = ISOLATION_IMAGE, **kw
) -> RunSpec:
    limits = kw.pop("limits", None)
    spec = RuntimeContract().make_spec(tmp_path, image, method, **kw)
    spec = dataclasses.replace(spec, proxy_socket=proxy_socket, api_path="/api")
    if limits is not None:
        spec.limits = limits
    return spec


def run_probe(rt: DockerRuntime, spec: RunSpec):
    import json

    rt.prepare(spec)
    outcome = rt.run(spec)
    result = (
        json.loads(spec.output_file.read_text()) if outcome.status == RunStatus.COMPLETED else None
    )
    return outcome, result


# -- isolation, one property per test ---------------------------------------------------------------


def test_only_loopback_interface(docker_runtime, proxy_socket, tmp_path) -> None:
    outcome, seen = run_probe(
        docker_runtime, probe_spec(tmp_path, "interfaces", proxy_socket=proxy_socket)
    )
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen == {"if_nameindex": ["lo"], "proc_net_dev": ["lo"]}


def test_host_loopback_is_unreachable(
    docker_runtime, proxy_socket, host_tcp_server, tmp_path
) -> None:
    # The server is reachable from here, so a container sharing the host's network would get in.
    with socket.create_connection(("127.0.0.1", host_tcp_server)) as s:
        assert s.recv(20) == b"host-secret"
    spec = probe_spec(
        tmp_path, "connect", proxy_socket=proxy_socket, kwargs={"port": host_tcp_server}
    )
    outcome, seen = run_probe(docker_runtime, spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["connected"] is False and "host-secret" not in seen["data"]


def test_proxy_is_reachable_through_the_sidecar(docker_runtime, proxy_socket, tmp_path) -> None:
    outcome, seen = run_probe(
        docker_runtime, probe_spec(tmp_path, "proxy_get", proxy_socket=proxy_socket)
    )
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["url"].startswith("http://127.0.0.1:")
    assert seen["status"] == 200
    assert seen["body"] == "proxy-ok /api/probe Bearer container-token-for-test"


def test_root_filesystem_is_read_only(docker_runtime, proxy_socket, tmp_path) -> None:
    # /var/tmp is world-writable in the image: only a read-only root stops the write.
    spec = probe_spec(
        tmp_path, "write_file", proxy_socket=proxy_socket, kwargs={"path": "/var/tmp/probe"}
    )
    outcome, seen = run_probe(docker_runtime, spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["written"] is False and "Read-only file system" in seen["error"]


def test_tmpfs_scratch_is_writable(docker_runtime, proxy_socket, tmp_path) -> None:
    outcome, seen = run_probe(
        docker_runtime, probe_spec(tmp_path, "write_tmp", proxy_socket=proxy_socket)
    )
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen == {"folder": "/tmp", "written": True, "error": ""}


def test_runs_as_non_root_without_capabilities(docker_runtime, proxy_socket, tmp_path) -> None:
    outcome, seen = run_probe(
        docker_runtime, probe_spec(tmp_path, "identity", proxy_socket=proxy_socket)
    )
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["uid"] != 0 and seen["gid"] != 0
    # A non-root uid has no effective capabilities anyway; the bounding set shows cap_drop=ALL.
    assert int(seen["CapEff"], 16) == 0
    assert int(seen["CapBnd"], 16) == 0
    assert seen["NoNewPrivs"] == "1"


def test_memory_limit_ends_run_as_out_of_memory(docker_runtime, proxy_socket, tmp_path) -> None:
    spec = probe_spec(
        tmp_path,
        "eat_memory",
        proxy_socket=proxy_socket,
        kwargs={"mb": 1024},
        limits=Limits(memory_mb=96, cpus=1, pids=64, timeout_s=120),
    )
    outcome, _ = run_probe(docker_runtime, spec)
    assert outcome.status == RunStatus.CRASHED, outcome
    assert "out of memory (limit 96 MB" in outcome.reason


def test_pids_limit_bounds_a_fork_bomb(docker_runtime, proxy_socket, tmp_path) -> None:
    spec = probe_spec(
        tmp_path,
        "fork_bomb",
        proxy_socket=proxy_socket,
        kwargs={"attempts": 200},
        limits=Limits(memory_mb=512, cpus=1, pids=32, timeout_s=120),
    )
    outcome, seen = run_probe(docker_runtime, spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["started"] < 32
    assert "Resource temporarily unavailable" in seen["error"]


def test_cpu_quota_is_visible_in_the_cgroup(docker_runtime, proxy_socket, tmp_path) -> None:
    spec = probe_spec(
        tmp_path,
        "cpu_quota",
        proxy_socket=proxy_socket,
        limits=Limits(memory_mb=512, cpus=0.5, pids=64, timeout_s=120),
    )
    outcome, seen = run_probe(docker_runtime, spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    if "/sys/fs/cgroup/cpu.max" in seen:  # cgroup v2
        quota, period = seen["/sys/fs/cgroup/cpu.max"].split()
    else:  # cgroup v1
        quota = next(v for k, v in seen.items() if k.endswith("cfs_quota_us"))
        period = next(v for k, v in seen.items() if k.endswith("cfs_period_us"))
    assert int(quota) / int(period) == 0.5


def test_data_is_mounted_read_only(docker_runtime, proxy_socket, tmp_path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n")
    data.chmod(0o666)  # writable by anyone: only the read-only mount stops the algorithm
    spec = probe_spec(
        tmp_path,
        "write_database",
        proxy_socket=proxy_socket,
        databases=[DatabaseMount("default", str(data), "csv")],
    )
    outcome, seen = run_probe(docker_runtime, spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["uri"] != str(data) and seen["written"] is False
    assert "Read-only file system" in seen["error"]
    assert data.read_text() == "x\n1\n"


# -- what the algorithm can write, and what the node reads back ------------------------------------

CAP_MB = 8


@pytest.mark.parametrize(
    ("folder", "limit"),
    [("", "output_mb"), ("/tmp", "scratch_mb"), ("/dev/shm", "shm_mb")],
    ids=["next-to-output", "scratch", "shm"],
)
def test_writable_folders_are_capped(docker_runtime, proxy_socket, tmp_path, folder, limit) -> None:
    limits = Limits(
        memory_mb=512, pids=64, timeout_s=120, output_mb=CAP_MB, scratch_mb=CAP_MB, shm_mb=CAP_MB
    )
    spec = probe_spec(
        tmp_path,
        "fill",
        proxy_socket=proxy_socket,
        kwargs={"folder": folder, "mb": 8 * CAP_MB},
        limits=limits,
    )
    before = shutil.disk_usage(tmp_path).used
    outcome, seen = run_probe(docker_runtime, spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["written_mb"] <= CAP_MB + 1 < 8 * CAP_MB, seen  # +1: the input's room
    assert "No space left on device" in seen["error"], seen
    assert seen["size_mb"] <= CAP_MB + 1, seen
    # what it wrote was memory, never the node's disk (other tests may write meanwhile: margin)
    assert shutil.disk_usage(tmp_path).used - before < 4 * CAP_MB * 2**20


def test_side_file_beyond_the_cap_crashes_the_run_saying_which_limit(
    docker_runtime, proxy_socket, tmp_path
) -> None:
    """An algorithm that does not catch the full disk crashes with a reason naming the settings."""
    spec = probe_spec(
        tmp_path,
        "fill",
        proxy_socket=proxy_socket,
        kwargs={"mb": 3 * CAP_MB, "catch": False},
        limits=Limits(memory_mb=512, pids=64, timeout_s=120, output_mb=CAP_MB),
    )
    outcome, _ = run_probe(docker_runtime, spec)
    assert outcome.status == RunStatus.CRASHED, outcome
    assert "No space left on device" in outcome.reason
    assert "limits.output_mb" in outcome.reason
    assert not spec.output_file.exists()


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "says"),
    [
        ("echo", {"x": 1}, RunStatus.COMPLETED, ""),
        ("symlink_output", {"target": "/etc/passwd"}, RunStatus.FAILED, "symbolic link"),
        ("sparse_output", {"gib": 8}, RunStatus.FAILED, "8192.0 MiB"),
    ],
    ids=["completes", "symlink-refused", "sparse-refused"],
)
def test_a_node_that_cannot_see_the_volume_uses_the_archive_api(
    docker_runtime, proxy_socket, tmp_path, monkeypatch, method, kwargs, status, says
) -> None:
    """The path a node without root (or in another mount namespace) takes, checked the same way."""
    from node_app.runtimes.docker_mounts import RunVolume

    monkeypatch.setattr(RunVolume, "_host_dir", lambda self: None)
    spec = probe_spec(tmp_path, method, proxy_socket=proxy_socket, image=PROBE_IMAGE, kwargs=kwargs)
    outcome, seen = run_probe(docker_runtime, spec)
    assert outcome.status == status, outcome
    assert says in outcome.reason
    if status == RunStatus.COMPLETED:
        assert seen == {"args": [], "kwargs": kwargs}
    else:
        assert not spec.output_file.exists()


def test_container_sees_no_host_folders_of_the_node(docker_runtime, proxy_socket, tmp_path) -> None:
    outcome, seen = run_probe(
        docker_runtime, probe_spec(tmp_path, "mountinfo", proxy_socket=proxy_socket)
    )
    assert outcome.status == RunStatus.COMPLETED, outcome
    # input, token and output come from the run volume: no path of the node's work folder
    assert str(tmp_path) not in seen["mountinfo"]
    assert " /v6nb/io " in seen["mountinfo"]


def test_relay_side_car_runs_as_a_non_root_user(
    docker_runtime, docker_client, proxy_socket, tmp_path
) -> None:
    spec = probe_spec(
        tmp_path, "sleep", proxy_socket=proxy_socket, kwargs={"seconds": 60}, run_id=31
    )
    docker_runtime.prepare(spec)
    worker = threading.Thread(target=docker_runtime.run, args=(spec,))
    worker.start()
    try:

        def relays() -> list:
            found = docker_client.containers.list(
                filters={"label": ["v6nb.run=31", "v6nb.role=relay"]}
            )
            return found if found and 31 in docker_runtime.running() else []

        relay = wait_for(relays, 60, "the run's relay side car")[0]
        relay.reload()
        status = Path(f"/proc/{relay.attrs['State']['Pid']}/status").read_text()
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        assert "0" not in uids, status
        assert relay.attrs["HostConfig"]["CapDrop"] == ["ALL"]
    finally:
        docker_runtime.kill(31)
        worker.join(60)


def test_engine_has_no_bridge_network(docker_client) -> None:
    drivers = {n.attrs["Driver"] for n in docker_client.networks.list()}
    assert drivers <= {"host", "null"}, drivers


def test_finished_runs_leave_no_containers(
    docker_runtime, docker_client, proxy_socket, tmp_path
) -> None:
    outcome, _ = run_probe(
        docker_runtime, probe_spec(tmp_path, "interfaces", proxy_socket=proxy_socket)
    )
    assert outcome.status == RunStatus.COMPLETED
    left = docker_client.containers.list(
        all=True, sparse=True, filters={"label": f"{LABEL_NODE}={docker_runtime.node_name}"}
    )
    assert left == []


def test_cleanup_removes_a_previous_lifes_containers(docker_client, test_images, node_name) -> None:
    mine = docker_client.containers.run(
        SIDECAR_IMAGE,
        ["sleep", "300"],
        detach=True,
        network_mode="none",
        labels={LABEL_NODE: node_name},
    )
    other = docker_client.containers.run(
        SIDECAR_IMAGE,
        ["sleep", "300"],
        detach=True,
        network_mode="none",
        labels={LABEL_NODE: node_name + "-other"},
    )
    try:
        rt = DockerRuntime(node_name=node_name, sidecar_image=SIDECAR_IMAGE)
        assert rt.cleanup() == [mine.name]
        ids = {c.id for c in docker_client.containers.list(all=True, sparse=True)}
        assert mine.id not in ids and other.id in ids
        rt.close()
    finally:
        for c in (mine, other):
            try:
                c.remove(force=True)
            except Exception:
                pass


# -- images: registry, digests, refusals -------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed_probe(docker_client, test_images) -> tuple[str, str]:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
    except OSError:
        unavailable(f"no registry answers on {REGISTRY}: run scripts/setup-docker.sh")
    repo = f"{REGISTRY}/v6nb-test/probe"
    image = docker_client.images.get(PROBE_IMAGE)
    image.tag(repo, "latest")
    docker_client.images.push(repo, tag="latest")
    digest = next(
        d.split("@", 1)[1]
        for d in docker_client.images.get(f"{repo}:latest").attrs["RepoDigests"]
        if d.startswith(repo + "@")
    )
    return f"{repo}:latest", digest


def test_pinned_digest_mismatch_is_not_allowed(docker_runtime, pushed_probe, tmp_path) -> None:
    ref, digest = pushed_probe
    wrong = "sha256:" + "0" * 64
    spec = dataclasses.replace(RuntimeContract().make_spec(tmp_path, ref, "echo"), digest=wrong)
    with pytest.raises(RuntimeRefusal) as info:
        docker_runtime.prepare(spec)
    assert info.value.status == RunStatus.NOT_ALLOWED
    assert info.value.reason == f"digest mismatch: expected {wrong}, got {digest}"


def test_pinned_digest_match_pulls_and_runs(
    docker_runtime, docker_client, pushed_probe, tmp_path
) -> None:
    ref, digest = pushed_probe
    docker_client.images.remove(ref)  # the node must pull it from the registry
    spec = dataclasses.replace(RuntimeContract().make_spec(tmp_path, ref, "echo"), digest=digest)
    docker_runtime.prepare(spec)
    outcome = docker_runtime.run(spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    by_digest = dataclasses.replace(
        spec, image=f"{REGISTRY}/v6nb-test/probe@{digest}", digest=None, run_id=2
    )
    docker_runtime.prepare(by_digest)
    assert docker_runtime.run(by_digest).status == RunStatus.COMPLETED


def test_pull_failure_is_reported(docker_runtime, pushed_probe, tmp_path) -> None:
    spec = RuntimeContract().make_spec(tmp_path, f"{REGISTRY}/v6nb-test/absent:1", "echo")
    with pytest.raises(RuntimeRefusal) as info:
        docker_runtime.prepare(spec)
    assert info.value.status == RunStatus.FAILED
    assert info.value.reason.startswith(f"pull failed: {REGISTRY}/v6nb-test/absent:1")


def test_missing_local_image_is_reported(docker_runtime, tmp_path) -> None:
    spec = RuntimeContract().make_spec(tmp_path, "v6nb-test/absent:1", "echo")
    with pytest.raises(RuntimeRefusal) as info:
        docker_runtime.prepare(spec)
    assert info.value.status == RunStatus.FAILED
    assert "not on this node's Docker engine" in info.value.reason
