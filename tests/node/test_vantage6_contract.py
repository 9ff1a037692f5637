"""The vantage6 algorithm contract as vantage6's own tools read it (the real vantage6-algorithm-tools,
in their venv): the encoded environment, the container token, and every request their
AlgorithmClient makes, answered by our proxy."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import requests

from node_app.proxy import AlgorithmProxy, RunContext
from node_app.runtimes.base import DatabaseMount, RunSpec
from node_app.runtimes.process import algorithm_environment
from node_app.server_client import ServerClient
from server_app.tokens import TokenService
from tests.data.v6_algorithms.tools import tools_dir
from tests.support import free_port
from vantage6nb.common import contract


def v6_python(code: str, *, env: dict[str, str] | None = None) -> str:
    python = tools_dir() / "venv" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_vantage6_decodes_the_environment_we_encode(tmp_path: Path) -> None:
    spec = RunSpec(
        run_id=1,
        task_id=2,
        image="v6/x",
        workdir=tmp_path,
        input_file=tmp_path / "input.json",
        output_file=tmp_path / "output.json",
        token_file=tmp_path / "token",
        tmp_dir=tmp_path / "tmp",
        databases=[DatabaseMount("default", "/data/ünïcode x.csv", "csv", "SELECT 1")],
        proxy_host="http://127.0.0.1",
        proxy_port=4321,
        extra_env={"MY_PRIVACY_SETTING": "5"},
    )
    env = algorithm_environment(spec, base={"PATH": "/usr/bin:/bin"})
    code = (
        "import json, os\n"
        "from vantage6.algorithm.tools.wrap import _decode_env_vars\n"
        "_decode_env_vars()\n"
        "print(json.dumps(dict(os.environ)))\n"
    )
    theirs = json.loads(v6_python(code, env=env))
    ours = contract.decode_environment(dict(env))
    for name in (
        "INPUT_FILE",
        "HOST",
        "PORT",
        "USER_REQUESTED_DATABASE_LABELS",
        "DEFAULT_DATABASE_URI",
        "DEFAULT_DATABASE_TYPE",
        "DEFAULT_DB_PARAM_QUERY",
        "MY_PRIVACY_SETTING",
        "PATH",
    ):
        assert theirs[name] == ours[name], name
    assert ours["DEFAULT_DATABASE_URI"] == "/data/ünïcode x.csv" and ours["PORT"] == "4321"
    assert ours["MY_PRIVACY_SETTING"] == "5" and ours["PATH"] == "/usr/bin:/bin"
    # once decoded, our own readers take the values as they are
    assert contract.read_environment(ours, "INPUT_FILE") == str(spec.input_file)


def test_container_token_is_the_jwt_vantage6_decodes() -> None:
    tokens = TokenService("s" * 40, access_minutes=5, refresh_hours=1)
    claims = {
        "sub": 7,
        "type": "container",
        "org": 3,
        "run_id": 11,
        "task_id": 5,
        "node_id": 7,
        "collaboration_id": 2,
        "job_id": 5,
        "image": "v6test/avg",
        "databases": [{"label": "default"}],
    }
    token = tokens.issue(claims, kind="access")
    code = (
        "import json, sys\n"
        "from vantage6.algorithm.client import AlgorithmClient\n"
        "from vantage6.algorithm.tools.decorators import _extract_token_payload\n"
        f"c = AlgorithmClient(token={token!r}, host='http://127.0.0.1', port=1, path='')\n"
        "print(json.dumps([c.image, c.databases, c.node_id, c.collaboration_id,\n"
        f"    c.organization_id, _extract_token_payload({token!r})['task_id']]))\n"
    )
    assert json.loads(v6_python(code)) == ["v6test/avg", [{"label": "default"}], 7, 2, 3, 5]
    verified = tokens.verify(token)  # our own checks see the claims they always saw
    assert {k: verified[k] for k in claims} == claims
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(Exception, match="Invalid token"):
        tokens.verify(forged)
    with pytest.raises(Exception, match="not an refresh token"):
        tokens.verify(token, kind="refresh")


@pytest.fixture
def proxy():
    client = ServerClient(f"http://127.0.0.1:{free_port()}", "key", timeout=2)  # nobody listens
    p = AlgorithmProxy(client)
    p.start()
    p.register(
        "tok",
        RunContext(run_id=1, task_id=2, collaboration_id=3, organization_id=4, image="v6/x"),
    )
    yield p
    p.stop()


def _client_requests() -> list[tuple[str, str]]:
    """(method, path) of every request in the installed AlgorithmClient (and what it inherits)."""
    root = tools_dir() / "venv" / "lib"
    (pkg,) = root.glob("python3*/site-packages/vantage6")
    source = (pkg / "algorithm" / "client" / "__init__.py").read_text()
    source += (pkg / "common" / "client" / "client_base.py").read_text()
    source += (pkg / "common" / "client" / "blob_storage.py").read_text()
    found = set()
    for m in re.finditer(
        r'request(?:_func)?\(\s*(?:endpoint=)?f?"([^"]+)"([^)]*)', source, flags=re.S
    ):
        method = "POST" if 'method="post"' in m.group(2) else "GET"
        found.add((method, re.sub(r"\{[^}]+\}", "1", m.group(1))))
    for m in re.finditer(r'endpoint="([a-z/]+)"', source):  # _multi_page_request(endpoint=...)
        found.add(("GET", m.group(1)))
    if 'f"{base_url}/status"' in source:  # check_if_blob_store_enabled
        found.add(("GET", "blobstream/status"))
    return sorted(found)


def test_the_proxy_serves_every_request_of_vantage6s_algorithm_client(proxy) -> None:
    wanted = _client_requests()
    paths = {p for _, p in wanted}
    assert {"task/1/status", "result", "organization", "task", "blobstream/status"} <= paths
    s = requests.Session()
    s.trust_env = False
    for method, path in wanted:
        if path.startswith(("user", "token")):  # authenticate/refresh: overridden, never sent
            continue
        resp = s.request(
            method,
            f"http://127.0.0.1:{proxy.port}/{path}",
            params={"task_id": 1} if path in ("result", "run") else None,
            json={"organizations": [{"id": 1, "input": "e30="}]} if method == "POST" else None,
            headers={"Authorization": "Bearer tok"},
            timeout=10,
        )
        # 503: forwarded to the server (down here); 200: answered by the proxy itself
        assert resp.status_code in (200, 503) or "no studies" in resp.json()["msg"], (
            method,
            path,
            resp.status_code,
            resp.json(),
        )


def test_what_the_proxy_answers_itself(proxy) -> None:
    s = requests.Session()
    s.trust_env = False
    base, headers = f"http://127.0.0.1:{proxy.port}", {"Authorization": "Bearer tok"}
    assert s.get(f"{base}/blobstream/status", headers=headers, timeout=10).json() == {
        "blob_store_enabled": False
    }
    assert (
        s.get(f"{base}/vpn/algorithm/addresses", headers=headers, timeout=10).json()["addresses"]
        == []
    )
    assert s.get(f"{base}/study", headers=headers, timeout=10).json()["data"] == []
    assert s.get(f"{base}/study/1", headers=headers, timeout=10).status_code == 404
