"""The test algorithm images (probe and isolation), built offline on the project's parent image."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import unavailable

REPO = Path(__file__).resolve().parents[1]
PARENT_IMAGE = "v6nb/python:latest"
SIDECAR_IMAGE = "v6nb/base:latest"
PROBE_IMAGE = "v6nb-test/probe:latest"
ISOLATION_IMAGE = "v6nb-test/isolation:latest"


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
