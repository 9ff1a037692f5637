"""Server settings: layering, validation, that docs/configuration.md documents every key; the version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server_app.config import SETTINGS, load_config
from vantage6nb.common.errors import ConfigurationError
from vantage6nb.common.settings import env_name
from vantage6nb.common.version import __version__

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "configuration.md"


def test_layers(tmp_path):
    cfg_file = tmp_path / "server.yaml"
    cfg_file.write_text("port: 7000\ndata_dir: data\nthreads: 8\n")
    cfg = load_config(cfg_file, environ={"V6NB_SERVER_PORT": "7100"}, overrides={"threads": 4})
    assert cfg["port"] == 7100 and cfg["threads"] == 4
    assert cfg["data_dir"] == str(tmp_path / "data")
    assert cfg["database_url"] == f"sqlite:///{tmp_path / 'data' / 'server.sqlite'}"
    assert load_config(None, environ={})["host"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("port: 0\n", {}),
        ("nonsense: 1\n", {}),
        ("- a\n", {}),
        ("", {"V6NB_SERVER_PORT": "abc"}),
        ("log_level: loud\n", {}),
    ],
)
def test_bad_config(tmp_path, text, env):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(ConfigurationError):
        load_config(f, environ=env)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_every_setting_documented():
    text = DOCS.read_text()
    server = text.split("## Server", 1)[1].split("\n## ", 1)[0]
    for s in SETTINGS:
        assert f"`{s.name}`" in server, s.name
        assert f"`{env_name('server', s.name)}`" in server, s.name


def test_version_is_the_projects(client):
    # the server reports the shared core's version, which is pyproject.toml's and the library's
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert declared is not None and declared.group(1) == __version__
    import vantage6nb

    assert vantage6nb.__version__ == __version__
    assert client.get("/api/version").json == {"version": __version__}
