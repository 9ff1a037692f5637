"""The way back out of a container: what a hostile algorithm's output can do, through a real node.

A probe algorithm in the Docker runtime, on a demo network (real server and node processes), tries
each way an output can hurt the node; every test fails when its protection is removed
(docs/security.md, "What an algorithm can do to its node").
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.docker_images import build_test_images
from vantage6nb import demo

pytestmark = [pytest.mark.docker, pytest.mark.integration]

CAP_MB = 8
SYNC_S = 1.0  # the node re-syncs open runs this often: a wedged run would be started again


@pytest.fixture(scope="module")
def images(docker_client, tmp_path_factory):
    return build_test_images(docker_client, tmp_path_factory.mktemp("output-images"))


@pytest.fixture(scope="module")
def probe_net(images):
    """A two-node Docker demo network that runs the hostile probe images (and re-syncs often)."""
    settings = {
        "allowed_images": ["v6nb/*", "v6nb-test/*"],
        "image_registry": "",  # the probe images are local
        "image_digests": {},
        "sync_interval_s": SYNC_S,
        "limits": {"memory_mb": 512, "timeout_s": 120, "output_mb": CAP_MB},
        "disclosure": {"untyped_images": ["v6nb-test/*"]},  # the probes write plain JSON
    }
    with demo.start(nodes=2, runtime="docker", node_settings=settings) as network:
        yield network


@pytest.fixture(scope="module")
def client(probe_net):
    return probe_net.client()


@pytest.fixture(scope="module")
def first_org(client):
    return int(client.organizations()["id"].iloc[0])


def _run_once(client, org: int, image: str, method: str, **kwargs):
    task = client.task.create(organizations=[org], image=image, method=method, kwargs=kwargs)
    task.wait(timeout=120, raise_on_failure=False)
    row = task.status().iloc[0]
    return task, row


def _stored(probe_net, run_id: int) -> str:
    """The run as the server stores and serves it (root's view), as text."""
    import json

    return json.dumps(probe_net.admin().get(f"/run/{run_id}"))


def _secrets(probe_net) -> dict[str, str]:
    """Files of the node's machine a symlinked output could point at, and a line only each holds."""
    node = next(iter(probe_net._nodes.values()))
    node_cfg = yaml.safe_load(Path(node.config).read_text())
    secret_key = Path(probe_net.workdir) / "server" / "data" / "secret_key"  # signs every token
    other_data = list(probe_net.datasets.values())[-1]  # another organization's data file
    return {
        str(node.config): node_cfg["api_key"],
        str(secret_key): secret_key.read_text().strip(),
        str(other_data): Path(other_data).read_text().splitlines()[1],
        "/etc/shadow": "root:",
    }


def test_symlinked_output_is_refused_and_nothing_is_uploaded(probe_net, client, first_org, images):
    for target, secret in _secrets(probe_net).items():
        task, row = _run_once(client, first_org, images["probe"], "symlink_output", target=target)
        assert row["status"] == "failed", (target, row.to_dict())
        assert "symbolic link" in row["reason"] and "nothing was uploaded" in row["reason"]
        stored = _stored(probe_net, int(row["run_id"]))
        assert secret not in stored, target
        assert target not in row["reason"]


def test_side_file_beyond_the_cap_fails_and_the_node_disk_is_untouched(
    probe_net, client, first_org, images
):
    disk = Path(probe_net.workdir)
    before = shutil.disk_usage(disk).used
    task, row = _run_once(
        client, first_org, images["isolation"], "fill", mb=40 * CAP_MB, catch=False
    )
    assert row["status"] == "crashed", row.to_dict()
    assert "No space left on device" in row["reason"] and "limits.output_mb" in row["reason"]
    # 320 MiB were asked for: at most the cap was written, and in memory
    assert shutil.disk_usage(disk).used - before < 10 * CAP_MB * 2**20


def test_sparse_output_beyond_the_limit_is_refused_unread(probe_net, client, first_org, images):
    task, row = _run_once(client, first_org, images["probe"], "sparse_output", gib=8)
    assert row["status"] == "failed", row.to_dict()
    assert "8192.0 MiB" in row["reason"] and f"limits.output_mb = {CAP_MB}" in row["reason"]
    assert '"x": 1' not in _stored(probe_net, int(row["run_id"]))


def test_output_the_server_refuses_fails_at_once_and_is_not_run_again(
    probe_net, client, first_org, images
):
    task, row = _run_once(client, first_org, images["probe"], "raw_output", text='{"a": "x\x00y"}')
    assert row["status"] == "failed", row.to_dict()
    assert "refused this run's final update" in row["reason"] and "NUL" in row["reason"]
    run_id = int(row["run_id"])
    # Nothing to wait for (the point is that nothing happens): three re-sync periods pass.
    time.sleep(3 * SYNC_S + 0.5)
    log = "\n".join(probe_net.node_log(name, 5000) for name in probe_net.node_names)
    assert log.count(f"run {run_id} (task") == 1, log  # started exactly once
    assert f"run {run_id} was" not in log  # never "active in a previous life of this node"
    assert task.status().iloc[0]["status"] == "failed"
