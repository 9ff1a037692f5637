"""The shared core stays IO-free and light, and its public names are honest."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from vantage6nb.common import contract, errors, schemas, settings
from vantage6nb.common.errors import (
    DecryptionError,
    NotFound,
    TaskTimeout,
    V6Error,
    ValidationError,
    error_from_payload,
)

FORBIDDEN = ["flask", "docker", "pandas", "ipywidgets", "sqlalchemy", "requests", "socketio"]


def test_common_imports_no_heavy_or_io_libraries():
    code = (
        "import sys, json, vantage6nb.common, vantage6nb.common.crypto;"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_vantage6nb_import_is_light():
    code = "import sys, json, vantage6nb; print(json.dumps(sorted(m for m in ('pandas','ipywidgets','docker','flask') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(
    "module",
    [
        "vantage6nb",
        "vantage6nb.common",
        "vantage6nb.common.errors",
        "vantage6nb.common.events",
        "vantage6nb.common.schemas",
        "vantage6nb.common.contract",
        "vantage6nb.common.settings",
        "vantage6nb.common.crypto",
        "vantage6nb.common.keys",
        "vantage6nb.common.envelope",
        "vantage6nb.common.textform",
        "vantage6nb.common.audit",
        "vantage6nb.audit",
        "vantage6nb.catalog",
        "vantage6nb.algorithm",
        "vantage6nb.errors",
        "vantage6nb.client",
        "vantage6nb.demo",
        "vantage6nb.widgets",
        "vantage6nb.algorithms",
        "server_app",
        "node_app",
        "node_app.audit",
        "node_app.runtimes.output",
        "node_app.runtimes.logs",
    ],
)
def test_all_is_sorted_and_resolves(module):
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == sorted(names, key=lambda n: (n.lstrip("_").lower(), n)) or names == sorted(
        names
    )
    for name in names:
        assert getattr(mod, name) is not None, f"{module}.{name} does not resolve"


@pytest.mark.parametrize(
    "cls", [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, V6Error)]
)
def test_every_error_round_trips_through_json(cls):
    err = cls("something went wrong", errors={"field": "why"})
    back = error_from_payload(cls.status, json.loads(json.dumps(err.to_dict())))
    assert type(back) is cls
    assert back.msg == "something went wrong" and back.errors == {"field": "why"}


def test_error_from_unknown_payload_falls_back_on_status():
    assert isinstance(error_from_payload(404, {"msg": "gone"}), NotFound)
    assert isinstance(error_from_payload(502, "<html>bad gateway</html>"), V6Error)
    assert issubclass(DecryptionError, ValueError) and issubclass(TaskTimeout, TimeoutError)


@pytest.mark.parametrize(
    "value", ["", "a", "/data/x.csv", "postgresql://u:p@h/db?x=1", "ünïcode ✓", "=" * 7]
)
def test_env_encoding_round_trips_and_matches_vantage6(value):
    import base64

    enc = contract.encode_env_value(value)
    assert "=" not in enc
    # vantage6-algorithm-tools' decoder: replace '!' by '=' then base32-decode
    assert base64.b32decode(enc.replace("!", "=")).decode() == value
    assert contract.decode_env_value(enc) == value


def test_build_environment_names_databases_and_marks_encoding():
    env = contract.build_environment(
        input_file="/in",
        output_file="/out",
        token_file="/tok",
        temporary_folder="/tmp/x",
        host="http://127.0.0.1",
        port=1234,
        api_path="",
        databases={"default": ("/d.csv", "csv"), "Extra": ("sqlite:///x", "sql")},
    )
    assert env[contract.ENCODED_MARKER] == "1"
    read = lambda n: contract.read_environment(env, n)  # noqa: E731
    assert read("USER_REQUESTED_DATABASE_LABELS") == "default,Extra"
    assert read("EXTRA_DATABASE_URI") == "sqlite:///x" and read("DEFAULT_DATABASE_TYPE") == "csv"
    assert read("PORT") == "1234"


@pytest.mark.parametrize(
    "bad", [b"[]", b"{}", b'{"method": 1}', b'{"method": "m", "args": {}}', b"not json"]
)
def test_parse_input_rejects_malformed(bad):
    with pytest.raises(ValueError):
        contract.parse_input(bad)


def test_require_fields_names_every_bad_field():
    with pytest.raises(ValidationError) as info:
        schemas.require_fields({"a": "x", "b": True}, {"a": int, "b": int, "c": str})
    assert info.value.errors == {"a": "expected int", "b": "expected int", "c": "required"}


def test_run_status_final_and_open_partition():
    assert schemas.OPEN_STATUSES | schemas.FINAL_STATUSES == set(schemas.RunStatus)
    assert not schemas.OPEN_STATUSES & schemas.FINAL_STATUSES
    assert schemas.RunStatus("not allowed").is_final


def test_settings_layering_and_type_errors():
    decl = [
        settings.Setting("port", 7601, "port", int),
        settings.Setting("debug", False, "dbg", bool),
        settings.Setting("names", [], "names", list),
    ]
    out = settings.resolve_settings(
        decl,
        prefix="server",
        file_values={"port": 8000},
        environ={"V6NB_SERVER_DEBUG": "yes", "V6NB_SERVER_NAMES": '["a"]'},
        overrides={"port": 9000},
    )
    assert out == {"port": 9000, "debug": True, "names": ["a"]}
    with pytest.raises(errors.ConfigurationError, match="V6NB_SERVER_PORT"):
        settings.resolve_settings(decl, prefix="server", environ={"V6NB_SERVER_PORT": "eighty"})
    with pytest.raises(errors.ConfigurationError, match="Unknown setting"):
        settings.resolve_settings(decl, prefix="server", file_values={"prot": 1})
