"""Runtimes execute algorithms: ``ProcessRuntime`` (no isolation), ``DockerRuntime`` and ``PodmanRuntime``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .base import DatabaseMount, Limits, RunOutcome, RunSpec, Runtime, RuntimeRefusal

if TYPE_CHECKING:  # pragma: no cover
    from ..config import NodeConfig

__all__ = [
    "DatabaseMount",
    "Limits",
    "RunOutcome",
    "RunSpec",
    "Runtime",
    "RuntimeRefusal",
    "make_runtime",
]

log = logging.getLogger(__name__)

NO_ISOLATION_WARNING = (
    "NO ISOLATION: algorithms run as plain processes of this node's user, with access to everything "
    "it can read and reach. Use only with trusted algorithms, or run the node with a Docker engine."
)


def make_runtime(config: NodeConfig) -> Runtime:
    """The runtime the configuration asks for; ``auto`` is Docker when an engine answers, else process.

    ``podman`` is always asked for by name (a rootless Podman; see ``docs/operations.md``).

    Examples
    --------
    >>> from node_app.config import load_config
    >>> make_runtime(load_config(None, environ={}, overrides={"runtime": "process"})).name
    'process'
    """
    choice = config.runtime
    if choice == "podman":
        from .podman import PodmanRuntime

        return PodmanRuntime(
            socket=config.podman_socket or None,
            cgroup_parent=config.podman_cgroup_parent,
            node_name=config.name,
            instance=f"{config.name}@{config.data_dir}",
            registry=config.image_registry or None,
            warm=True,
            warm_spares=_warm_spares(config),
            start_service=True,
        )
    if choice in ("docker", "auto"):
        from .docker import engine_answers  # imports the docker SDK lazily

        if engine_answers():
            from .docker import DockerRuntime

            # The data folder tells this node's containers from those of another node (or demo
            # network) with the same name on the same engine.
            return DockerRuntime(
                node_name=config.name,
                instance=f"{config.name}@{config.data_dir}",
                registry=config.image_registry or None,
                warm=True,
                warm_spares=_warm_spares(config),
            )
        if choice == "docker":
            from vantage6nb.common.errors import ConfigurationError

            raise ConfigurationError(
                "runtime is 'docker' but no Docker engine answers; start one, or set `runtime: process` "
                "(no isolation) in node.yaml"
            )
    from .process import ProcessRuntime

    log.warning(NO_ISOLATION_WARNING)
    return ProcessRuntime(
        config.process_algorithms, warm=bool(config.raw.get("process_warm", True))
    )


def _warm_spares(config: NodeConfig) -> int:
    """``container_warm_spares`` (never below 0)."""
    return max(0, int(config.raw.get("container_warm_spares", 4)))
