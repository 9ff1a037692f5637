"""The Podman runtime (rootless): the shared runtime contract, the isolation probes, its own checks."""

# The isolation probes are the Docker runtime's own tests (imported from test_docker_runtime), run
# here with `docker_runtime` bound to a PodmanRuntime: one more parametrisation, not a second
# suite. The Podman service runs as the ordinary user v6nb-podman (scripts/setup-podman.sh); files
# it mounts live under a folder that user may traverse, as a node's own files are for a node
# running as that user.

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from node_app.runtimes.base import RuntimeRefusal
from node_app.runtimes.docker import LABEL_NODE, engine_answers
from node_app.runtimes.podman import (
    CGROUP_CONTROLLERS,
    CGROUP_ROOT,
    PodmanRuntime,
    cgroup_v2,
)
from tests.docker_images import ISOLATION_IMAGE, PROBE_IMAGE, build_test_images
from tests.support import unavailable, wait_for
from vantage6nb.common.errors import ConfigurationError
from vantage6nb.common.schemas import RunStatus

from .runtime_contract import RuntimeContract
from .test_docker_runtime import (  # noqa: F401 - collected here, against Podman
    _ProxyHandler,
    _UnixHTTPServer,
    host_tcp_server,
    probe_spec,
    run_probe,
    test_a_node_that_cannot_see_the_volume_uses_the_archive_api,
    test_container_sees_no_host_folders_of_the_node,
    test_cpu_quota_is_visible_in_the_cgroup,
    test_data_is_mounted_read_only,
    test_host_loopback_is_unreachable,
    test_memory_limit_ends_run_as_out_of_memory,
    test_only_loopback_interface,
    test_pids_limit_bounds_a_fork_bomb,
    test_proxy_is_reachable_through_the_sidecar,
    test_root_filesystem_is_read_only,
    test_runs_as_non_root_without_capabilities,
    test_side_file_beyond_the_cap_crashes_the_run_saying_which_limit,
    test_tmpfs_scratch_is_writable,
    test_writable_folders_are_capped,
)

pytestmark = pytest.mark.podman

REGISTRY = "127.0.0.1:5000"
PODMAN_USER = os.environ.get("V6NB_PODMAN_USER", "v6nb-podman")
REPO = Path(__file__).resolve().parents[2]


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PODMAN_USER)
    except KeyError:
        unavailable(f"no user {PODMAN_USER}: run scripts/setup-podman.sh")


@pytest.fixture(scope="session")
def podman_socket() -> Path:
    """The rootless Podman service's socket (skips, or fails under V6NB_REQUIRE_ALL=1, without one)."""
    if shutil.which("podman") is None:
        unavailable("podman is not installed: run scripts/setup-podman.sh")
    user = _service_user()
    sock = Path(
        os.environ.get("V6NB_PODMAN_SOCKET") or f"/run/user/{user.pw_uid}/podman/podman.sock"
    )
    if not engine_answers(base_url=f"unix://{sock}"):
        unavailable(f"no Podman service answers on {sock}: run scripts/setup-podman.sh")
    return sock


