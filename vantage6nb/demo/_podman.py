"""The demo on the Podman runtime: find the rootless Podman service, and pin the shipped images."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path
from typing import Any

from ..common.errors import ConfigurationError
from ._docker import DEMO_REGISTRY, docker_node_settings

__all__ = ["PODMAN_USER", "podman_node_settings", "podman_socket"]

PODMAN_USER = "v6nb-podman"  # the ordinary user scripts/setup-podman.sh makes
SETUP_HINT = "run scripts/setup-podman.sh (as root), then scripts/build-images.sh"


def podman_socket() -> Path:
    """The socket of the rootless Podman service the demo's nodes use.

    A demo started by an ordinary user uses that user's own service (``$XDG_RUNTIME_DIR``; the
    node starts it when none runs); one started by root uses the service of ``v6nb-podman``
    (``$V6NB_PODMAN_USER``), which ``scripts/setup-podman.sh`` starts.

    Examples
    --------
    >>> podman_socket().name  # doctest: +SKIP
    'podman.sock'
    """
    if os.geteuid() != 0:
        run_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
        return Path(run_dir) / "podman" / "podman.sock"
    user = os.environ.get("V6NB_PODMAN_USER", PODMAN_USER)
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError as exc:
        raise ConfigurationError(
            f"runtime='podman' run as root needs the rootless Podman of user {user}, and there "
            f"is no such user: {SETUP_HINT}.",
            errors={"runtime": "no Podman user"},
        ) from exc
    return Path(f"/run/user/{uid}/podman/podman.sock")


def podman_node_settings(registry: str = DEMO_REGISTRY) -> dict[str, Any]:
    """Node settings for a demo node on the Podman runtime: the service's socket, pinned images.

    The images are pinned as on the Docker runtime (:func:`docker_node_settings`: the registry's
    digests for this version), and pulled by the rootless Podman from the same registry.

    Examples
    --------
    >>> podman_node_settings()["podman_socket"]  # doctest: +SKIP
    '/run/user/1001/podman/podman.sock'
    """
    sock = podman_socket()
    if os.geteuid() == 0 and not _answers(sock):
        raise ConfigurationError(
            f"runtime='podman' needs a rootless Podman service, and none answers on {sock}: "
            f"{SETUP_HINT}; or start the demo with runtime='process' (no isolation).",
            errors={"runtime": "no Podman service"},
        )
    settings = docker_node_settings(registry, engine=False)
    return {**settings, "podman_socket": str(sock)}


def _answers(sock: Path) -> bool:
    """Whether an API service answers ``GET /_ping`` on the unix socket ``sock``."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False
