"""A Docker run's side-car: relays the algorithm's loopback to the node's proxy and holds the run volume."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .docker_mounts import RunVolume

__all__ = ["RELAY_PORT", "RELAY_UID", "Sidecar", "remove", "remove_started", "start_sidecar"]

log = logging.getLogger(__name__)

RELAY_UID = (
    10002  # the side-car's user when the node runs as root (not the algorithm's: no signals)
)
RELAY_PORT = 7601  # where the side-car relay listens, on the loopback the algorithm shares with it
_RELAY_READY_S = 3.0
_PROXY_INSIDE = "/run/v6nb/proxy.sock"


@dataclasses.dataclass
class Sidecar:
    """A run's side-car container and the run volume it keeps mounted."""

    container: Any
    volume: RunVolume
    relays: bool  # whether it relays to the node's proxy (the algorithm shares its network)

    def wait_listening(self) -> None:
        """Wait until socat listens, so the algorithm's first request cannot race it."""
        if not self.relays:
            return
        self.container.reload()
        pid = self.container.attrs.get("State", {}).get("Pid") or 0
        want = f"0100007F:{RELAY_PORT:04X}"
        deadline = time.monotonic() + _RELAY_READY_S
        while time.monotonic() < deadline:
            try:
                table = Path(f"/proc/{pid}/net/tcp").read_text()
            except OSError:  # not allowed to look (node not root) or gone: give it a moment instead
                time.sleep(0.05)
                return
            if any(
                line.split()[1] == want and line.split()[3] == "0A"
                for line in table.splitlines()[1:]
            ):
                return
            time.sleep(0.005)
        log.warning("relay %s did not listen within %.0f s", self.container.name, _RELAY_READY_S)


def relay_ids() -> tuple[int, int]:
    """The side-car's uid and gid: not root, and not the algorithm's uid (the socket is 0666)."""
    if os.geteuid() == 0:
        return RELAY_UID, RELAY_UID
    return os.geteuid(), os.getegid()


def start_sidecar(
    client: Any,
    image: str,
    *,
    name: str,
    proxy_socket: Path | None,
    volume: RunVolume,
    options: dict[str, Any],
) -> Sidecar:
    """Start the side-car holding ``volume`` (and relaying to ``proxy_socket``, if any).

    ``options`` are the locked-down container options every run container gets. On failure the
    volume is removed too.
    """
    volumes = volume.bind()
    if proxy_socket is not None:
        command = [
            "socat",
            f"TCP-LISTEN:{RELAY_PORT},bind=127.0.0.1,fork,reuseaddr",
            f"UNIX-CONNECT:{_PROXY_INSIDE}",
        ]
        volumes[str(proxy_socket)] = {"bind": _PROXY_INSIDE, "mode": "rw"}
    else:
        command = ["sleep", "infinity"]  # only holds the run volume
    uid, gid = relay_ids()
    try:
        container = client.containers.create(
            image,
            command=command,
            name=name,
            network_mode="none",
            user=f"{uid}:{gid}",
            volumes=volumes,
            mem_limit="64m",
            pids_limit=64,
            shm_size="1m",
            **options,
        )
    except Exception:
        volume.remove()
        raise
    sidecar = Sidecar(container, volume, relays=proxy_socket is not None)
    try:
        container.start()
    except Exception:
        remove([sidecar])
        raise
    return sidecar


def remove(items: list[Any]) -> None:
    """Remove containers and side-cars (a side-car after the algorithm, then its run volume)."""
    for c in items:
        if isinstance(c, Sidecar):
            with contextlib.suppress(Exception):  # already gone
                c.container.remove(force=True)
            c.volume.remove()
            continue
        with contextlib.suppress(Exception):  # already gone
            c.remove(force=True)


def remove_started(spare: Future[Any]) -> None:
    """Remove a spare side-car once its start has finished (nothing when it never started)."""
    with contextlib.suppress(Exception):
        remove([spare.result(timeout=60)])
