"""The demo on the Docker runtime: check the engine and registry, and pin the shipped images' digests."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from .._version import __version__
from ..algorithms import IMAGES
from ..common.errors import ConfigurationError

__all__ = ["DEMO_REGISTRY", "docker_node_settings", "registry_digest"]

DEMO_REGISTRY = "127.0.0.1:5000"
SETUP_HINT = "run scripts/setup-docker.sh (as root), then scripts/build-images.sh"
# Media types a registry may answer with for an image built and pushed by the local engine.
_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def registry_digest(registry: str, name: str, tag: str, *, timeout: float = 5.0) -> str | None:
    """The digest ``registry`` serves for ``name:tag`` (what ``docker pull`` records), None if absent.

    Raises :class:`ConfigurationError` when the registry does not answer.

    Examples
    --------
    >>> registry_digest("127.0.0.1:5000", "v6nb/summary", "0.1.0")  # doctest: +SKIP
    'sha256:d425ee...'
    """
    req = urllib.request.Request(
        f"http://{registry}/v2/{name}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": _MANIFEST_TYPES},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ConfigurationError(
            f"The registry on {registry} answered {exc.code} for {name}:{tag}; {SETUP_HINT}.",
            errors={"registry": registry},
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigurationError(
            f"No registry answers on {registry} ({exc}); {SETUP_HINT}.",
            errors={"registry": registry},
        ) from exc


def docker_node_settings(registry: str = DEMO_REGISTRY, *, engine: bool = True) -> dict[str, Any]:
    """Node settings for a demo node on the Docker runtime: images from ``registry``, pinned by digest.

    The shipped images (``v6nb/summary``, ``v6nb/crosstab``, ``v6nb/diagnostics``) keep their short
    names in tasks; each node resolves them in ``registry`` (``image_registry``) at the digest the
    registry serves now for this version (``image_digests``), the way a production node pins them.
    Raises :class:`ConfigurationError` saying what to run when no engine or registry answers, or an
    image was never pushed.

    Examples
    --------
    >>> docker_node_settings()["image_registry"]  # doctest: +SKIP
    '127.0.0.1:5000'
    """
    if engine:  # False: the Podman runtime, which checks its own service
        _require_engine()
    digests: dict[str, str] = {}
    missing = []
    for image in IMAGES:
        digest = registry_digest(registry, image, __version__)
        if digest is None:
            missing.append(f"{image}:{__version__}")
        else:
            digests[image] = digest
    if missing:
        raise ConfigurationError(
            f"The registry on {registry} lacks {', '.join(missing)}: run scripts/build-images.sh, "
            "which builds the shipped algorithm images and pushes them there.",
            errors={"images": missing},
        )
    return {"image_registry": registry, "image_digests": digests}


def _require_engine() -> None:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # no socket, permission denied, daemon down: all mean "no engine"
        raise ConfigurationError(
            f"runtime='docker' needs a Docker engine, and none answers ({_short(exc)}): "
            f"{SETUP_HINT}; or start the demo with runtime='process' (no isolation).",
            errors={"runtime": "no Docker engine"},
        ) from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
