"""Warm single-use algorithm containers: started before their run, imports done, waiting for its input."""

# A spare is a run's two containers and run volume (relay side-car + algorithm), created with every
# option of a cold run's, but before any run exists: its labels say `v6nb.run=spare`, its
# environment holds only the image's own and the neutral base (TMPDIR, HOME, PYTHONUNBUFFERED).
# Its interpreter runs WARM_BOOTSTRAP (standard library only, so it works with the vantage6nb of
# any image): it imports numpy, pandas, the wrapper and the algorithm module, decides which wrapper
# the module runs through, then polls the run volume for BUNDLE. The node writes the run's input,
# token and output folder first and the bundle last (by rename where the node sees the volume,
# else as the last member of one archive, which the bootstrap re-reads until it parses). The
# bundle carries the run's whole contract environment; the bootstrap applies it to os.environ and
# runs `python -m vantage6nb.algorithm` as the image's command would, then the container exits.
# A spare serves exactly one run: the pool hands each out once and the node removes it after.
# The bundle also names its run (`run`, which the bootstrap ignores): a node killed after the
# handoff but before the spare was renamed learns from it which run the container served
# (DockerRuntime.recover; docs/operations.md, "Exactly once").

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .base import Limits
from .docker_sidecar import Sidecar, remove

__all__ = ["BUNDLE", "EXITED", "WARM_BOOTSTRAP", "Spare", "SparePool", "WarmKey", "warm_entry"]

log = logging.getLogger(__name__)

BUNDLE = "run.json"  # in the run volume: the run's environment, written last
READY = ".warm"  # in the run volume: written by the spare once its imports are done
EXITED = ".exit"  # in the run volume: the exit code, written by the spare just before it exits
_PYTHON = re.compile(r"^(?:/[\w./-]*/)?python3?(?:\.\d+)?$")

WARM_BOOTSTRAP = """\
import importlib, json, os, sys, time  # v6nb warm spare: waits for its one run
io_dir, args = sys.argv[1], sys.argv[2:]
module = args[0] if args else os.environ.get("PKG_NAME")
for name in ("numpy", "pandas", "vantage6nb.common.contract", "vantage6nb.algorithm",
             "vantage6nb.algorithm._wrap", "vantage6nb.algorithm._vantage6"):
    try:
        importlib.import_module(name)
    except Exception:
        pass
if module:
    if os.environ.get("V6NB_WRAPPER", "auto") == "auto":
        try:
            from vantage6nb.algorithm._vantage6 import built_on_vantage6
            os.environ["V6NB_WRAPPER"] = "vantage6" if built_on_vantage6(module) else "vantage6nb"
        except Exception:
            pass
    if os.environ.get("V6NB_WRAPPER") == "vantage6":
        try:
            importlib.import_module("vantage6.algorithm.tools.wrap")
        except Exception:
            pass
    try:
        importlib.import_module(module)
    except BaseException:
        pass  # the run imports it again, and its log says why it fails
try:
    open(os.path.join(io_dir, ".warm"), "x").close()  # imports done (what a benchmark waits for)
except OSError:
    pass
path = os.path.join(io_dir, "run.json")
while True:
    try:
        with open(path, "rb") as fh:
            bundle = json.loads(fh.read())
        if isinstance(bundle, dict) and isinstance(bundle.get("env"), dict):
            break
    except (OSError, ValueError):
        pass
    time.sleep(0.002)
os.environ.update({str(k): str(v) for k, v in bundle["env"].items()})
import atexit, runpy, threading
sys.argv = ["vantage6nb.algorithm", *args]
code = 0
try:
    runpy.run_module("vantage6nb.algorithm", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
except BaseException:
    import traceback
    traceback.print_exc()
    code = 1
# end as the interpreter would (threads, atexit), but without tearing down pandas' modules
for t in threading.enumerate():
    if t is not threading.main_thread() and not t.daemon:
        t.join()
atexit._run_exitfuncs()
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except Exception:
        pass
try:  # the exit code, for the node to read once the streams close (before the engine says so)
    with open(os.path.join(io_dir, ".exit.partial"), "w") as fh:
        fh.write(str(code & 0xFF))
    os.rename(os.path.join(io_dir, ".exit.partial"), os.path.join(io_dir, ".exit"))
except OSError:
    pass
os._exit(code & 0xFF)
"""


