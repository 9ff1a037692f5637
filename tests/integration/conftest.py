"""A real demo network (server process + 3 node processes on loopback) for the integration tests."""

from __future__ import annotations

import pytest

from tests.docker_images import unavailable
from vantage6nb import demo


@pytest.fixture(scope="module")
def docker_client():
    """A Docker engine client (skips, or fails under ``V6NB_REQUIRE_ALL=1``, when none answers)."""
    try:
        import docker

        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:  # no engine: skip, unless every test must run
        unavailable(f"no Docker engine answers ({exc}): run scripts/setup-docker.sh")
    yield client
    client.close()


@pytest.fixture(scope="module")
def net():
    with demo.start(nodes=3) as network:
        yield network


@pytest.fixture
def client(net):
    return net.client()


@pytest.fixture
def org_ids(client):
    return client.organizations()["id"].tolist()
