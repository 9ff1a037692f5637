"""Reading a run's output back without trusting the algorithm: no links, regular files, a size bound.

Everything the node takes from a run's writable folder goes through here. The algorithm controls
that folder, so a name in it may be a symbolic link to a node file, a FIFO that blocks the reader,
a hard link, or a sparse file that claims gigabytes; the node opens it with ``O_NOFOLLOW`` relative
to a descriptor of the folder, checks the opened descriptor (``fstat``) and copies at most the
configured limit, whatever the file says about itself. Anything else is a refusal whose reason
says what the algorithm did (docs/security.md, "What an algorithm can do to its node").

An output is complete only once it has its name: the algorithm wrapper writes ``OUTPUT_FILE``
under a temporary name and renames it, and the node's own copy (``RunSpec.output_file``) is
written the same way, so a node that dies at any moment leaves either a whole output or none
(:func:`committed_output`; docs/operations.md, "Exactly once").
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from vantage6nb.common.schemas import RunStatus

from .base import RuntimeRefusal

__all__ = [
    "ALGORITHM_OUTPUT_DIR",
    "MISSING_OUTPUT",
    "NOTHING_UPLOADED",
    "committed_output",
    "copy_output",
    "copy_output_at",
    "extract_output",
    "output_refusal",
    "too_large",
]

NOTHING_UPLOADED = "nothing was uploaded"
#: the folder of a run's work folder the process runtime's algorithm writes its output into
ALGORITHM_OUTPUT_DIR = "algorithm-output"
MISSING_OUTPUT = "algorithm exited without writing its output (OUTPUT_FILE is missing)"
_CHUNK = 1 << 20
_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def output_refusal(what: str) -> RuntimeRefusal:
    """The FAILED refusal of an output the node will not read; ``what`` says what the algorithm did.

    Examples
    --------
    >>> output_refusal("OUTPUT_FILE is a symbolic link").reason
    'OUTPUT_FILE is a symbolic link; the node reads only a regular file the algorithm wrote: nothing was uploaded'
    """
    return RuntimeRefusal(
        RunStatus.FAILED,
        f"{what}; the node reads only a regular file the algorithm wrote: {NOTHING_UPLOADED}",
    )


def too_large(size: int, limit: int) -> RuntimeRefusal:
    """The refusal of an output over ``limit`` bytes (``size`` is what the file claims).

    Examples
    --------
    >>> too_large(9 * 2**30, 256 * 2**20).reason
    'OUTPUT_FILE holds 9216.0 MiB, more than the node returns (limits.output_mb = 256 in node.yaml): nothing was uploaded'
    """
    return RuntimeRefusal(
        RunStatus.FAILED,
        f"OUTPUT_FILE holds {size / 2**20:.1f} MiB, more than the node returns "
        f"(limits.output_mb = {limit // 2**20} in node.yaml): {NOTHING_UPLOADED}",
    )


def _kind(mode: int) -> str | None:
    """What a non-regular file is ("a symbolic link" ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def copy_output(folder: Path, name: str, dest: Path, *, limit: int) -> None:
    """Copy ``folder/name`` to ``dest`` (node-owned, mode 0600), refusing links and anything large.

    ``folder`` itself is opened without following a link, and ``name`` must be one path component
    in it: the algorithm can replace the file but not the folder it was given.

    Raises
    ------
    RuntimeRefusal
        FAILED, with what the algorithm did, when the output is not a regular file with one link,
        or holds more than ``limit`` bytes; nothing is written to ``dest`` then.
    FileNotFoundError
        When there is no output at all (the caller reports the missing output).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "out").write_text("{}")
    >>> copy_output(d, "out", d / "taken", limit=10); (d / "taken").read_text()
    '{}'
    >>> (d / "link").symlink_to(d / "taken")
    >>> copy_output(d, "link", d / "x", limit=10)
    Traceback (most recent call last):
    ...
    node_app.runtimes.base.RuntimeRefusal: OUTPUT_FILE is a symbolic link; the node reads only a regular file the algorithm wrote: nothing was uploaded
    """
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        copy_output_at(dfd, name, dest, limit=limit)
    finally:
        os.close(dfd)


def copy_output_at(dfd: int, name: str, dest: Path, *, limit: int) -> None:
    """:func:`copy_output` of ``name`` in the folder open as ``dfd`` (the caller closes it).

    For a folder the node reaches only through a descriptor (a run volume seen through its
    side-car's mount namespace); the same checks: no links, a regular file, bounded by ``limit``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "out").write_text("[]")
    >>> fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    >>> copy_output_at(fd, "out", d / "taken", limit=10); os.close(fd); (d / "taken").read_text()
    '[]'
    """
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"not a file name: {name!r}")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: a link fails (ELOOP)
        fd = os.open(
            name,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
            dir_fd=dfd,
        )
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        st = os.lstat(name, dir_fd=dfd)
        raise output_refusal(f"OUTPUT_FILE is {_kind(st.st_mode) or 'unreadable'}") from None
    st = os.fstat(fd)  # before fdopen, which refuses a folder with an error of its own
    kind = _kind(st.st_mode)
    if kind is not None:
        os.close(fd)
        raise output_refusal(f"OUTPUT_FILE is {kind}")
    with os.fdopen(fd, "rb", buffering=0) as src:
        if st.st_nlink != 1:
            raise output_refusal("OUTPUT_FILE is a hard link to another file")
        if st.st_size > limit:
            raise too_large(st.st_size, limit)
        _write_bounded(iter(lambda: src.read(_CHUNK), b""), dest, limit)


