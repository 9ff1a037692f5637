"""Where a run's files appear inside its container: a capped run folder, and the data mounts."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vantage6nb.common.schemas import RunStatus

from .base import RunSpec, RuntimeRefusal
from .output import copy_output, copy_output_at, extract_output

__all__ = ["DATA_DIR", "IO_DIR", "ContainerFiles", "RunVolume", "container_files"]

log = logging.getLogger(__name__)

RUN_DIR = "/v6nb"
DATA_DIR = f"{RUN_DIR}/data"
IO_DIR = f"{RUN_DIR}/io"  # the run volume: input, token and the output folder
OUTPUT_SUBDIR = "output"
_SQLITE = re.compile(r"^(sqlite(?:\+\w+)?):///(.+)$")


@dataclass
class ContainerFiles:
    """The in-container paths of one run's files and the read-only data mounts.

    Input, token and output live in the run's :class:`RunVolume` (mounted at ``IO_DIR``), so the
    container sees neutral paths for them and no host folder it could fill.
    """

    input_file: str
    token_file: str
    output_file: str
    volumes: list[str] = field(default_factory=list)  # "host:container:ro", the SDK's list form
    database_uris: dict[str, str] = field(default_factory=dict)


def container_files(spec: RunSpec) -> ContainerFiles:
    """Plan the paths for ``spec``: run files in the run volume, data read-only under ``/v6nb/data``.

    Files given by path (csv, parquet, excel, an ``sqlite:///`` URL) are mounted read-only under
    ``/v6nb/data`` and their URIs rewritten; other SQL URLs pass unchanged (the container has no
    network, so they only work through the proxy, never directly).

    Examples
    --------
    >>> from node_app.runtimes.base import DatabaseMount, RunSpec  # doctest: +SKIP
    >>> files = container_files(spec)  # doctest: +SKIP
    >>> files.database_uris["default"]  # doctest: +SKIP
    '/v6nb/data/0-default.csv'
    """
    files = ContainerFiles(
        input_file=f"{IO_DIR}/input",
        token_file=f"{IO_DIR}/token",
        output_file=f"{IO_DIR}/{OUTPUT_SUBDIR}/{spec.output_file.name or 'output'}",
    )
    for i, db in enumerate(spec.databases):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", db.label) or f"db{i}"
        sqlite = _SQLITE.match(db.uri)
        host_path = sqlite.group(2) if sqlite else db.uri
        if db.type == "sql" and not sqlite:
            files.database_uris[db.label] = db.uri
            continue
        host_path = str(Path(host_path).resolve())
        suffix = Path(host_path).suffix
        inside = f"{DATA_DIR}/{i}-{safe}{suffix}"
        files.volumes.append(f"{host_path}:{inside}:ro")
        files.database_uris[db.label] = f"{sqlite.group(1)}:///{inside}" if sqlite else inside
    return files


class RunVolume:
    """A run's only writable folder besides its scratch: a tmpfs volume of ``size_mb``, owned by the
    algorithm's uid, mode 0700.

    The engine mounts it (so a node without root gets the cap too); the run's side-car keeps it
    mounted from before the algorithm starts until the node has read the output. The node writes the
    input and token into it and reads the output out of it through the volume's mount point when it
    may (a root node sharing the engine's mount namespace), else through the side-car's archive API.
    A root node whose engine mounts the volume in another mount namespace (a rootless Podman's)
    still reads it directly, through the side-car's (:meth:`read_via`); it writes through the
    archive API there. A node without root reads it through the engine's namespaces too, with
    its reader there (:meth:`read_with`). Either way links are not followed and the read is
    bounded (:mod:`.output`).
    """

    def __init__(
        self, client: Any, *, labels: dict[str, str], size_mb: int, owner: tuple[int, int]
    ) -> None:
        uid, gid = owner
        self.owner = owner
        self.size_mb = int(size_mb)
        self.volume = client.volumes.create(
            driver="local",
            driver_opts={
                "type": "tmpfs",
                "device": "tmpfs",
                "o": f"size={self.size_mb}m,uid={uid},gid={gid},mode=0700,nosuid,nodev",
            },
            labels=labels,
        )
        self.name: str = self.volume.name
        self._host: Path | None = None  # the mount point, when the node may use it directly
        self._host_checked = False
        self._proc: int | None = None  # /proc/<pid> of the side-car, when reading through it
        self._reader: Any = None  # a node without root: its reader in the engine's namespaces
        self._reader_owner: tuple[int, int] = owner

    @classmethod
    def existing(cls, client: Any, name: str, *, owner: tuple[int, int]) -> RunVolume:
        """The run volume ``name`` a previous life of the node created (to read its output).

        Examples
        --------
        >>> RunVolume.existing(client, "3f2a...", owner=(10001, 10001))  # doctest: +SKIP
        """
        self = cls.__new__(cls)
        self.owner = owner
        self.volume = client.volumes.get(name)
        self.name = self.volume.name
        self.size_mb = 0  # not known, and not needed to read
        self._host, self._host_checked = None, False
        self._proc = None
        self._reader, self._reader_owner = None, owner
        return self

    def bind(self) -> dict[str, dict[str, str]]:
        """The ``volumes=`` entry that mounts the volume at ``IO_DIR``."""
        return {self.name: {"bind": IO_DIR, "mode": "rw"}}

    def _host_dir(self) -> Path | None:
        """The volume's mount point on this host when the node may use it directly, else None.

        Asked once the side-car holds the volume (mounted); the answer is kept for the run.
        """
        if self._host_checked:
            return self._host
        self._host_checked = True
        if os.geteuid() == 0:
            with contextlib.suppress(OSError):
                # the engine's answer to the create names it; no further request
                mp = Path(self.volume.attrs.get("Mountpoint") or "")
                # Only a mounted tmpfs (another device than its parent): else the engine lives in
                # another mount namespace and the folder here is not the one the container sees.
                if mp.is_absolute() and os.stat(mp).st_dev != os.stat(mp.parent).st_dev:
                    self._host = mp
        return self._host

    def read_via(self, pid: int, owner: tuple[int, int]) -> bool:
        """Read this volume's files (never write them) through the mount namespace of ``pid``.

        ``pid`` is the side-car's process (it holds the volume at ``IO_DIR``), ``owner`` the
        algorithm's uid and gid as this host numbers them (a rootless engine maps them). The node
        keeps a descriptor of ``/proc/<pid>``: once that process has ended, reads through it fail
        (a pid used again by another process is never read). Only taken when what it reaches is
        the run volume: a mount point of its own, a folder of ``owner``'s, mode 0700. False (and
        the archive API stays in use) when it is not, or the node may not look (not root).

        Examples
        --------
        >>> volume.read_via(sidecar.attrs["State"]["Pid"], (110000, 110000))  # doctest: +SKIP
        True
        """
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        try:
            proc = os.open(f"/proc/{int(pid)}", flags)
        except (OSError, ValueError):
            return False
        try:
            parent = os.stat(f"root{RUN_DIR}", dir_fd=proc, follow_symlinks=False)
            io_fd = os.open(f"root{IO_DIR}", flags | os.O_NOFOLLOW, dir_fd=proc)
            try:
                st = os.fstat(io_fd)
            finally:
                os.close(io_fd)
        except OSError:
            os.close(proc)
            return False
        if (
            st.st_dev == parent.st_dev  # not a mount point: not the volume
            or (st.st_uid, st.st_gid) != tuple(owner)
            or stat.S_IMODE(st.st_mode) != 0o700
        ):
            os.close(proc)
            return False
        if self._proc is not None:
            os.close(self._proc)
        self._proc = proc
        return True

    def read_with(self, reader: Any, owner: tuple[int, int]) -> None:
        """Read this volume's files (never write them) through ``reader``, a node without root.

        ``reader`` (a :class:`~.podman.VolumeReader`) runs in the engine's user and mount
        namespaces, where the volume's ``Mountpoint`` is mounted and ``owner`` (the algorithm's
        uid and gid as that namespace numbers them) owns it; it does every check of
        :func:`.output.copy_output_at` and that the folder is the volume's own mount, mode 0700.
        When it fails (``ReaderFailed``), the archive API reads instead.

        Examples
        --------
        >>> volume.read_with(runtime._reader, (10001, 10001))  # doctest: +SKIP
        """
        self._reader, self._reader_owner = reader, tuple(owner)

    def _mountpoint(self) -> str | None:
        mp = self.volume.attrs.get("Mountpoint") if self._reader is not None else None
        return mp if isinstance(mp, str) and mp.startswith("/") else None

    def _open_inside(self, path: str) -> int:
        """A descriptor of the folder ``path`` of the volume (relative), through the side-car.

        The last component is not followed (the algorithm may have put a link there); the side-car
        gone: FileNotFoundError.
        """
        assert self._proc is not None
        where = f"root{IO_DIR}/{path}" if path else f"root{IO_DIR}"
        try:
            return os.open(
                where,
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=self._proc,
            )
        except FileNotFoundError:
            raise
        except OSError as exc:  # ESRCH (the side-car ended), ELOOP/ENOTDIR (not a folder)
            raise FileNotFoundError(f"{IO_DIR}/{path}: {exc}") from exc

    def write_inputs(
        self, holder: Any, files: dict[str, bytes], *, last: tuple[str, bytes] | None = None
    ) -> None:
        """Put ``files`` (read-only for the algorithm) and an empty output folder into the volume.

        ``last`` (a warm spare's run bundle) comes after everything else: by rename where the
        node writes the volume itself, else as the archive's last member (a reader re-reads it
        until it is complete).
        """
        uid, gid = self.owner
        host = self._host_dir()
        try:
            if host is not None:
                dfd = os.open(host, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                try:
                    for name, data in files.items():
                        _write_owned(dfd, name, data, uid, gid)
                    os.mkdir(OUTPUT_SUBDIR, 0o700, dir_fd=dfd)
                    os.chown(OUTPUT_SUBDIR, uid, gid, dir_fd=dfd)
                    if last is not None:
                        name, data = last
                        _write_owned(dfd, f".{name}.partial", data, uid, gid)
                        os.rename(f".{name}.partial", name, src_dir_fd=dfd, dst_dir_fd=dfd)
                finally:
                    os.close(dfd)
                return
            holder.put_archive(IO_DIR, _tar(files, uid, gid, last=last))
        except OSError as exc:
            raise RuntimeRefusal(RunStatus.FAILED, self._full(exc, "the run's input")) from exc

    def _full(self, exc: BaseException, what: str) -> str:
        if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
            return (
                f"{what} does not fit in the run's folder (limits.output_mb = {self.size_mb} "
                "in node.yaml)"
            )
        return f"could not write {what} for the algorithm: {exc}"

    def take_output(self, holder: Any, name: str, dest: Path, *, limit: int) -> None:
        """Copy the output ``name`` to ``dest`` (see :func:`.output.copy_output`)."""
        host = self._host_dir()
        if host is not None:
            out = host / OUTPUT_SUBDIR
            if out.is_symlink() or not out.is_dir():  # the algorithm replaced its output folder
                raise FileNotFoundError(str(out))
            copy_output(out, name, dest, limit=limit)
            return
        if self._proc is not None:
            dfd = self._open_inside(OUTPUT_SUBDIR)
            try:
                copy_output_at(dfd, name, dest, limit=limit)
            finally:
                os.close(dfd)
            return
        mp = self._mountpoint()
        if mp is not None:
            from .podman import ReaderFailed

            try:
                self._reader.copy(mp, self._reader_owner, name, dest, limit)
                return
            except ReaderFailed as exc:
                log.warning("run volume %s: %s; reading it through the archive API", self.name, exc)
        import docker.errors

        try:
            chunks, header = holder.get_archive(f"{IO_DIR}/{OUTPUT_SUBDIR}/{name}")
        except docker.errors.NotFound as exc:
            raise FileNotFoundError(name) from exc
        extract_output(header, chunks, dest, limit=limit)

    def read_small(self, holder: Any, name: str, *, limit: int = 64) -> bytes | None:
        """The first ``limit`` bytes of the regular file ``name`` in the volume; None: no such file.

        Links are not followed (the algorithm could have put one there).
        """
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a file name: {name!r}")
        host = self._host_dir()
        if host is not None or self._proc is not None:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                if host is not None:
                    fd = os.open(host / name, flags)
                else:
                    dfd = self._open_inside("")
                    try:
                        fd = os.open(name, flags, dir_fd=dfd)
                    finally:
                        os.close(dfd)
            except OSError:
                return None
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    return None
                return fh.read(limit)
        mp = self._mountpoint()
        if mp is not None:
            from .podman import ReaderFailed

            try:
                return self._reader.read(mp, self._reader_owner, name, limit)
            except ReaderFailed as exc:
                log.debug("run volume %s: %s; reading it through the archive API", self.name, exc)
        try:
            chunks, header = holder.get_archive(f"{IO_DIR}/{name}")
            data = b"".join(chunks)
        except Exception:  # not there (yet), or the holder is gone
            return None
        if int(header.get("mode") or 0) & ~0o7777 or header.get("linkTarget"):
            return None  # not a regular file
        with contextlib.suppress(tarfile.TarError), tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is not None and member.isreg():
                fh = tar.extractfile(member)
                return fh.read(limit) if fh is not None else None
        return None

    def remove(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                os.close(self._proc)
            self._proc = None
        with contextlib.suppress(Exception):  # already gone
            self.volume.remove(force=True)


def _write_owned(dfd: int, name: str, data: bytes, uid: int, gid: int) -> None:
    """Create ``name`` in the folder ``dfd`` (never an existing one), read-only for its owner."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400, dir_fd=dfd)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        os.fchown(fh.fileno(), uid, gid)


def _tar(
    files: dict[str, bytes], uid: int, gid: int, *, last: tuple[str, bytes] | None = None
) -> bytes:
    buf = io.BytesIO()

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.uid, info.gid, info.mode = len(data), uid, gid, 0o400
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            add(name, data)
        folder = tarfile.TarInfo(OUTPUT_SUBDIR)
        folder.type, folder.uid, folder.gid, folder.mode = tarfile.DIRTYPE, uid, gid, 0o700
        tar.addfile(folder)
        if last is not None:
            add(*last)
    return buf.getvalue()
