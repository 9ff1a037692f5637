"""The test algorithm images (probe, isolation, roles), built offline on the project's parent image."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import unavailable

REPO = Path(__file__).resolve().parents[1]
PARENT_IMAGE = "v6nb/python:latest"
SIDECAR_IMAGE = "v6nb/base:latest"
PROBE_IMAGE = "v6nb-test/probe:latest"
ISOLATION_IMAGE = "v6nb-test/isolation:latest"
ROLES_IMAGE = "v6nb-test/roles:latest"
#: What ROLES_IMAGE's label says (module ``roles_algo``; ``plain`` has no role).
ROLES_TABLE = {"central": "entry_point", "part": "federated"}

_ROLES_MODULE = """\
from vantage6nb.algorithm import algorithm_client, entry_point, federated


@federated
def part(x=1):
    return {"x": x}


@entry_point
@algorithm_client
def central(client, x=1):
    orgs = [o["id"] for o in client.organization.list()]
    task = client.task.create({"method": "part", "kwargs": {"x": x}}, orgs)
    return client.wait_for_results(task["id"], timeout=120)


def plain():
    return 0
"""


def build_test_images(docker_client, folder: Path) -> dict[str, str]:
    """Build the probe and isolation images from the current source; returns role -> image name."""
    import docker.errors

    for needed in (PARENT_IMAGE, SIDECAR_IMAGE):
        try:
            docker_client.images.get(needed)
        except docker.errors.ImageNotFound:
            unavailable(f"image {needed} is missing: run scripts/build-images.sh")
    ctx = folder / "probe"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    # The current source of the kit, so the test image never runs a stale vantage6nb.
    shutil.copytree(REPO / "vantage6nb", ctx / "src" / "vantage6nb", ignore=ignore)
    shutil.copytree(
        REPO / "tests" / "node" / "algorithms",
        ctx / "src" / "tests" / "node" / "algorithms",
        ignore=ignore,
    )
    for init in ("tests/__init__.py", "tests/node/__init__.py"):
        (ctx / "src" / init).write_text("")
    (ctx / "Dockerfile").write_text(
        f"FROM {PARENT_IMAGE}\nCOPY src /opt/v6nb-test\n"
        "ENV PYTHONPATH=/opt/v6nb-test PKG_NAME=tests.node.algorithms.probe\n"
    )
    docker_client.images.build(path=str(ctx), tag=PROBE_IMAGE, network_mode="none", rm=True)
    iso = folder / "isolation"
    iso.mkdir()
    (iso / "Dockerfile").write_text(
        # USER 0: the image asks for root, so only the runtime's own user setting keeps it non-root.
        f"FROM {PROBE_IMAGE}\nUSER 0:0\nENV PKG_NAME=tests.node.algorithms.isolation\n"
    )
    docker_client.images.build(path=str(iso), tag=ISOLATION_IMAGE, network_mode="none", rm=True)
    return {"probe": PROBE_IMAGE, "isolation": ISOLATION_IMAGE}


def build_roles_image(folder: Path) -> str:
    """Build ROLES_IMAGE with ``v6nb algorithm build`` on the probe image (current kit source).

    Its module has a ``@federated`` part, an ``@entry_point`` central function and a plain
    function, so the image carries the label ``org.vantage6nb.functions`` (:data:`ROLES_TABLE`).
    Needs :func:`build_test_images` first.
    """
    from vantage6nb.algorithm.build import build_image

    pkg = folder / "roles-algo"
    (pkg / "roles_algo").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "roles-algo"\nversion = "0.1"\n'
    )
    (pkg / "roles_algo" / "__init__.py").write_text(_ROLES_MODULE)
    return build_image(pkg, tag=ROLES_IMAGE, base=PROBE_IMAGE).tag
