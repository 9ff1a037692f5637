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
    labels = (contract.read_environment(env, contract.USER_REQUESTED_DATABASE_LABELS) or "").split(",")
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
        "token": open(contract.read_environment(env, contract.TOKEN_FILE), encoding="utf-8").read().strip(),
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
