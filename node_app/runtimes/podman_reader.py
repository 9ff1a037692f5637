"""Reads rootless Podman run volumes from inside the user's namespaces, for a node without root."""

# Started by the node as ``podman unshare <python> -m node_app.runtimes.podman_reader``: it is
# then uid 0 of the rootless user namespace (it may read the algorithm's sub-uid files) in the
# mount namespace where Podman mounts a run's tmpfs volume. It answers one JSON line per JSON
# line on stdin; it never logs what it reads. Standard library only, plus .output.

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from .base import RuntimeRefusal
from .output import copy_output_at

__all__ = ["serve"]

OUTPUT_SUBDIR = (
    "output"  # as in .docker_mounts (not imported: it needs no docker SDK, but keep it lean)
)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Unusable(Exception):
    """The folder is not the run volume as the node made it: the node uses the archive API."""


def _open_volume(mountpoint: str, owner: list[int]) -> int:
    """A descriptor of the volume's mount point, only when it is its own mount of ``owner``, 0700."""
    if not os.path.isabs(mountpoint):
        raise _Unusable("not an absolute path")
    try:
        fd = os.open(mountpoint, _DIR)
    except OSError as exc:
        raise _Unusable(f"cannot open the mount point: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        parent = os.stat("..", dir_fd=fd, follow_symlinks=False)
    except OSError as exc:
        os.close(fd)
        raise _Unusable(f"cannot look at the mount point: {exc.strerror}") from None
    if (
        st.st_dev == parent.st_dev  # not mounted here: not the folder the container sees
        or [st.st_uid, st.st_gid] != [int(owner[0]), int(owner[1])]
        or stat.S_IMODE(st.st_mode) != 0o700
    ):
        os.close(fd)
        raise _Unusable("not the run volume's own mount of the algorithm's user, mode 0700")
    return fd


def _name(value: Any) -> str:
    if not isinstance(value, str) or "/" in value or value in ("", ".", ".."):
        raise ValueError("not a file name")
    return value


def _copy(req: dict[str, Any]) -> dict[str, Any]:
    name = _name(req["name"])
    vfd = _open_volume(req["mountpoint"], req["owner"])
    try:
        try:
            dfd = os.open(OUTPUT_SUBDIR, _DIR, dir_fd=vfd)
        except OSError:  # gone, or replaced (a link, a file): as a missing output
            return {"missing": True}
        try:
            copy_output_at(dfd, name, Path(req["dest"]), limit=int(req["limit"]))
        except FileNotFoundError:
            return {"missing": True}
        except RuntimeRefusal as refusal:
            return {"refused": refusal.status.value, "reason": refusal.reason}
        finally:
            os.close(dfd)
    finally:
        os.close(vfd)
    return {"ok": True}


def _read(req: dict[str, Any]) -> dict[str, Any]:
    name = _name(req["name"])
    limit = max(0, int(req["limit"]))
    vfd = _open_volume(req["mountpoint"], req["owner"])
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            fd = os.open(name, flags, dir_fd=vfd)
        except OSError:
            return {"data": None}
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return {"data": None}
            return {"data": base64.b64encode(fh.read(limit)).decode()}
    finally:
        os.close(vfd)


def answer(line: str) -> dict[str, Any]:
    """The answer to one request line (never raises).

    Examples
    --------
    >>> answer('{"op": "ping"}')
    {'pong': True}
    >>> answer('{"op": "read", "mountpoint": "/", "owner": [0, 0], "name": "x", "limit": 1}')["unusable"]
    True
    """
    try:
        req = json.loads(line)
        op = req.get("op")
        if op == "ping":
            return {"pong": True}
        if op == "copy":
            return _copy(req)
        if op == "read":
            return _read(req)
        return {"error": "unknown request"}
    except _Unusable:
        return {"unusable": True}
    except Exception as exc:  # noqa: BLE001 - an answer the node falls back on, never a crash
        return {"error": type(exc).__name__}


def serve() -> None:
    """Answer requests on stdin until it closes (the node closed or died)."""
    out = sys.stdout
    out.write(json.dumps({"ready": True, "uid": os.getuid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        out.write(json.dumps(answer(line)) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
