"""``Runtime.functions``: the roles an image declares, from ``--describe`` (process) or its label (Docker)."""

from __future__ import annotations

import logging
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from node_app.runtimes.base import RunOutcome, Runtime, functions_table
from node_app.runtimes.docker import DockerRuntime
from node_app.runtimes.process import ProcessRuntime
from tests.docker_images import PROBE_IMAGE, ROLES_IMAGE, ROLES_TABLE, build_roles_image

from .runtime_contract import RuntimeContract
from .test_docker_runtime import SIDECAR_IMAGE, test_images  # noqa: F401

REPO = str(Path(__file__).resolve().parents[2])

MODULE = textwrap.dedent(
    """
    from vantage6nb.algorithm import algorithm_client, data, entry_point, federated

    @federated
    @data(1)
    def part(df):
        return len(df)

    @entry_point
    @algorithm_client
    def central(client):
        return 1

    def plain():
        return 0
    """
)
TABLE = {"central": "entry_point", "part": "federated"}


@pytest.fixture
def module_dir(tmp_path: Path) -> tuple[Path, str]:
    """A folder with a module of roles (a name of its own, so no other test's module is found)."""
    name = re.sub(r"\W", "_", f"v6nb_fn_{tmp_path.name}")
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / f"{name}.py").write_text(MODULE)
    return folder, name


def _process_runtime(folder: Path, modules: dict[str, str]) -> ProcessRuntime:
    return ProcessRuntime(modules, pythonpath=[str(folder), REPO])


def _no_spawn(*args, **kwargs):
    raise AssertionError("functions() started a process for a module it had described")


# -- the interface and its parser --------------------------------------------------------------


class _Bare(Runtime):
    name = "bare"
    isolated = False

    def run(self, spec):  # pragma: no cover - never run
        return RunOutcome(status=None)  # type: ignore[arg-type]

    def kill(self, run_id):  # pragma: no cover - never run
        return False


def test_a_runtime_declares_nothing_by_default() -> None:
    assert _Bare().functions("v6nb/summary") is None
    assert _Bare().functions("v6nb/summary", "sha256:" + "0" * 64) is None


@pytest.mark.parametrize(
    "raw", ['{"functions": {"part": 1}}', '{"functions": ["part"]}', "[1]", "not json", "{"]
)
def test_a_malformed_table_declares_nothing_and_warns(raw: str, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert functions_table(raw, source="image x") is None
    assert "image x" in caplog.text


@pytest.mark.parametrize("raw", [None, "", b"  \n"])
def test_no_table_declares_nothing_quietly(raw, caplog) -> None:
    assert functions_table(raw, source="image x") is None
    assert caplog.text == ""


def test_an_empty_table_is_a_table() -> None:
    assert functions_table(b'{"functions": {}}\n', source="image x") == {}


# -- the process runtime -----------------------------------------------------------------------


def test_process_runtime_describes_the_module(module_dir, monkeypatch) -> None:
    folder, name = module_dir
    rt = _process_runtime(folder, {"test/roles": name, "test/again": name})
    assert rt.functions("127.0.0.1:5000/test/roles:1.0") == TABLE
    monkeypatch.setattr(subprocess, "run", _no_spawn)
    assert rt.functions("test/roles", "sha256:" + "a" * 64) == TABLE  # cached per module
    assert rt.functions("test/again") == TABLE  # another image, the same module
    assert rt.functions("test/unknown") is None  # no module: nothing to describe


def test_process_runtime_import_failure_is_none_with_a_warning(
    module_dir, monkeypatch, caplog
) -> None:
    folder, _ = module_dir
    (folder / "v6nb_fn_broken.py").write_text("raise RuntimeError('needs a GPU')\n")
    rt = _process_runtime(folder, {"test/broken": "v6nb_fn_broken"})
    with caplog.at_level(logging.WARNING):
        assert rt.functions("test/broken") is None
    assert "v6nb_fn_broken" in caplog.text and "needs a GPU" in caplog.text
    monkeypatch.setattr(subprocess, "run", _no_spawn)
    assert rt.functions("test/broken") is None  # remembered: the module is the same


def test_process_runtime_describe_is_bounded_by_a_timeout(module_dir, caplog) -> None:
    folder, _ = module_dir
    (folder / "v6nb_fn_slow.py").write_text("import time\ntime.sleep(30)\n")
    rt = _process_runtime(folder, {"test/slow": "v6nb_fn_slow"})
    rt.describe_timeout_s = 0.5
    with caplog.at_level(logging.WARNING):
        assert rt.functions("test/slow") is None
    assert "took over 0.5 s" in caplog.text


# -- the Docker runtime ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def roles_image(test_images, tmp_path_factory) -> str:  # noqa: F811
    return build_roles_image(tmp_path_factory.mktemp("roles-image"))


@pytest.fixture
def docker_runtime(test_images):  # noqa: F811
    rt = DockerRuntime(node_name="test-functions", sidecar_image=SIDECAR_IMAGE)
    yield rt
    rt.close()


def _no_engine(*args, **kwargs):
    raise AssertionError("functions() asked the engine about an image it had read")


@pytest.mark.docker
def test_docker_runtime_reads_the_label(roles_image, docker_runtime, monkeypatch) -> None:
    labels = docker_runtime.client.images.get(roles_image).labels
    assert "org.vantage6nb.functions" in labels
    image_id = docker_runtime.client.images.get(roles_image).id
    assert docker_runtime.functions(roles_image) == ROLES_TABLE
    assert docker_runtime.functions(ROLES_IMAGE, image_id) == ROLES_TABLE  # pinned by id
    monkeypatch.setattr("node_app.runtimes.docker.lookup_image", _no_engine)
    assert docker_runtime.functions(roles_image) == ROLES_TABLE
    assert docker_runtime.functions(ROLES_IMAGE, image_id) == ROLES_TABLE


@pytest.mark.docker
def test_docker_runtime_after_prepare_asks_nothing(
    roles_image, docker_runtime, tmp_path, monkeypatch
) -> None:
    spec = RuntimeContract().make_spec(tmp_path, roles_image, "part")
    docker_runtime.prepare(spec)
    monkeypatch.setattr("node_app.runtimes.docker.lookup_image", _no_engine)
    assert docker_runtime.functions(roles_image) == ROLES_TABLE


@pytest.mark.docker
def test_docker_runtime_image_without_the_label_declares_nothing(docker_runtime) -> None:
    assert docker_runtime.functions(PROBE_IMAGE) is None


@pytest.mark.docker
def test_docker_runtime_label_not_json_declares_nothing(docker_runtime, tmp_path, caplog) -> None:
    (tmp_path / "Dockerfile").write_text(
        f"FROM {PROBE_IMAGE}\nLABEL org.vantage6nb.functions=not-json\n"
    )
    tag = "v6nb-test/bad-roles:latest"
    docker_runtime.client.images.build(path=str(tmp_path), tag=tag, network_mode="none", rm=True)
    with caplog.at_level(logging.WARNING):
        assert docker_runtime.functions(tag) is None
    assert "v6nb-test/bad-roles" in caplog.text


@pytest.mark.docker
def test_docker_runtime_missing_image_declares_nothing(docker_runtime, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert docker_runtime.functions("v6nb-test/no-such-image:0") is None
    assert "not on this node's Docker engine" in caplog.text
