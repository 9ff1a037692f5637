"""Fixtures every test directory shares: demo networks (server + 3 nodes on loopback) and a Docker
engine client. Helpers (processes, ports, waiting, service checks) are in ``tests.support``."""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.support import docker_engine

# A researcher client keeps key pins and the tasks it created in its state folder
# ($XDG_STATE_HOME/vantage6nb): never the real home's during tests, and a fresh one per test.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="v6nb-test-state-")


@pytest.fixture(autouse=True)
def _researcher_state(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def shared_demo_net():
    """A running demo network (3 organizations, a node each, process runtime) for the whole session.

    For tests that only read: they may create tasks and read results, but never stop a node,
    restart the server or change its data or settings (those take ``demo_net``).
    """
    from vantage6nb import demo

    with demo.start(nodes=3) as network:
        yield network


@pytest.fixture(scope="module")
def demo_net():
    """A demo network like ``shared_demo_net``, the module's own: its tests may stop and start
    nodes, restart the server or move data files (and put them back)."""
    from vantage6nb import demo

    with demo.start(nodes=3) as network:
        yield network


@pytest.fixture(scope="session")
def docker_client():
    """A Docker engine client (skips, or fails under ``V6NB_REQUIRE_ALL=1``, when none answers)."""
    client = docker_engine()
    yield client
    client.close()
