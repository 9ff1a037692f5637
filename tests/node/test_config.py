"""Node configuration: layering, validation, path resolution, and the documentation contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node_app.config import SETTINGS, load_config
from vantage6nb.common.errors import ConfigurationError
from vantage6nb.common.settings import env_name

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    cfg = load_config(None, environ={})
    assert cfg.runtime == "auto"
    assert cfg.process_algorithms["v6nb/summary"] == "vantage6nb.algorithms.summary"
    assert cfg.allowed_images == ["v6nb/*"]
    assert cfg.sync_interval_s == 30
    assert cfg.limits.timeout_s == 3600


def test_layering_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "name: from-file\nmax_parallel_runs: 3\nproxy_port: 1234\n")
    env = {"V6NB_NODE_NAME": "from-env", "V6NB_NODE_MAX_PARALLEL_RUNS": "5"}
    cfg = load_config(path, environ=env, overrides={"max_parallel_runs": 7})
    assert cfg.name == "from-env"
    assert cfg.max_parallel_runs == 7
    assert cfg.proxy_port == 1234


def test_env_json_for_lists_and_dicts(tmp_path: Path) -> None:
    env = {"V6NB_NODE_ALLOWED_IMAGES": '["a/*"]', "V6NB_NODE_LIMITS": '{"timeout_s": 5}'}
    cfg = load_config(None, environ=env)
    assert cfg.allowed_images == ["a/*"]
    assert cfg.limits.timeout_s == 5
    assert cfg.limits.memory_mb == 1024  # a partial `limits` keeps the other defaults


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    path = write(
        sub,
        "data_dir: state\n"
        "databases:\n"
        "  - {label: default, uri: data/x.csv, type: csv}\n"
        "  - {label: db, uri: 'sqlite:///data/x.db', type: sql, query: SELECT 1}\n"
        "  - {label: pg, uri: 'postgresql://u@127.0.0.1/x', type: SQL}\n",
    )
    cfg = load_config(path, environ={})
    assert cfg.data_dir == sub / "state"
    assert cfg.databases[0].uri == str(sub / "data" / "x.csv")
    assert cfg.databases[1].uri == f"sqlite:///{sub / 'data' / 'x.db'}"
    assert cfg.databases[1].query == "SELECT 1"
    assert cfg.databases[2].uri == "postgresql://u@127.0.0.1/x" and cfg.databases[2].type == "sql"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("runtime: kubernetes\n", "runtime"),
        ("unknown_key: 1\n", "unknown_key"),
        ("max_parallel_runs: 0\n", "max_parallel_runs"),
        ("max_parallel_runs: many\n", "max_parallel_runs"),
        ("databases: [{label: a, uri: x.csv, type: hdf5}]\n", "hdf5"),
        ("databases: [{label: a, type: csv}]\n", "uri"),
        ("databases: [3]\n", "databases[0]"),
        ("limits: {timeout_s: -1}\n", "timeout_s"),
        ("limits: {gpus: 1}\n", "gpus"),
        ("- just\n- a list\n", "mapping"),
        ("name: [unclosed\n", "YAML"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(write(tmp_path, text), environ={})
    assert needle in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    node_part = text.split("## Node", 1)[1]
    for s in SETTINGS:
        assert re.search(rf"\| `{s.name}` \|", node_part), (
            f"{s.name} missing from docs/configuration.md"
        )
        assert env_name("node", s.name) in node_part
