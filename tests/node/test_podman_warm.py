"""Warm single-use sandboxes in the (rootless) Podman runtime: the Docker runtime's warm tests, here."""

# The tests are test_docker_warm's own, collected here with its fixtures bound to Podman: the
# runtime, the engine client, the proxy socket and the images (built by Docker, pushed to the
# registry, pulled by Podman through the runtime's registry setting).

from __future__ import annotations

from collections.abc import Callable

import pytest

from node_app.runtimes.podman import PodmanRuntime

from .test_docker_warm import (  # noqa: F401 - collected here, against Podman
    build_warm_image,
    test_a_spare_holds_nothing_of_a_run_before_its_handoff,
    test_a_spare_is_discarded_when_the_image_changes,
    test_a_spare_is_discarded_when_the_limits_change,
    test_a_spare_serves_exactly_one_run,
    test_a_warm_run_ends_as_a_cold_one,
    test_close_and_cleanup_leave_no_container,
    test_kill_and_timeout_end_a_warm_run,
    warm_test_images,
)
from .test_podman_runtime import (  # noqa: F401 - the Podman fixtures
    REGISTRY,
    podman_client,
    podman_images,
    podman_socket,
    proxy_socket,
    shared_base,
    tmp_path,
)

pytestmark = pytest.mark.podman


@pytest.fixture
def node_name(request) -> str:
    import os

    return f"pwtest-{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}"


@pytest.fixture
def engine(podman_client):  # noqa: F811 - the imported fixture
    return podman_client


@pytest.fixture
def publish(docker_client) -> Callable[[str], str]:
    """Push a just-built image to the registry, where the runtime pulls it from."""

    def push(name: str) -> str:
        repo = f"{REGISTRY}/{name.rsplit(':', 1)[0]}"
        docker_client.images.get(name).tag(repo, "latest")
        docker_client.images.push(repo, tag="latest")
        return name

    return push


@pytest.fixture
def warm_image(docker_client, warm_test_images, podman_images, publish):  # noqa: F811
    """Build WARM_IMAGE with a module of the given version and publish it for Podman."""
    return lambda version: publish(build_warm_image(docker_client, warm_test_images, version))


@pytest.fixture
def warm_runtime(podman_socket, node_name) -> Callable[..., PodmanRuntime]:  # noqa: F811
    made: list[PodmanRuntime] = []

    def make(**kwargs) -> PodmanRuntime:
        kwargs.setdefault("instance", node_name)
        rt = PodmanRuntime(
            socket=podman_socket,
            node_name=node_name,
            registry=REGISTRY,
            warm=True,
            warm_spares=2,
            **kwargs,
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