def committed_output(workdir: Path, name: str, *, limit: int) -> Path | None:
    """The complete output a run left in ``workdir`` (a previous life's), or None when it left none.

    Either the node's copy ``workdir/name`` (written by rename after the algorithm exited
    successfully), or the algorithm's own ``workdir/algorithm-output/name``, which the wrapper
    names only once it is whole; the latter is copied to ``workdir/name`` as :func:`copy_output`
    copies (no links, bounded). A temporary ``.partial`` file is never an output.

    Raises
    ------
    RuntimeRefusal
        When the algorithm's file is not one the node reads (a link, too large ...).

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / ALGORITHM_OUTPUT_DIR).mkdir()
    >>> _ = (d / ALGORITHM_OUTPUT_DIR / "output.json.partial").write_text('{"half')
    >>> committed_output(d, "output.json", limit=100) is None
    True
    >>> _ = (d / ALGORITHM_OUTPUT_DIR / "output.json").write_text("{}")
    >>> committed_output(d, "output.json", limit=100).read_text()
    '{}'
    """
    mine = workdir / name
    try:
        if stat.S_ISREG(os.lstat(mine).st_mode):
            return mine
    except FileNotFoundError:
        pass
    try:
        copy_output(workdir / ALGORITHM_OUTPUT_DIR, name, mine, limit=limit)
    except FileNotFoundError:
        return None
    return mine


def extract_output(
    stat_header: dict[str, Any], chunks: Iterable[bytes], dest: Path, *, limit: int
) -> None:
    """Write the one file of a Docker archive (``get_archive``) to ``dest``, bounded by ``limit``.

    ``stat_header`` is the engine's description of the path (``X-Docker-Container-Path-Stat``):
    a link or any non-regular file is refused from it, and so is a size over the limit, before a
    byte of the archive is read. The archive's member is checked again as it is read.
    """
    mode = int(stat_header.get("mode") or 0)
    # Go's os.FileMode: type bits above the permission bits (dir 1<<31, symlink 1<<27, pipe 1<<25,
    # socket 1<<24, device 1<<26, char device 1<<21, irregular 1<<19).
    if mode & (1 << 27) or stat_header.get("linkTarget"):
        raise output_refusal("OUTPUT_FILE is a symbolic link")
    if mode & ((1 << 31) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)):
        raise output_refusal("OUTPUT_FILE is not a regular file")
    size = int(stat_header.get("size") or 0)
    if size > limit:
        raise too_large(size, limit)
    with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as tar:
        member = tar.next()
        if member is None:
            raise FileNotFoundError("the archive holds no file")
        if not member.isreg():
            raise output_refusal("OUTPUT_FILE is not a regular file")
        if member.size > limit:
            raise too_large(member.size, limit)
        fh = tar.extractfile(member)
        assert fh is not None  # a regular member always has a file object
        _write_bounded(iter(lambda: fh.read(_CHUNK), b""), dest, limit)


def _write_bounded(chunks: Iterator[bytes], dest: Path, limit: int) -> None:
    """Write ``chunks`` to ``dest`` (created fresh, 0600), stopping as soon as ``limit`` is passed."""
    partial = dest.with_name(dest.name + ".partial")
    written = 0
    try:
        fd = os.open(
            partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                written += len(chunk)
                if written > limit:  # the file grew after its size was checked
                    raise too_large(written, limit)
                out.write(chunk)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


class _ChunkReader:
    """A read-only file object over an iterator of byte chunks (for ``tarfile``'s stream mode)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out
