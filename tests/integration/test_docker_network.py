"""The demo network on the Docker runtime: real tasks in locked-down containers, images pinned from the registry."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.integration.helpers import assert_federated_equals_pooled
from tests.support import wait_for
from vantage6nb import demo
from vantage6nb.algorithms import IMAGES
from vantage6nb.errors import TaskFailed

pytestmark = [pytest.mark.docker, pytest.mark.integration]

DIAG = "v6nb/diagnostics"
WRONG_DIGEST = "sha256:" + "0" * 64
# Under this limit the diagnostics wrapper runs, while importing pandas (summary) does not fit.
TINY_MEMORY_MB = 32


def _containers(client, net, run_id: int | None = None) -> list:
    """Containers of this demo network (its nodes label them with their data folder), any state."""
    # a run's containers are named for it (a warm one from its handoff on; its labels say spare)
    filters = {"label": "v6nb.node"} if run_id is None else {"name": f"-run{run_id}-"}
    root = str(Path(net.workdir).resolve())
    # sparse: a container removed while listing is simply not there (no inspect that can 404)
    return [
        c
        for c in client.containers.list(all=True, sparse=True, filters=filters)
        if root in (c.attrs.get("Labels") or {}).get("v6nb.node", "")
    ]


@pytest.fixture(scope="module")
def docker_net(docker_client):
    with demo.start(nodes=3, runtime="docker") as network:
        yield network
    assert _containers(docker_client, network) == [], "containers left behind after net.stop()"


@pytest.fixture(scope="module")
def client(docker_net):
    return docker_net.client()


@pytest.fixture(scope="module")
def org_ids(client):
    return client.organizations()["id"].tolist()


def test_nodes_pin_the_registry_digests(docker_net):
    import yaml

    for node in docker_net._nodes.values():
        cfg = yaml.safe_load(Path(node.config).read_text())
        assert cfg["runtime"] == "docker"
        assert cfg["image_registry"] == "127.0.0.1:5000"
        assert set(cfg["image_digests"]) == set(IMAGES)  # every shipped image, pinned
        assert all(d.startswith("sha256:") for d in cfg["image_digests"].values())


def test_summary_and_crosstab_equal_pandas_on_pooled_data(docker_net, client):
    pooled = pd.concat([pd.read_csv(p) for p in docker_net.datasets.values()], ignore_index=True)
    assert_federated_equals_pooled(client, pooled)


def test_a_direct_call_of_a_federated_part_is_refused_by_the_image_label(client, org_ids):
    from vantage6nb.errors import DisclosureRefused

    task = client.task.create(
        organizations=org_ids[:1],
        image="v6nb/crosstab",
        method="crosstab_partial",
        kwargs={"row": "species", "col": "island"},
        databases=["default"],
    )
    with pytest.raises(DisclosureRefused) as caught:
        task.wait(timeout=120)
    assert caught.value.rule == "direct_part" and "crosstab_partial" in str(caught.value)


def test_algorithm_sees_a_non_root_user_and_only_loopback(client, org_ids):
    task = client.task.create(organizations=org_ids[:1], image=DIAG, method="runtime_info")
    (info,) = task.results(timeout=120)
    assert info["uid"] != 0
    assert info["interfaces"] == ["lo"]
    assert info["root_writable"] is False


def test_kill_stops_the_containers(docker_client, docker_net, client, org_ids):
    task = client.task.create(
        organizations=org_ids, image=DIAG, method="sleep", kwargs={"seconds": 120}
    )
    wait_for(lambda: set(task.status()["status"]) == {"active"}, 120, "all runs active")
    run_ids = [int(r) for r in task.status()["run_id"]]
    # a run turns active just before its container starts
    wait_for(
        lambda: all(_containers(docker_client, docker_net, rid) for rid in run_ids),
        60,
        "a container per run",
    )
    task.kill()
    task.wait(timeout=60, raise_on_failure=False)
    assert set(task.status()["status"]) == {"killed"}
    try:
        wait_for(
            lambda: not any(_containers(docker_client, docker_net, rid) for rid in run_ids),
            60,
            "the killed runs' containers to be removed",
        )
    except AssertionError as exc:  # say what the nodes did: the CI log is all there is
        logs = "\n".join(f"--- {n}\n{docker_net.node_log(n, 60)}" for n in docker_net.node_names)
        raise AssertionError(f"{exc}\n{logs}") from None


def test_image_outside_the_policy_is_not_allowed(client, org_ids):
    task = client.task.create(organizations=org_ids[:1], image="evil/miner", method="echo")
    with pytest.raises(TaskFailed, match="not allowed"):
        task.wait(timeout=60)
    row = task.status().iloc[0]
    assert row["status"] == "not allowed"
    assert "evil/miner" in row["reason"] and "allowed_images" in row["reason"]


def test_crash_shows_its_log_tail(client, org_ids):
    task = client.task.create(
        organizations=org_ids[:1], image=DIAG, method="crash", kwargs={"message": "boom-docker-7"}
    )
    with pytest.raises(TaskFailed) as info:
        task.wait(timeout=120)
    row = task.status().iloc[0]
    assert row["status"] == "crashed" and "boom-docker-7" in row["reason"]
    # the container's own output, as the log tail under the reason
    assert "| RuntimeError: boom-docker-7" in str(info.value)


# -- a one-node network with a tiny memory limit and a wrong pin ------------------------------------


@pytest.fixture(scope="module")
def strict_net(docker_client):
    from vantage6nb.demo._docker import docker_node_settings

    digests = docker_node_settings()["image_digests"]
    settings = {
        "limits": {"memory_mb": TINY_MEMORY_MB, "cpus": 1.0, "pids": 128, "timeout_s": 300},
        "image_digests": {**digests, "v6nb/crosstab": WRONG_DIGEST},
        # its operator lets the summary's part be called directly (to see the memory limit act)
        "disclosure": {"direct_parts": ["v6nb/summary"]},
    }
    with demo.start(nodes=1, runtime="docker", node_settings=settings) as network:
        yield network
    assert _containers(docker_client, network) == [], "containers left behind after net.stop()"


def test_pinned_digest_mismatch_is_not_allowed(strict_net):
    client = strict_net.client()
    orgs = client.organizations()["id"].tolist()
    task = client.task.create(
        # a valid request (it passes the client's check): the node refuses the image's digest
        organizations=orgs,
        image="v6nb/crosstab",
        method="crosstab",
        kwargs={"row": "species", "col": "island"},
    )
    task.wait(timeout=120, raise_on_failure=False)
    row = task.status().iloc[0]
    assert row["status"] == "not allowed"
    assert "digest mismatch" in row["reason"] and WRONG_DIGEST in row["reason"]


def test_exceeding_the_memory_limit_is_out_of_memory(strict_net):
    client = strict_net.client()
    orgs = client.organizations()["id"].tolist()
    # the wrapper alone fits: the limit is in force, not a broken node
    assert client.task.create(organizations=orgs, image=DIAG, method="echo").results(timeout=120)
    task = client.task.create(
        organizations=orgs, image="v6nb/summary", method="summary_partial", databases=["default"]
    )
    task.wait(timeout=120, raise_on_failure=False)
    row = task.status().iloc[0]
    assert row["status"] == "crashed"
    assert "out of memory" in row["reason"] and f"{TINY_MEMORY_MB} MB" in row["reason"]


def test_no_engine_is_a_configuration_error_saying_what_to_run(monkeypatch, tmp_path):
    from vantage6nb.errors import ConfigurationError

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(ConfigurationError, match="scripts/setup-docker.sh"):
        demo.start(nodes=1, runtime="docker", workdir=tmp_path / "net")
    assert not (tmp_path / "net").exists()  # refused before anything was started or written
