"""A misspelt image says which image the registry does not have and what to check, not just
"manifest unknown"."""

from __future__ import annotations

import urllib.request

import pytest

from node_app.runtimes.base import RuntimeRefusal
from node_app.runtimes.docker_images import lookup_image
from tests.support import unavailable
from vantage6nb.common.schemas import RunStatus

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="module")
def registry(docker_client) -> str:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
    except OSError:
        unavailable(f"no registry answers on {REGISTRY}: run scripts/setup-docker.sh")
    return REGISTRY


@pytest.mark.parametrize(
    ("name", "which", "missing"),
    [
        ("v6nb/summry", "tag", "latest"),  # a typo in the name, through the node's registry
        (f"{REGISTRY}/v6nb/summary:nosuchtag", "tag", "nosuchtag"),  # a tag it does not have
    ],
)
def test_an_image_the_registry_does_not_have_is_named_with_what_to_check(
    docker_client, registry, name, which, missing
) -> None:
    with pytest.raises(RuntimeRefusal) as caught:
        lookup_image(docker_client, name, None, registry)
    refusal = caught.value
    assert refusal.status == RunStatus.FAILED
    image = name.removeprefix(f"{REGISTRY}/").split(":")[0]
    assert refusal.reason.startswith("pull failed: ")
    assert f"the registry {REGISTRY} has no image '{image}' with {which} '{missing}'" in (
        refusal.reason
    )
    assert f"check the image name and its {which} for typos" in refusal.reason
    assert "manifest unknown" not in refusal.reason
