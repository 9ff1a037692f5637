"""A root node reads a rootless Podman run's volume through its side-car: the same refusals, no archive API."""

# Rootless Podman mounts a run's tmpfs volume in its own mount namespace. A root node reads it
# through the side-car's (/proc/<pid>/root) instead of the archive API; there an absolute link
# the algorithm leaves resolves against the node's root, so every refusal of the output is
# checked on this path against a real side-car, with the hostile layout made inside it by the
# algorithm's user. The archive API, a node's last resort, is checked here too (a node without
# root reads through its reader in the user's namespaces: test_podman_reader.py).

# ruff: noqa: F811 - the Podman fixtures, imported by name, are arguments of the tests

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from node_app.runtimes.base import RuntimeRefusal
from node_app.runtimes.docker_mounts import IO_DIR, RunVolume
from node_app.runtimes.docker_sidecar import Sidecar, remove
from node_app.runtimes.podman import _host_ids
from tests.docker_images import PROBE_IMAGE
from vantage6nb.common.schemas import RunStatus

from .test_docker_runtime import probe_spec, run_probe
from .test_podman_runtime import (  # noqa: F401 - the Podman fixtures
    docker_runtime,
    node_name,
    podman_client,
    podman_images,
    podman_runtime,
    podman_socket,
    proxy_socket,
    shared_base,
    tmp_path,
)

pytestmark = pytest.mark.podman

OUT = f"{IO_DIR}/output"
LIMIT = 1 << 20


@pytest.fixture
def sidecar(podman_runtime):
    """A run's side-car holding its volume (input and an empty output folder written)."""
    if os.geteuid() != 0:
        pytest.skip("only a root node reads the volume through the side-car")
    name = f"v6nb-{podman_runtime._slug}-outtest-{secrets.token_hex(3)}"
    car = podman_runtime._start_sidecar(None, name, None, 4)
    try:
        car.volume.write_inputs(car.container, {"input": b"{}", "token": b"t"})
        yield car
    finally:
        remove([car])


def as_algorithm(runtime, car: Sidecar, script: str) -> None:
    """Run ``script`` in the side-car as the algorithm's user (who owns the run volume)."""
    uid, gid = runtime._user_ids()
    result = car.container.exec_run(["sh", "-c", script], user=f"{uid}:{gid}")
    assert result.exit_code == 0, result.output


def test_the_volume_is_read_through_the_side_car(podman_runtime, sidecar, tmp_path) -> None:
    assert sidecar.volume._proc is not None  # the new path, not the archive API
    as_algorithm(podman_runtime, sidecar, f"printf '{{\"ok\": 1}}' > {OUT}/output.json")
    dest = tmp_path / "taken.json"
    sidecar.volume.take_output(sidecar.container, "output.json", dest, limit=LIMIT)
    assert dest.read_text() == '{"ok": 1}'
    assert dest.stat().st_mode & 0o777 == 0o600
    assert sidecar.volume.read_small(sidecar.container, "token") == b"t"
    assert sidecar.volume.read_small(sidecar.container, "missing") is None


@pytest.mark.parametrize(
    ("layout", "says"),
    [
        ("ln -s {secret} {out}/output.json", "symbolic link"),
        ("rmdir {out} && ln -s {folder} {out}", None),  # the output folder: a node folder
        ("echo '{{}}' > {out}/a && ln {out}/a {out}/output.json", "hard link"),
        ("mkfifo {out}/output.json", "named pipe"),
        ("mkdir {out}/output.json", "a folder"),
        ("echo '{{}}' > {out}/output.json && truncate -s 8G {out}/output.json", "8192.0 MiB"),
    ],
    ids=["file-link", "folder-link", "hard-link", "fifo", "folder", "sparse-over-limit"],
)
def test_what_the_algorithm_leaves_is_refused_on_this_path(
    podman_runtime,
    sidecar,
    tmp_path,
    layout,
    says,
) -> None:
    folder = tmp_path / "node-folder"
    folder.mkdir()
    secret = folder / "output.json"
    secret.write_text('{"node": "secret-7d1"}')
    as_algorithm(podman_runtime, sidecar, layout.format(secret=secret, folder=folder, out=OUT))
    dest = tmp_path / "taken.json"
    if says is None:  # a link in place of the folder: as if there were no output
        with pytest.raises(FileNotFoundError):
            sidecar.volume.take_output(sidecar.container, "output.json", dest, limit=LIMIT)
    else:
        with pytest.raises(RuntimeRefusal) as refused:
            sidecar.volume.take_output(sidecar.container, "output.json", dest, limit=LIMIT)
        assert refused.value.status == RunStatus.FAILED
        assert says in refused.value.reason and "nothing was uploaded" in refused.value.reason
    assert not dest.exists()
    assert not list(tmp_path.glob("*.partial"))


def test_a_small_read_follows_no_link(podman_runtime, sidecar, tmp_path) -> None:
    secret = tmp_path / "exit-code"
    secret.write_text("0")
    as_algorithm(podman_runtime, sidecar, f"ln -s {secret} {IO_DIR}/.exit")
    assert sidecar.volume.read_small(sidecar.container, ".exit") is None


def test_only_the_run_volume_of_a_live_side_car_is_read(podman_runtime, sidecar) -> None:
    sidecar.container.reload()
    pid = int(sidecar.container.attrs["State"]["Pid"])
    owner = _host_ids(pid, podman_runtime._user_ids())
    assert owner is not None and owner != podman_runtime._user_ids()  # rootless: mapped
    other = RunVolume.existing(podman_runtime.client, sidecar.volume.name, owner=owner)
    assert not other.read_via(os.getpid(), owner)  # no run volume in the node's own namespace
    assert not other.read_via(pid, (owner[0] + 1, owner[1]))  # a folder of another owner
    assert other.read_via(pid, owner)
    sidecar.container.kill()
    sidecar.container.wait(timeout=30)
    # the side-car ended: its pid may be another process's now, and is never read through
    with pytest.raises(FileNotFoundError):
        other.take_output(sidecar.container, "output.json", Path("/nonexistent/x"), limit=LIMIT)
    assert other.read_small(sidecar.container, "token") is None
    other.remove()  # closes its descriptor (the volume goes with the fixture's side-car)


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "says"),
    [
        ("echo", {"x": 1}, RunStatus.COMPLETED, ""),
        ("symlink_output", {"target": "/etc/passwd"}, RunStatus.FAILED, "symbolic link"),
        ("sparse_output", {"gib": 8}, RunStatus.FAILED, "8192.0 MiB"),
    ],
    ids=["completes", "symlink-refused", "sparse-refused"],
)
def test_a_node_that_cannot_read_through_the_side_car_uses_the_archive_api(
    docker_runtime,
    proxy_socket,
    tmp_path,
    monkeypatch,
    method,
    kwargs,
    status,
    says,
) -> None:
    """The path a node without root takes on Podman, checked the same way."""
    monkeypatch.setattr(RunVolume, "read_via", lambda self, pid, owner: False)
    spec = probe_spec(tmp_path, method, proxy_socket=proxy_socket, image=PROBE_IMAGE, kwargs=kwargs)
    outcome, seen = run_probe(docker_runtime, spec)
    assert outcome.status == status, outcome
    assert says in outcome.reason
    if status == RunStatus.COMPLETED:
        assert seen == {"args": [], "kwargs": kwargs}
    else:
        assert not spec.output_file.exists()
