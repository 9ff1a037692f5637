"""Shared fixtures: a free loopback port, and one real demo network (server + 3 nodes) per session."""

from __future__ import annotations

import pytest

from vantage6nb.demo import free_port as _free_port


@pytest.fixture
def free_port():
    """A function returning a TCP port on 127.0.0.1 that nothing listens on."""
    return _free_port


@pytest.fixture(scope="session")
def demo_network():
    """A running demo network (3 organizations, one node each, process runtime), shared by the session."""
    from vantage6nb import demo

    with demo.start(nodes=3) as net:
        yield net
