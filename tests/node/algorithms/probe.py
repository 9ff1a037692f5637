"""A probe algorithm: each method exercises one part of the algorithm contract."""

from __future__ import annotations

import os
import sys
import time

from vantage6nb.common import contract


def echo(*args, **kwargs):
    """Return what it was given, and print a line to the log."""
    print("probe: echo called", flush=True)
    return {"args": list(args), "kwargs": kwargs}


def environment():
    """The decoded contract environment as the algorithm sees it, with each database's first line."""
    env = os.environ
    labels = (contract.read_environment(env, contract.USER_REQUESTED_DATABASE_LABELS) or "").split(
        ","
    )
    labels = [label for label in labels if label]
    dbs = {}
    for label in labels:
        uri_name, type_name = contract.database_env_names(label)
        uri = contract.read_environment(env, uri_name)
        first = None
        if uri and os.path.isfile(uri):
            with open(uri, encoding="utf-8") as fh:
                first = fh.readline().strip()
        dbs[label] = {
            "uri": uri,
            "type": contract.read_environment(env, type_name),
            "first_line": first,
            "query": contract.read_environment(env, f"{label.upper()}_DB_PARAM_QUERY"),
        }
    return {
        "labels": labels,
        "databases": dbs,
        "host": contract.read_environment(env, contract.HOST),
        "port": contract.read_environment(env, contract.PORT),
        "token": open(contract.read_environment(env, contract.TOKEN_FILE), encoding="utf-8")
        .read()
        .strip(),
        "secret_leaked": any(k.startswith("V6NB_NODE_") for k in env),
    }


def crash(message="probe crashed on purpose", lines=0):
    """Print ``lines`` noise lines, then raise."""
    for i in range(lines):
        print(f"noise line {i}")
    print("probe: about to crash", flush=True)
    raise RuntimeError(message)


def sleep(seconds=60.0):
    """Sleep, announcing it first (used for timeouts and kills)."""
    print("probe: sleeping", flush=True)
    time.sleep(seconds)
    return {"slept": seconds}


def no_output():
    """Exit successfully without writing OUTPUT_FILE."""
    print("probe: leaving without output", flush=True)
    sys.stdout.flush()
    os._exit(0)


def _proxy(method, path, body=None):
    """One request to the node's proxy, with the run's container token (stdlib only)."""
    import json
    import urllib.error
    import urllib.request

    env = os.environ
    base = f"{contract.read_environment(env, contract.HOST)}:{contract.read_environment(env, contract.PORT)}"
    base += contract.read_environment(env, contract.API_PATH) or ""
    with open(contract.read_environment(env, contract.TOKEN_FILE), encoding="utf-8") as fh:
        token = fh.read().strip()
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def central(organization_ids, vantage6_style=False, **kwargs):
    """Create an ``echo`` subtask for ``organization_ids`` through the proxy and return its results."""
    import base64
    import json

    payload = {"method": "echo", "args": [], "kwargs": kwargs}
    if vantage6_style:  # what vantage6's AlgorithmClient sends: base64 of the JSON input
        encoded = base64.b64encode(json.dumps(payload).encode()).decode()
        body = {"organizations": [{"id": i, "input": encoded} for i in organization_ids]}
    else:
        body = {"organizations": [{"id": i, "input": payload} for i in organization_ids]}
    status, task = _proxy("POST", "/task", body)
    if status >= 300:
        raise RuntimeError(f"subtask creation failed: {status} {task}")
    while True:
        status, info = _proxy("GET", f"/task/{task['id']}")
        if info.get("status") in (
            "completed",
            "failed",
            "crashed",
            "killed",
            "not allowed",
            "refused",
        ):
            break
        time.sleep(0.1)
    status, results = _proxy("GET", f"/result?task_id={task['id']}")
    values = [r["result"] for r in results["data"]]
    if vantage6_style:
        values = [json.loads(base64.b64decode(v)) for v in values]
    _, orgs = _proxy("GET", "/organization")
    bad_status, _ = _proxy("GET", "/nonsense")
    return {
        "task_id": task["id"],
        "status": info["status"],
        "results": values,
        "organizations": sorted(o["id"] for o in orgs["data"]),
        "nonsense_status": bad_status,
    }


# -- outputs the node must refuse to read (docs/security.md) --------------------------------------


def _output_path():
    return contract.read_environment(os.environ, contract.OUTPUT_FILE)


def symlink_output(target="/etc/shadow"):
    """Leave OUTPUT_FILE as a symbolic link to ``target`` and exit before the wrapper writes it."""
    out = _output_path()
    if os.path.lexists(out):
        os.unlink(out)
    os.symlink(target, out)
    os._exit(0)


def sparse_output(gib=8):
    """Leave OUTPUT_FILE as a sparse file claiming ``gib`` GiB (4 KiB on disk)."""
    with open(_output_path(), "wb") as fh:
        fh.write(b'{"x": 1}')
        fh.truncate(int(gib) << 30)
    os._exit(0)


def raw_output(text="{}"):
    """Write ``text`` (latin-1 bytes, NUL bytes included) as OUTPUT_FILE and exit."""
    with open(_output_path(), "wb") as fh:
        fh.write(str(text).encode("latin-1"))
    os._exit(0)
