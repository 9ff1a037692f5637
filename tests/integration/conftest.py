"""A real demo network (server process + 3 node processes on loopback) for the integration tests."""

from __future__ import annotations

import pytest

from vantage6nb import demo


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
