"""vantage6 algorithms unmodified, Docker runtime: the same vantage6-style package, built into an
image offline (``docker build --network none``, from the cached wheels of the real
vantage6-algorithm-tools) by ``v6nb algorithm build``, which finds its module and its wrapper call
in the package's own Dockerfile; the same checks as the process runtime's (imported below)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import docker.errors
import pytest

from tests.data.v6_algorithms.tools import AVERAGE, AVERAGE_IMAGE, AVERAGE_MODULE, tools_dir
from tests.integration.test_vantage6_compat import (  # noqa: F401 - collected here, on Docker
    pooled,
    test_central_with_subtasks_in_vantage6_calling_style,
    test_counts_with_the_operators_algorithm_env,
    test_partial_sees_a_decoded_environment_and_the_token_identity,
)
from vantage6nb import demo
from vantage6nb.algorithm import build as build_module
from vantage6nb.algorithm.build import DEFAULT_BASE, build_image, push_image

pytestmark = [pytest.mark.integration, pytest.mark.docker]

REGISTRY = "127.0.0.1:5000"


def _source_key(docker_client) -> str:
    """What the image is built from: the package, the tools' wheels, the base image, the builder."""
    digest = hashlib.sha256()
    for path in sorted(AVERAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(AVERAGE).as_posix().encode() + path.read_bytes())
    digest.update(tools_dir().name.encode())
    digest.update(docker_client.images.get(DEFAULT_BASE).id.encode())
    digest.update(Path(build_module.__file__).read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def v6_image(docker_client):
    # built once per change of what it is built from (a minute: the tools bring pandas, psycopg2 ...)
    tag = f"{REGISTRY}/{AVERAGE_IMAGE}:src-{_source_key(docker_client)}"
    try:
        docker_client.images.get(tag)
        built = push_image(tag, client=docker_client)  # the registry may have been emptied
    except docker.errors.ImageNotFound:
        built = build_image(
            AVERAGE,
            tag=tag,
            push=True,
            client=docker_client,
            find_links=[tools_dir() / "wheels"],
            offline=True,  # everything from the cache: no index
        )
    image = docker_client.images.get(built.image_id)
    env = dict(e.split("=", 1) for e in image.attrs["Config"]["Env"])
    assert env["PKG_NAME"] == AVERAGE_MODULE and env["V6NB_WRAPPER"] == "vantage6"
    return built


@pytest.fixture(scope="module")
def v6_net(v6_image):
    with demo.start(
        nodes=3,
        runtime="docker",
        algorithms={AVERAGE_IMAGE: AVERAGE_MODULE},
        node_settings={
            "disclosure": {"algorithm_env": {"V6_AVERAGE_MIN_COUNT": "1"}},
            "image_digests": {AVERAGE_IMAGE: v6_image.digest},
        },
    ) as net:
        yield net