@pytest.fixture(scope="session")
def podman_client(podman_socket):
    import docker

    client = docker.DockerClient(base_url=f"unix://{podman_socket}", timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def podman_images(docker_client, podman_client, tmp_path_factory) -> dict[str, str]:
    """The probe and isolation images, built by Docker, pushed to the registry, pulled by Podman."""
    images = build_test_images(docker_client, tmp_path_factory.mktemp("podman-test-images"))
    for name in (PROBE_IMAGE, ISOLATION_IMAGE):
        repo = f"{REGISTRY}/{name.rsplit(':', 1)[0]}"
        docker_client.images.get(name).tag(repo, "latest")
        docker_client.images.push(repo, tag="latest")
        podman_client.images.pull(repo, tag="latest")
    return images


@pytest.fixture(scope="session")
def shared_base():
    """A folder the Podman user may traverse (0711), for everything a container mounts."""
    base = Path(tempfile.mkdtemp(prefix="v6nb-podman-test-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tmp_path(shared_base) -> Path:
    """pytest's tmp_path lives in a root-only folder: this one lives where the Podman user can reach."""
    path = Path(tempfile.mkdtemp(dir=shared_base))
    path.chmod(0o711)
    return path


@pytest.fixture
def node_name(request) -> str:
    return f"ptest-{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}"


def make_runtime(podman_socket: Path, node_name: str, **kwargs) -> PodmanRuntime:
    return PodmanRuntime(socket=podman_socket, node_name=node_name, registry=REGISTRY, **kwargs)


@pytest.fixture
def podman_runtime(podman_socket, podman_images, node_name):
    rt = make_runtime(podman_socket, node_name)
    yield rt
    rt.close()


@pytest.fixture
def docker_runtime(podman_runtime):
    """The name the imported isolation probes ask for: here, the Podman runtime."""
    return podman_runtime


@pytest.fixture
def proxy_socket(shared_base):
    path = Path(tempfile.mkdtemp(dir=shared_base)) / "proxy.sock"
    path.parent.chmod(0o711)
    server = _UnixHTTPServer(str(path), _ProxyHandler)
    os.chmod(path, 0o666)  # as the node's proxy does: the relay runs as another user
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


class TestPodmanRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self, podman_runtime):
        return podman_runtime

    @pytest.fixture
    def probe_image(self, podman_images) -> str:
        return podman_images["probe"]

    @pytest.fixture
    def setup_step(self) -> str:
        return "_create_algorithm"  # called inside run(), after the side-car, before the container


# -- rootless ----------------------------------------------------------------------------------------


def _subid_start(user: str) -> int:
    for line in Path("/etc/subuid").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == user:
            return int(rest.split(":")[0])
    raise AssertionError(f"{user} has no subuid range")


def _running(client, run_id: int, role: str) -> list:
    return client.containers.list(filters={"label": [f"v6nb.run={run_id}", f"v6nb.role={role}"]})


def _host_uids(container) -> list[int]:
    container.reload()
    status = Path(f"/proc/{container.attrs['State']['Pid']}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
    return [int(u) for u in line.split()[1:]]


def test_the_service_is_rootless(podman_client) -> None:
    info = podman_client.api.get(podman_client.api.base_url + "/v4.0.0/libpod/info").json()
    assert info["host"]["security"]["rootless"] is True
    assert info["host"]["idMappings"]["uidmap"][0]["host_id"] != 0


@pytest.mark.parametrize("role", ["algorithm", "relay"])
def test_containers_run_as_sub_ids_of_the_ordinary_user(
    podman_runtime, podman_client, proxy_socket, tmp_path, role
) -> None:
    """On the host, every process of a run is a sub-uid of the Podman user: never root, never a
    real user (the node's uid when the node is root, the user itself otherwise)."""
    spec = probe_spec(
        tmp_path, "sleep", proxy_socket=proxy_socket, image=PROBE_IMAGE, kwargs={"seconds": 60}
    )
    spec.run_id = 41
    podman_runtime.prepare(spec)
    worker = threading.Thread(target=podman_runtime.run, args=(spec,))
    worker.start()
    try:

        def started() -> list:
            found = _running(podman_client, 41, role)
            return found if found and 41 in podman_runtime.running() else []

        container = wait_for(started, 60, f"the run's {role} container")[0]
        uids = _host_uids(container)
        start = _subid_start(PODMAN_USER)
        assert all(start <= u < start + 65536 for u in uids), uids
    finally:
        podman_runtime.kill(41)
        worker.join(60)


# -- limits: on cgroup v1 through the delegated cgroups and the hook -------------------------------

v1_only = pytest.mark.skipif(cgroup_v2(), reason="cgroup v2: Podman applies the limits itself")


@v1_only
def test_limits_are_applied_through_the_run_cgroups(
    podman_runtime, podman_client, proxy_socket, tmp_path
) -> None:
    spec = probe_spec(
        tmp_path, "sleep", proxy_socket=proxy_socket, image=PROBE_IMAGE, kwargs={"seconds": 60}
    )
    spec.run_id = 43
    podman_runtime.prepare(spec)
    worker = threading.Thread(target=podman_runtime.run, args=(spec,))
    worker.start()
    try:

        def started() -> list:
            found = _running(podman_client, 43, "algorithm")
            return found if found and 43 in podman_runtime.running() else []

        container = wait_for(started, 60, "the run's container")[0]
        container.reload()
        pid = container.attrs["State"]["Pid"]
        groups = dict(
            line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        )
        key = container.attrs["Config"]["Hostname"]
        for ctl in CGROUP_CONTROLLERS:
            assert groups[ctl] == f"/{podman_runtime.cgroup_parent}/{key}", groups
        d = {c: CGROUP_ROOT / c / podman_runtime.cgroup_parent / key for c in CGROUP_CONTROLLERS}
        assert int((d["memory"] / "memory.limit_in_bytes").read_text()) == 512 * 2**20
        assert int((d["pids"] / "pids.max").read_text()) == 128
        assert int((d["cpu"] / "cpu.cfs_quota_us").read_text()) == 100_000
    finally:
        podman_runtime.kill(43)
        worker.join(60)


@v1_only
def test_without_the_hook_no_run_starts(podman_socket, podman_images, node_name, tmp_path) -> None:
    """Cgroups the hook does not know (another parent): the self-check sees no limit and refuses."""
    owner = os.stat(podman_socket)
    parent = f"v6nb-test-nohook-{secrets.token_hex(3)}"
    made = []
    try:
        for ctl in CGROUP_CONTROLLERS:
            d = CGROUP_ROOT / ctl / parent
            d.mkdir()
            made.append(d)
            for f in (d, d / "cgroup.procs"):
                os.chown(f, owner.st_uid, owner.st_gid)
        rt = make_runtime(podman_socket, node_name, cgroup_parent=parent)
        try:
            spec = RuntimeContract().make_spec(tmp_path, PROBE_IMAGE, "echo")
            rt.prepare(spec)
            outcome = rt.run(spec)
        finally:
            rt.close()
        assert outcome.status == RunStatus.FAILED, outcome
        assert "resource limits do not reach containers" in outcome.reason
        assert "setup-podman.sh" in outcome.reason
        assert not spec.output_file.exists()
    finally:
        for d in made:
            for sub in d.iterdir():
                if sub.is_dir():
                    with contextlib.suppress(OSError):
                        sub.rmdir()
            d.rmdir()


@v1_only
def test_missing_cgroup_delegation_is_a_configuration_error(podman_socket, node_name) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_runtime(podman_socket, node_name, cgroup_parent="v6nb-test-not-delegated")
    assert "setup-podman.sh" in str(info.value)
    assert "/sys/fs/cgroup/memory/v6nb-test-not-delegated" in str(info.value)


# -- what a run leaves behind ------------------------------------------------------------------------


def test_finished_runs_leave_no_containers_or_cgroups(
    podman_runtime, podman_client, proxy_socket, tmp_path
) -> None:
    outcome, _ = run_probe(
        podman_runtime, probe_spec(tmp_path, "interfaces", proxy_socket=proxy_socket)
    )
    assert outcome.status == RunStatus.COMPLETED
    left = podman_client.containers.list(
        all=True, filters={"label": f"{LABEL_NODE}={podman_runtime.instance}"}
    )
    assert left == []
    if not cgroup_v2():
        prefix = podman_runtime._key_prefix
        for ctl in CGROUP_CONTROLLERS:
            assert not list((CGROUP_ROOT / ctl / podman_runtime.cgroup_parent).glob(f"{prefix}*"))


def test_cleanup_removes_a_previous_lifes_containers(
    podman_socket, podman_client, podman_images, node_name
) -> None:
    base = f"{REGISTRY}/v6nb/base:latest"
    podman_client.images.pull(f"{REGISTRY}/v6nb/base", tag="latest")
    mine = podman_client.containers.run(
        base, ["sleep", "300"], detach=True, network_mode="none", labels={LABEL_NODE: node_name}
    )
    other = podman_client.containers.run(
        base,
        ["sleep", "300"],
        detach=True,
        network_mode="none",
        labels={LABEL_NODE: node_name + "-other"},
    )
    try:
        rt = make_runtime(podman_socket, node_name)
        try:
            assert rt.cleanup() == [mine.name]
        finally:
            rt.close()
        ids = {c.id for c in podman_client.containers.list(all=True)}
        assert mine.id not in ids and other.id in ids
    finally:
        for c in (mine, other):
            with contextlib.suppress(Exception):
                c.remove(force=True)


# -- images: registry, digests, refusals -------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed_probe(podman_images) -> tuple[str, str]:
    """The probe in the registry and the digest it serves there (asked of the registry itself)."""
    from vantage6nb.demo._docker import registry_digest

    digest = registry_digest(REGISTRY, "v6nb-test/probe", "latest")
    assert digest is not None
    return f"{REGISTRY}/v6nb-test/probe:latest", digest


def test_pinned_digest_mismatch_is_not_allowed(podman_runtime, pushed_probe, tmp_path) -> None:
    ref, digest = pushed_probe
    wrong = "sha256:" + "0" * 64
    spec = dataclasses.replace(RuntimeContract().make_spec(tmp_path, ref, "echo"), digest=wrong)
    with pytest.raises(RuntimeRefusal) as info:
        podman_runtime.prepare(spec)
    assert info.value.status == RunStatus.NOT_ALLOWED
    assert info.value.reason == f"digest mismatch: expected {wrong}, got {digest}"


def test_pinned_digest_match_pulls_and_runs(
    podman_runtime, podman_client, pushed_probe, tmp_path
) -> None:
    ref, digest = pushed_probe
    podman_client.images.remove(ref, force=True)  # the node must pull it from the registry
    spec = dataclasses.replace(
        RuntimeContract().make_spec(tmp_path, "v6nb-test/probe", "echo"), digest=digest
    )
    podman_runtime.prepare(spec)  # the short name, resolved in the node's registry, at the pin
    outcome = podman_runtime.run(spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    by_digest = dataclasses.replace(
        spec, image=f"{REGISTRY}/v6nb-test/probe@{digest}", digest=None, run_id=2
    )
    podman_runtime.prepare(by_digest)
    assert podman_runtime.run(by_digest).status == RunStatus.COMPLETED


def test_pull_failure_is_reported(podman_runtime, tmp_path) -> None:
    spec = RuntimeContract().make_spec(tmp_path, f"{REGISTRY}/v6nb-test/absent:1", "echo")
    with pytest.raises(RuntimeRefusal) as info:
        podman_runtime.prepare(spec)
    assert info.value.status == RunStatus.FAILED
    assert info.value.reason.startswith(f"pull failed: {REGISTRY}/v6nb-test/absent:1")


# -- the node as an ordinary user, and the node's configuration ---------------------------------------

_AS_USER = """
import json, sys
from pathlib import Path
from node_app.runtimes.base import Limits, RunSpec
from node_app.runtimes.podman import PodmanRuntime

sock, work = Path(sys.argv[1]), Path(sys.argv[2])
rt = PodmanRuntime(socket=sock, node_name="as-user", registry=sys.argv[3], start_service=True)
seen = {"service_started": rt._service is not None}
try:
    for i, (image, method) in enumerate([("v6nb-test/probe", "echo"), ("v6nb-test/isolation", "identity")]):
        d = work / f"run-{i}"
        d.mkdir()
        (d / "input.json").write_text(json.dumps({"method": method, "args": [], "kwargs": {}}))
        (d / "token").write_text("token")
        spec = RunSpec(
            run_id=i + 1, task_id=1, image=image, workdir=d, input_file=d / "input.json",
            output_file=d / "output.json", token_file=d / "token", tmp_dir=d / "tmp",
            databases=[], proxy_host="http://127.0.0.1", proxy_port=9,
            limits=Limits(memory_mb=256, cpus=1, pids=64, timeout_s=60),
        )
        rt.prepare(spec)
        out = rt.run(spec)
        result = json.loads(spec.output_file.read_text()) if spec.output_file.exists() else None
        seen[method] = [out.status.value, out.reason, result]
finally:
    rt.close()
seen["service_stopped"] = rt._service is None or rt._service.poll() is not None
print(json.dumps(seen))
"""
# what the node's code imports from outside the standard library (the docker SDK and its needs)
_THIRD_PARTY = ("docker", "requests", "urllib3", "idna", "certifi", "charset_normalizer")


def _user_python() -> str:
    """An interpreter the Podman user may run (this one may live in root's home)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        path = Path(candidate).resolve()
        if all(p.stat().st_mode & 0o001 for p in [path, *path.parents]):
            return str(path)
    pytest.skip("no Python interpreter that the Podman user may run")


def _copy_sources(dest: Path) -> None:
    """The node's packages and the third-party ones they import, for another user's interpreter."""
    import importlib.util

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("node_app", "vantage6nb"):
        shutil.copytree(REPO / pkg, dest / pkg, ignore=ignore)
    for name in _THIRD_PARTY:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, dest / name, ignore=ignore)
            for compiled in origin.parent.parent.glob("*__mypyc*.so"):  # charset_normalizer's
                shutil.copy(compiled, dest / compiled.name)
        else:
            shutil.copy(origin, dest / origin.name)


def test_a_node_running_as_the_ordinary_user(podman_socket, podman_images, shared_base) -> None:
    """The production shape: the node is the Podman user itself, and starts its own service."""
    user = _service_user()
    if os.geteuid() != 0 and os.geteuid() != user.pw_uid:
        pytest.skip("needs root (to become the Podman user) or to be that user")
    work = Path(tempfile.mkdtemp(dir=shared_base))
    src = work / "src"
    _copy_sources(src)
    for p in [work, *work.rglob("*")]:
        shutil.chown(p, user.pw_name, user.pw_name)
    sock = f"/run/user/{user.pw_uid}/podman/v6nb-test-{secrets.token_hex(4)}.sock"
    env = {
        "HOME": user.pw_dir,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "XDG_RUNTIME_DIR": f"/run/user/{user.pw_uid}",
        "PYTHONPATH": str(src),
        "LANG": "C.UTF-8",
    }
    cmd = [_user_python(), "-c", _AS_USER, sock, str(work), REGISTRY]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", user.pw_name, "--", *cmd]
    done = subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["service_started"] is True and seen["service_stopped"] is True
    assert seen["echo"][0] == "completed", seen
    assert seen["echo"][2] == {"args": [], "kwargs": {}}
    status, reason, identity = seen["identity"]
    assert status == "completed", reason
    # inside, the node's own uid (not root); on the host a sub-uid (see the test above)
    assert identity["uid"] == user.pw_uid and identity["uid"] != 0
    assert int(identity["CapEff"], 16) == 0 and identity["NoNewPrivs"] == "1"
    assert not Path(sock).exists()


def test_node_config_selects_podman(podman_socket, podman_images, tmp_path) -> None:
    from node_app.config import load_config
    from node_app.runtimes import make_runtime as from_config

    cfg = load_config(
        None,
        environ={"V6NB_NODE_PODMAN_SOCKET": str(podman_socket)},
        overrides={"runtime": "podman", "name": "cfg", "data_dir": str(tmp_path / "data")},
    )
    rt = from_config(cfg)
    try:
        assert rt.name == "podman" and rt.isolated
        assert isinstance(rt, PodmanRuntime) and rt.socket == podman_socket
        assert rt._service is None  # one already answers: the node starts none
    finally:
        rt.close()


def test_unknown_socket_as_root_says_what_to_do(tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("as root the node never starts a (rootful) Podman itself")
    with pytest.raises(ConfigurationError) as info:
        PodmanRuntime(socket=tmp_path / "none.sock", start_service=True)
    assert "podman system service" in str(info.value) and "setup-podman.sh" in str(info.value)


def test_a_docker_engine_socket_is_not_taken_for_podman(docker_client, node_name) -> None:
    """Only a rootless Podman will do: another engine's socket is refused at start."""
    with pytest.raises(ConfigurationError) as info:
        PodmanRuntime(socket="/var/run/docker.sock", node_name=node_name)
    assert "is not the socket of a Podman service" in str(info.value)


def test_the_container_cannot_reach_the_podman_socket(
    podman_runtime, podman_socket, proxy_socket, tmp_path
) -> None:
    """The service's socket is never mounted: an algorithm cannot ask Podman for anything."""
    spec = probe_spec(
        tmp_path, "write_file", proxy_socket=proxy_socket, kwargs={"path": str(podman_socket)}
    )
    outcome, seen = run_probe(podman_runtime, spec)
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert seen["written"] is False
    with socket.socket(socket.AF_UNIX) as s:  # while from the host it answers
        s.connect(str(podman_socket))


# -- the demo network on Podman (`v6nb demo --runtime podman`) ---------------------------------------


@pytest.mark.integration
def test_the_demo_runs_on_podman(podman_socket, podman_client) -> None:
    import pandas as pd

    from vantage6nb import demo
    from vantage6nb.analysis import summary

    with demo.start(nodes=2, runtime="podman") as net:
        pooled = pd.concat([pd.read_csv(p) for p in net.datasets.values()], ignore_index=True)
        frame = summary(net.client())
        assert int(frame.loc["body_mass_g", "count"]) == int(pooled["body_mass_g"].count())
        assert frame.loc["body_mass_g", "mean"] == pytest.approx(pooled["body_mass_g"].mean())
        root = str(Path(net.workdir).resolve())
    left = [
        c
        for c in podman_client.containers.list(all=True, sparse=True)
        if root in (c.attrs.get("Labels") or {}).get(LABEL_NODE, "")
    ]
    assert left == [], "containers left behind after the demo stopped"
