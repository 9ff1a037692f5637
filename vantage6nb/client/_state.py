"""``ResearcherState``: what a researcher's client remembers about a server, in a folder of its own.

Like SSH's ``known_hosts``, one file per server URL in the state folder (default
``$XDG_STATE_HOME/vantage6nb``, else ``~/.local/state/vantage6nb``) holds

- the pinned fingerprints of organizations' public keys (``key_pins``),
- the collaborations this client has seen encrypted (``encrypted``), which it never sends
  plaintext to, whatever the server says later,

and a second file beside it (``<name>.tasks.jsonl``, one line per task, appended) what every task
created from this folder was bound to: its id, uid, collaboration, initiating organization and runs.
A result is accepted only for that binding.

Files are written under an advisory lock, whole files by an atomic rename, with mode 0600 in a
folder of mode 0700, so two notebooks of the same researcher can share the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

try:  # advisory locks between processes (POSIX); without fcntl only threads are serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["ResearcherState", "StateDirWarning", "default_state_dir", "state_file_name"]

_VERSION = 1
T = TypeVar("T")


class StateDirWarning(UserWarning):
    """The state folder cannot be written: pins and task records last only for this session."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/vantage6nb``, or ``~/.local/state/vantage6nb`` when it is not set.

    Examples
    --------
    >>> default_state_dir().name
    'vantage6nb'
    """
    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "vantage6nb"


def state_file_name(url: str) -> str:
    """The file name (without suffix) for a server URL: readable, and unique by a short hash.

    Examples
    --------
    >>> state_file_name("http://127.0.0.1:7601")
    'http___127.0.0.1_7601-443303d3'
    """
    readable = re.sub(r"[^A-Za-z0-9.-]", "_", url)[:80]
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    return f"{readable}-{digest}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResearcherState:
    """Key pins, encrypted collaborations and created tasks for one server URL.

    Nothing is written until there is something to remember; the folder is then created (mode
    0700). A folder that cannot be written gives one :class:`StateDirWarning`, after which the
    records last only as long as this object.

    Parameters
    ----------
    url : str
        The server's base URL (as the client normalised it).
    state_dir : path, False or None
        The folder; None: :func:`default_state_dir`; False: keep everything in memory only.

    Examples
    --------
    >>> import tempfile
    >>> state = ResearcherState("http://127.0.0.1:7601", tempfile.mkdtemp())
    >>> state.pin(2, "SHA256:abc", name="Utrecht")
    'SHA256:abc'
    >>> ResearcherState("http://127.0.0.1:7601", state.folder).pins()
    {2: 'SHA256:abc'}
    """

    def __init__(self, url: str, state_dir: str | os.PathLike[str] | bool | None = None) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._data: dict[str, Any] = _empty(url)
        self._data_seen: tuple[int, int, int] | None = None  # _identity of the file last read
        self._tasks: dict[int, dict[str, Any]] = {}
        self._tasks_read = 0  # bytes of the (append-only) tasks file read so far
        self.folder: Path | None = None
        self.path: Path | None = None
        self.tasks_path: Path | None = None
        if state_dir is False:
            return
        folder = default_state_dir() if state_dir in (None, True) else Path(state_dir)  # type: ignore[arg-type]
        self.folder = folder.expanduser()
        name = state_file_name(url)
        self.path = self.folder / f"{name}.json"
        self.tasks_path = self.folder / f"{name}.tasks.jsonl"
        self._lock_path = self.folder / f"{name}.lock"
        self._reload()

    @property
    def persistent(self) -> bool:
        """True when the records are kept in a folder (not only in memory)."""
        return self.folder is not None

    @property
    def where(self) -> str:
        """The state file, for messages (``"this session's memory"`` when nothing is written)."""
        return str(self.path) if self.folder is not None else "this session's memory"

    @property
    def tasks_where(self) -> str:
        """The tasks file, for messages (``"this session's memory"`` when nothing is written)."""
        return str(self.tasks_path) if self.folder is not None else "this session's memory"

    # -- key pins -------------------------------------------------------------------------------
    def pins(self) -> dict[int, str]:
        """Pinned fingerprints ``{organization id: fingerprint}``."""
        with self._lock:
            return {int(k): str(v["fingerprint"]) for k, v in self._data["key_pins"].items()}

    def pin_names(self) -> dict[int, str]:
        """The organization names recorded with the pins (for messages)."""
        with self._lock:
            return {
                int(k): str(v["name"]) for k, v in self._data["key_pins"].items() if v.get("name")
            }

    def pin(
        self, org_id: int, fingerprint: str, *, name: str | None = None, replace: bool = False
    ) -> str:
        """Pin ``fingerprint`` for an organization not pinned yet (``replace``: in any case);
        returns the fingerprint pinned now, which differs from ``fingerprint`` when another was
        pinned before (by this or another client sharing the folder)."""
        key = str(int(org_id))
        with self._lock:
            known = self._data["key_pins"].get(key)
            if known is not None and known["fingerprint"] == fingerprint:
                return fingerprint

            def change(data: dict[str, Any]) -> str:
                known = data["key_pins"].get(key)
                if known is not None and known["fingerprint"] != fingerprint and not replace:
                    return str(known["fingerprint"])  # pinned meanwhile by another client
                data["key_pins"][key] = {"fingerprint": fingerprint, "name": name, "pinned": _now()}
                return fingerprint

            return self._change(change)

    # -- encrypted collaborations --------------------------------------------------------------
    def saw_encrypted(self, collaboration_id: int, name: str | None = None) -> None:
        """Remember that the server listed this collaboration as encrypted."""
        key = str(int(collaboration_id))
        with self._lock:
            if key in self._data["encrypted"]:
                return
            self._change(
                lambda data: data["encrypted"].setdefault(key, {"name": name, "seen": _now()})
            )

    def seen_encrypted(self, collaboration_id: int) -> dict[str, Any] | None:
        """When (and under which name) this collaboration was seen encrypted; None: never."""
        key = str(int(collaboration_id))
        with self._lock:
            hit = self._data["encrypted"].get(key)
            if hit is None and self._reload():  # another client may have seen it since
                hit = self._data["encrypted"].get(key)
            return dict(hit) if hit is not None else None

    def forget_encrypted(self, collaboration_id: int) -> bool:
        """Forget that a collaboration was seen encrypted; True when it was remembered."""
        key = str(int(collaboration_id))
        with self._lock:
            return self._change(lambda data: data["encrypted"].pop(key, None) is not None)

    # -- created tasks --------------------------------------------------------------------------
    def remember_task(self, record: Mapping[str, Any]) -> None:
        """Append what a new task was bound to (``id``, ``uid``, ``collaboration_id``,
        ``init_org_id``, ``runs`` ``{run id: organization id}``)."""
        rec = {**dict(record), "created": _now()}
        rec["runs"] = {str(k): int(v) for k, v in dict(rec.get("runs") or {}).items()}
        with self._lock:
            self._tasks[int(rec["id"])] = rec
            if self.folder is None:
                return
            assert self.tasks_path is not None
            line = json.dumps(rec, separators=(",", ":")) + "\n"
            try:
                with self._locked():
                    fd = os.open(self.tasks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    try:
                        os.write(fd, line.encode("utf-8"))
                    finally:
                        os.close(fd)
            except OSError as exc:
                self._cannot_write(exc)

    def task(self, task_id: int) -> dict[str, Any] | None:
        """What this folder recorded for a task created from it; None when it has no record."""
        with self._lock:
            hit = self._tasks.get(int(task_id))
            if hit is None and self._load_tasks():
                hit = self._tasks.get(int(task_id))
            return dict(hit) if hit is not None else None

    # -- files ------------------------------------------------------------------------------------
    def _load_tasks(self) -> bool:
        """Read what was appended to the tasks file since the last read; True when anything was."""
        if self.folder is None or self.tasks_path is None:
            return False
        try:
            size = self.tasks_path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return False
        if size == self._tasks_read:
            return False
        if size < self._tasks_read:  # replaced or truncated by hand: read it all again
            self._tasks_read = 0
        with self.tasks_path.open("rb") as fh:
            fh.seek(self._tasks_read)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        for line in complete.splitlines():
            try:
                rec = json.loads(line)
                self._tasks[int(rec["id"])] = rec
            except (ValueError, KeyError, TypeError):
                continue  # a torn line of a crashed writer: skip it
        self._tasks_read += len(complete)
        return bool(complete)

    def _reload(self) -> bool:
        """Read the state file again when it changed since the last read; True when it did."""
        if self.folder is None or self.path is None:
            return False
        try:
            seen = _identity(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if seen == self._data_seen:
            return False
        self._data, self._data_seen = self._read(), seen
        return True

    def _read(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return _empty(self.url)
        except ValueError as exc:
            raise ValueError(
                f"The vantage6nb state file {self.path} is not valid JSON ({exc}). It holds the "
                "key pins of this server: repair it, or move it away to start over (every key "
                "is then trusted again on first use)."
            ) from None
        for part in ("key_pins", "encrypted"):
            if not isinstance(data.get(part), dict):
                data[part] = {}
        return data

    def _cannot_write(self, exc: OSError) -> None:
        """Keep going in memory, with one warning: a notebook must not break on a full disk."""
        warnings.warn(
            f"Cannot write the vantage6nb state folder {self.folder} ({exc.strerror or exc}): key "
            "pins, encrypted collaborations and task records now last only for this session. "
            "Pass Client(..., state_dir=<a writable folder>) to keep them.",
            StateDirWarning,
            stacklevel=4,
        )
        self.folder = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        assert self.folder is not None
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _change(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Apply ``change`` to the state file under the lock (re-read first, written after), or
        to the in-memory state without a folder; returns what ``change`` returns."""
        if self.folder is None:
            return change(self._data)
        assert self.path is not None
        try:
            with self._locked():
                data = self._read()
                out = change(data)
                fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.folder)  # mode 0600
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as fh:
                        json.dump(data, fh, indent=1, sort_keys=True)
                    os.replace(tmp, self.path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                self._data, self._data_seen = data, _identity(self.path)
                return out
        except OSError as exc:
            self._cannot_write(exc)
            return change(self._data)


def _identity(path: Path) -> tuple[int, int, int]:
    """What changes when the state file is replaced (each write is a rename: a new inode)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _empty(url: str) -> dict[str, Any]:
    return {"version": _VERSION, "url": url, "key_pins": {}, "encrypted": {}}
