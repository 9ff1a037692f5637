"""``v6nb algorithm build|push``: an image from a package folder, built offline, pushed and run by digest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node_app.runtimes.base import RunSpec
from node_app.runtimes.docker import DockerRuntime
from vantage6nb.algorithm.cli import main
from vantage6nb.common.schemas import RunStatus

from .runtime_contract import RuntimeContract
from .test_docker_runtime import REGISTRY, SIDECAR_IMAGE, test_images  # noqa: F401

pytestmark = pytest.mark.docker


def _package(root: Path) -> Path:
    pkg = root / "hello-algo"
    (pkg / "hello_algo").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "hello-algo"\nversion = "0.1"\n'
    )
    (pkg / "hello_algo" / "__init__.py").write_text(
        "def hello(name):\n    return {'hello': name}\n"
    )
    return pkg


def test_build_push_and_run_by_digest(test_images, tmp_path: Path, capsys) -> None:  # noqa: F811
    pkg = _package(tmp_path)
    tag = f"{REGISTRY}/v6nb-test/hello:0.1"
    assert main(["build", str(pkg), "--tag", tag, "--push"]) == 0
    printed_tag, digest = capsys.readouterr().out.split()
    assert printed_tag == tag and digest.startswith("sha256:")
    assert not (pkg / "build").exists()  # built from a copy
    spec: RunSpec = RuntimeContract().make_spec(tmp_path, tag, "hello", kwargs={"name": "leiden"})
    spec.digest = digest
    rt = DockerRuntime(node_name="test-build", sidecar_image=SIDECAR_IMAGE)
    try:
        rt.prepare(spec)
        outcome = rt.run(spec)
    finally:
        rt.close()
    assert outcome.status == RunStatus.COMPLETED, outcome
    assert json.loads(spec.output_file.read_text()) == {"hello": "leiden"}


def test_build_refuses_a_folder_without_a_package(docker_client, tmp_path: Path, capsys) -> None:  # noqa: F811
    assert main(["build", str(tmp_path), "--tag", "v6nb-test/nothing:1"]) == 2
    assert "pyproject.toml" in capsys.readouterr().err


def test_push_needs_a_registry_in_the_name(docker_client, capsys) -> None:  # noqa: F811
    assert main(["push", "v6nb-test/hello:0.1"]) == 2
    assert "name the image with its registry" in capsys.readouterr().err