def warm_entry(image_attrs: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The interpreter and wrapper arguments of an image that runs ``python -m vantage6nb.algorithm``.

    Only such images get spares (their command is known to be our wrapper); any other image
    (vantage6's own entry points, a shell script) runs cold.

    Examples
    --------
    >>> warm_entry({"Config": {"Entrypoint": ["python3", "-m", "vantage6nb.algorithm"]}})
    ('python3', [])
    >>> warm_entry({"Config": {"Cmd": ["/bin/sh", "-c", "run.sh"]}}) is None
    True
    """
    cfg = image_attrs.get("Config") or {}
    entry = list(cfg.get("Entrypoint") or [])
    argv = entry + list(cfg.get("Cmd") or []) if entry else list(cfg.get("Cmd") or [])
    if len(argv) >= 3 and _PYTHON.match(argv[0]) and argv[1:3] == ["-m", "vantage6nb.algorithm"]:
        rest = argv[3:]
        if all(not a.startswith("-") for a in rest):  # `--describe` and the like: not a run
            return argv[0], rest
    return None


@dataclasses.dataclass(frozen=True)
class WarmKey:
    """What a spare was made for; a run takes it only when its own key is equal.

    The image (by id: a moved tag or another digest is another key), the data it mounts, every
    limit, the users and the proxy it relays to: all that a container fixes at its creation.
    """

    image_id: str
    databases: tuple[tuple[str, str, str], ...]  # (label, uri, type)
    limits: Limits
    user: tuple[int, int]
    proxy_socket: str | None
    sidecar_image: str


@dataclasses.dataclass
class Spare:
    """A started spare: its side-car (with the run volume) and its waiting algorithm container."""

    key: WarmKey
    sidecar: Sidecar
    container: Any

    def ready(self) -> bool:
        """Whether its interpreter has done the imports (it then only waits for the bundle)."""
        # None: not there yet (or the container is gone)
        return self.sidecar.volume.read_small(self.sidecar.container, READY) is not None

    def parts(self) -> list[Any]:
        """What :func:`~.docker_sidecar.remove` takes: the algorithm first, then its side-car."""
        return [self.container, self.sidecar]


class SparePool:
    """At most ``capacity`` spares, one per slot (proxy socket and image name); each taken once.

    Parameters
    ----------
    capacity
        How many spares may exist at once; the oldest goes when a new slot needs room.
    submit
        Runs a start in the background (the runtime's starter thread); returns its future.
    discard
        Removes a spare's containers (the runtime's background removal).

    Examples
    --------
    >>> pool = SparePool(0, submit=None, discard=None)  # doctest: +SKIP
    >>> pool.take(("sock", "img"), key) is None  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        capacity: int,
        *,
        submit: Callable[[Callable[[], Spare]], Future[Spare]],
        discard: Callable[[list[Any]], None],
    ) -> None:
        self.capacity = int(capacity)
        self._submit = submit
        self._discard = discard
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], tuple[WarmKey, Future[Spare]]] = {}  # oldest first
        self._closed = False

    def take(self, slot: tuple[str, str], key: WarmKey, *, timeout: float = 60.0) -> Spare | None:
        """The slot's spare when it was made for ``key`` and is running; else None (run cold).

        A spare made for another key (the image, its digest, the data or the limits changed) is
        discarded. Whatever is returned is no longer in the pool: no second run can take it.
        """
        with self._lock:
            entry = self._slots.pop(slot, None)
        if entry is None:
            return None
        made_for, future = entry
        if made_for != key:
            log.info("spare for %s made for other settings: discarded", slot[1])
            self._discard_future(future)
            return None
        try:
            spare = future.result(timeout=timeout)
            spare.container.reload()
            if spare.container.status == "running":
                return spare
            log.warning("spare for %s is %s: running cold", slot[1], spare.container.status)
            self._discard(spare.parts())
        except Exception as exc:  # it failed to start: the run starts cold
            log.warning("spare for %s unusable (%s): running cold", slot[1], exc)
            self._discard_future(future)
        return None

    def discard_stale(self, slot: tuple[str, str], image_id: str) -> None:
        """Discard the slot's spare when it was made of another image than ``image_id``."""
        with self._lock:
            entry = self._slots.get(slot)
            if entry is None or entry[0].image_id == image_id:
                return
            del self._slots[slot]
        log.info("image %s changed: its spare is discarded", slot[1])
        self._discard_future(entry[1])

    def offer(self, slot: tuple[str, str], key: WarmKey, start: Callable[[], Spare]) -> None:
        """Start a spare for ``slot`` in the background, unless one is there or starting."""
        if self.capacity <= 0:
            return
        evicted = []
        with self._lock:
            if self._closed or slot in self._slots:
                return
            while len(self._slots) >= self.capacity:
                oldest = next(iter(self._slots))
                evicted.append(self._slots.pop(oldest)[1])
            try:
                self._slots[slot] = (key, self._submit(start))
            except RuntimeError:  # the runtime is closing: its starter takes nothing more
                pass
        for future in evicted:
            self._discard_future(future)

    def holds(self) -> int:
        """How many spares are in the pool (started or starting)."""
        with self._lock:
            return len(self._slots)

    def waiting(self) -> list[Spare]:
        """The spares that have started (for benchmarks: :meth:`Spare.ready`)."""
        with self._lock:
            futures = [f for _, f in self._slots.values()]
        return [f.result() for f in futures if f.done() and f.exception() is None]

    def close(self) -> list[Future[Spare]]:
        """Take no more spares; returns the ones there were, for the caller to remove."""
        with self._lock:
            self._closed = True
            futures = [f for _, f in self._slots.values()]
            self._slots.clear()
        return futures

    def _discard_future(self, future: Future[Spare]) -> None:
        def gone(done: Future[Spare]) -> None:
            with contextlib.suppress(Exception):  # it never started: nothing to remove
                self._discard(done.result().parts())

        future.add_done_callback(gone)


def remove_spare(future: Future[Spare], timeout: float = 60.0) -> None:
    """Remove a spare once its start has finished (nothing when it never started)."""
    with contextlib.suppress(Exception):
        remove(future.result(timeout=timeout).parts())
