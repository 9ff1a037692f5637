"""QA regression: JSON nested deeper than the decoder's limit is a 400 from the proxy, not a dropped connection."""

from __future__ import annotations

import pytest
import requests

from node_app.proxy import AlgorithmProxy, RunContext
from node_app.server_client import ServerClient

from .harness import free_port


@pytest.fixture
def proxy():
    client = ServerClient(f"http://127.0.0.1:{free_port()}", "key", timeout=2)
    p = AlgorithmProxy(client)
    p.start()
    p.register(
        "good-token",
        RunContext(run_id=1, task_id=2, collaboration_id=3, organization_id=4, image="v6nb/x"),
    )
    yield p
    p.stop()


def test_deeply_nested_json_is_400(proxy: AlgorithmProxy) -> None:
    s = requests.Session()
    s.trust_env = False
    resp = s.post(
        f"http://127.0.0.1:{proxy.port}/task",
        data=b"[" * 100_000 + b"]" * 100_000,
        headers={"Authorization": "Bearer good-token", "Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "bad_request"
    # the proxy still answers afterwards
    assert s.get(f"http://127.0.0.1:{proxy.port}/nowhere", timeout=10).status_code in (401, 404)
