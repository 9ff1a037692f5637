"""The process runtime: runs an algorithm as a child Python process. No isolation: for trusted code."""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from vantage6nb.common.contract import build_environment
from vantage6nb.common.schemas import RunStatus

from ..policy import parse_image
from .base import (
    Limits,
    RunOutcome,
    RunSpec,
    Runtime,
    RuntimeRefusal,
    crashed_outcome,
    functions_table,
    timed_out_outcome,
)
from .logs import LOG_TAIL_BYTES, LOG_TAIL_LINES, log_tail
from .output import ALGORITHM_OUTPUT_DIR as _OUTPUT_DIR
from .output import MISSING_OUTPUT, copy_output
from .zygote import WarmChild, Zygote, ZygoteError, fork_supported

__all__ = [
    "LOG_TAIL_BYTES",
    "LOG_TAIL_LINES",
    "ProcessAlgorithm",
    "ProcessRuntime",
    "algorithm_environment",
    "log_tail",
]

log = logging.getLogger(__name__)

_KILL_GRACE_S = 2.0
# What a child inherits from the node's environment; everything else (API key, secrets) stays out.
_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "VIRTUAL_ENV", "SYSTEMROOT", "HOME")
_PR_SET_PDEATHSIG = 1
# After a fork server failed to start (an import error, threads started by the imports, an old
# interpreter), its environment runs cold for this long before the next try.
_WARM_RETRY_S = 60.0
# Run in an interpreter of the image's own (a virtual environment), which may lack vantage6nb: our
# wrapper when it has it, else vantage6's (a package built on vantage6-algorithm-tools).
_BOOTSTRAP = """\
import importlib.util, os, runpy, sys
args = sys.argv[1:]
if importlib.util.find_spec("vantage6nb") is not None:
    sys.argv = ["vantage6nb.algorithm", *args]
    runpy.run_module("vantage6nb.algorithm", run_name="__main__", alter_sys=True)
elif args[:1] == ["--describe"]:
    print('{"functions": {}}')
elif importlib.util.find_spec("vantage6") is not None:
    os.environ["PKG_NAME"] = args[0]
    from vantage6.algorithm.tools.wrap import wrap_algorithm
    wrap_algorithm()
else:
    sys.exit("this interpreter has neither vantage6nb nor vantage6-algorithm-tools: install one")
"""


@dataclasses.dataclass(frozen=True)
class ProcessAlgorithm:
    """How the process runtime runs one image: its module, and the interpreter to run it in.

    ``python`` None: the node's own interpreter (and its ``sys.path``). Else the path of another
    interpreter, typically a virtual environment's ``bin/python`` holding the algorithm and its
    dependencies (vantage6-algorithm-tools 4.15 pins ``sqlalchemy==1.4.46``, which cannot share the
    node's interpreter); it runs with its own ``sys.path``, not the node's ``PYTHONPATH``.

    Examples
    --------
    >>> ProcessAlgorithm.parse({"module": "v6_average", "python": "/venv/bin/python"}).python
    '/venv/bin/python'
    >>> ProcessAlgorithm.parse("vantage6nb.algorithms.summary").python is None
    True
    """

    module: str
    python: str | None = None

    @classmethod
    def parse(cls, entry: str | Mapping[str, str] | ProcessAlgorithm) -> ProcessAlgorithm:
        """From a ``process_algorithms`` value: a module name, or ``{module, python}``."""
        if isinstance(entry, ProcessAlgorithm):
            return entry
        if isinstance(entry, str):
            return cls(entry)
        return cls(str(entry["module"]), str(entry["python"]) if entry.get("python") else None)


def algorithm_environment(
    spec: RunSpec, *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The contract environment for ``spec`` (encoded, vantage6 compatible) merged over ``base``.

    A database's ``query`` travels as ``<LABEL>_DB_PARAM_QUERY``, the way vantage6 passes extra
    database parameters.

    Examples
    --------
    The result holds ``INPUT_FILE``, ``OUTPUT_FILE``, ``TOKEN_FILE``, ``HOST``, ``PORT`` and one
    ``<LABEL>_DATABASE_URI`` / ``<LABEL>_DATABASE_TYPE`` pair per database, all base32-encoded.
    """
    extra = dict(spec.extra_env)
    for db in spec.databases:
        if db.query:
            extra[f"{db.label.upper()}_DB_PARAM_QUERY"] = db.query
    env = dict(base or {})
    env.update(
        build_environment(
            input_file=str(spec.input_file),
            output_file=str(spec.output_file),
            token_file=str(spec.token_file),
            temporary_folder=str(spec.tmp_dir),
            host=spec.proxy_host,
            port=spec.proxy_port,
            api_path=spec.api_path,
            databases={db.label: (db.uri, db.type) for db in spec.databases},
            extra=extra,
        )
    )
    return env


@functools.cache
def _pdeathsig_prefix() -> tuple[str, ...] | None:
    """``setpriv --pdeathsig KILL --`` when util-linux's setpriv (>= 2.33) can set it, else None.

    Setting the signal in the child through ``preexec_fn`` makes ``subprocess`` fork the whole
    node (~5 ms at 40-60 MB RSS) instead of vfork (~0.2 ms); ``setpriv`` costs one exec (~1 ms).
    """
    exe = shutil.which("setpriv")
    if exe is None or not sys.platform.startswith("linux"):
        return None
    prefix = (exe, "--pdeathsig", "KILL", "--")
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return prefix if ok else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _exit_notifier(proc: subprocess.Popen[bytes]) -> int | None:
    """A pidfd that turns readable when ``proc`` exits (Linux >= 5.3), or None."""
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


def _wait_for_exit(proc: subprocess.Popen[bytes], pidfd: int | None, timeout: float | None) -> bool:
    """Wait until ``proc`` exits (True) or ``timeout`` seconds pass (False).

    ``Popen.wait(timeout=...)`` polls with sleeps growing to 50 ms, which added ~25 ms on average
    to every run; a pidfd wakes us the moment the child exits.
    """
    try:
        if pidfd is not None and timeout is not None:
            if not select.select([pidfd], [], [], timeout)[0]:
                return False
        proc.wait(timeout=timeout)  # reaps it (at once when the pidfd said it exited)
        return True
    except subprocess.TimeoutExpired:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


class ProcessRuntime(Runtime):
    """Runs ``python -m vantage6nb.algorithm <module>`` per run, the module chosen by image name.

    Parameters
    ----------
    algorithms
        Image name -> importable module, or ``{module, python}`` to run it in an interpreter of its
        own (``process_algorithms``, see :class:`ProcessAlgorithm`); registry, tag and digest are
        ignored when matching.
    pythonpath
        Extra ``sys.path`` entries for the child; by default the node's working folder and its
        ``PYTHONPATH``, so the child imports what the node imports.
    warm
        Start runs from a fork server per algorithm environment (``process_warm``; see
        :mod:`node_app.runtimes.zygote`): a zygote process that has imported pandas, numpy, the
        wrapper and the module forks one fresh child per run. Falls back to a fresh
        interpreter per run where fork is not available or the zygote cannot start.

    Examples
    --------
    >>> rt = ProcessRuntime({"v6nb/summary": "vantage6nb.algorithms.summary"})
    >>> rt.module_for("127.0.0.1:5000/v6nb/summary:1.0")
    'vantage6nb.algorithms.summary'
    """

    name: ClassVar[str] = "process"
    isolated: ClassVar[bool] = False
    #: How long ``--describe`` may take (importing the module) before :meth:`functions` gives up.
    describe_timeout_s: float = 30.0

    def __init__(
        self,
        algorithms: Mapping[str, str | Mapping[str, str] | ProcessAlgorithm],
        *,
        pythonpath: Sequence[str] | None = None,
        warm: bool = False,
    ) -> None:
        self.entries = {
            parse_image(k).name: ProcessAlgorithm.parse(v) for k, v in algorithms.items()
        }
        self.algorithms = {name: e.module for name, e in self.entries.items()}
        if pythonpath is None:
            pythonpath = [
                os.getcwd(),
                *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
            ]
        self.pythonpath = list(pythonpath)
        self.warm = bool(warm) and fork_supported()
        self._procs: dict[int, subprocess.Popen[bytes] | WarmChild] = {}
        self._killed: set[int] = set()
        self._starting: set[int] = set()  # run ids inside run(), from the first step to the end
        self._lock = threading.Lock()
        self._functions: dict[str, dict[str, str] | None] = {}  # module -> its roles
        self._functions_lock = threading.Lock()  # held while describing: one child per module
        self._zygotes: dict[tuple, Zygote] = {}  # (python, module, environment) -> its fork server
        self._zygote_locks: dict[tuple, threading.Lock] = {}
        self._cold_until: dict[tuple, float] = {}  # a zygote failed to start: cold until then
        self._zygote_dir: Path | None = None
        self._closed = False

    def module_for(self, image: str) -> str | None:
        """The module that implements ``image``, or None."""
        return self.algorithms.get(parse_image(image).name)

    def entry_for(self, image: str) -> ProcessAlgorithm | None:
        """How ``image`` runs here (module and interpreter), or None."""
        return self.entries.get(parse_image(image).name)

    def prepare(self, spec: RunSpec) -> None:
        entry = self.entry_for(spec.image)
        if entry is None:
            known = ", ".join(sorted(self.algorithms)) or "none"
            raise RuntimeRefusal(
                RunStatus.FAILED,
                f"image '{spec.image}' has no module for the process runtime (known: {known}); "
                "add it to `process_algorithms` in node.yaml, or run the node with `runtime: docker`",
            )
        if entry.python is not None and not os.access(entry.python, os.X_OK):
            raise RuntimeRefusal(
                RunStatus.FAILED,
                f"image '{spec.image}' runs in the interpreter {entry.python}, which does not exist "
                "or is not executable: create that virtual environment (python3 -m venv ...; pip "
                "install the algorithm) or fix `process_algorithms` in node.yaml",
            )
        if self.warm:  # have the fork server ready by the time the run starts
            key = self._zygote_key(entry, self._zygote_env(entry, spec.limits))
            if key not in self._zygotes:
                threading.Thread(
                    target=self._zygote_for, args=(key,), name="zygote-start", daemon=True
                ).start()

    def command(self, entry: ProcessAlgorithm, *args: str) -> list[str]:
        """The command that runs ``python -m vantage6nb.algorithm *args`` for ``entry``.

        Examples
        --------
        >>> rt = ProcessRuntime({})
        >>> rt.command(ProcessAlgorithm("m"), "m")[1:]
        ['-m', 'vantage6nb.algorithm', 'm']
        >>> rt.command(ProcessAlgorithm("m", "/venv/bin/python"), "m")[:2]
        ['/venv/bin/python', '-c']
        """
        if entry.python is None:
            return [sys.executable, "-m", "vantage6nb.algorithm", *args]
        return [entry.python, "-c", _BOOTSTRAP, *args]

    def _child_env(self, entry: ProcessAlgorithm | None) -> dict[str, str]:
        """What a child inherits: a few variables, and the node's ``sys.path`` or its own."""
        env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        if entry is None or entry.python is None:
            env["PYTHONPATH"] = os.pathsep.join(self.pythonpath)
        else:  # its own environment: its bin folder first, nothing of the node's
            env.pop("VIRTUAL_ENV", None)
            bindir = os.path.dirname(os.path.abspath(entry.python))
            env["PATH"] = os.pathsep.join(p for p in (bindir, env.get("PATH", "")) if p)
        return env

    def functions(self, image: str, digest: str | None = None) -> dict[str, str] | None:
        """The roles of ``image``'s module, from ``python -m vantage6nb.algorithm --describe``.

        One child process per module for the node's life (a failure too is remembered: the
        module is the same until the node restarts); None, with a warning, when it fails.
        """
        entry = self.entry_for(image)
        if entry is None:
            return None
        key = f"{entry.python or ''}:{entry.module}"
        with self._functions_lock:
            if key not in self._functions:
                self._functions[key] = self._describe(entry)
            return self._functions[key]

    def _describe(self, entry: ProcessAlgorithm) -> dict[str, str] | None:
        module = entry.module
        env = self._child_env(entry)
        cmd = self.command(entry, "--describe", module)
        prefix = _pdeathsig_prefix()
        try:
            out = subprocess.run(
                [*prefix, *cmd] if prefix else cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.describe_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.warning(
                "%s: describing its function roles took over %s s; treating it as declaring none",
                module,
                self.describe_timeout_s,
            )
            return None
        except OSError as exc:
            log.warning("%s: could not describe its function roles: %s", module, exc)
            return None
        if out.returncode != 0:
            why = log_tail(out.stderr).strip().splitlines()
            log.warning(
                "%s: describing its function roles failed (exit code %s): %s",
                module,
                out.returncode,
                why[-1] if why else "no message",
            )
            return None
        return functions_table(out.stdout, source=f"module {module}")

    def _zygote_env(self, entry: ProcessAlgorithm | None, limits: Limits) -> dict[str, str]:
        """What every run of ``entry`` starts from, before its own folders: also a zygote's."""
        env = self._child_env(entry)
        env["PYTHONUNBUFFERED"] = "1"
        if limits.cpus:  # numpy's BLAS reads these once, at import: part of a zygote's key
            threads = str(max(1, math.ceil(limits.cpus)))
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[k] = threads
        return env

    def _base_env(self, spec: RunSpec) -> dict[str, str]:
        env = self._zygote_env(self.entry_for(spec.image), spec.limits)
        env["TMPDIR"] = str(spec.tmp_dir)
        return env

    # -- warm starts: a fork server per algorithm environment -------------------------------------

    @staticmethod
    def _zygote_key(entry: ProcessAlgorithm, env: Mapping[str, str]) -> tuple:
        return (entry.python or sys.executable, entry.module, tuple(sorted(env.items())))

    def _zygote_for(self, key: tuple) -> Zygote | None:
        """The fresh fork server for ``key``, started (or replaced) as needed; None: run cold.

        A zygote whose interpreter or any file it imported from the algorithm's package (or
        vantage6nb) changed on disk, or that died, is retired: it takes no more runs and stops
        once its running children have exited.
        """
        with self._lock:
            lock = self._zygote_locks.setdefault(key, threading.Lock())
        with lock:
            if self._closed:
                return None
            z = self._zygotes.get(key)
            if z is not None and z.fresh():
                return z
            if z is not None:
                log.info("%s: its fork server is out of date; starting a new one", key[1])
                self._zygotes.pop(key, None)
                z.retire()
            if time.monotonic() < self._cold_until.get(key, 0.0):
                return None
            with self._lock:
                if self._zygote_dir is None:
                    self._zygote_dir = Path(tempfile.mkdtemp(prefix="v6nb-zygotes-"))
                workdir = Path(tempfile.mkdtemp(dir=self._zygote_dir))
            z = Zygote(
                key[0], key[1], dict(key[2]), workdir, startup_timeout=self.describe_timeout_s
            )
            try:
                z.start()
            except ZygoteError as exc:
                log.warning(
                    "%s: no warm start (%s); running it in a fresh interpreter per run for the "
                    "next %g s",
                    key[1],
                    exc,
                    _WARM_RETRY_S,
                )
                self._cold_until[key] = time.monotonic() + _WARM_RETRY_S
                shutil.rmtree(workdir, ignore_errors=True)
                return None
            with self._lock:
                if not self._closed:
                    self._zygotes[key] = z
                    return z
            z.close()  # the runtime closed while it started
            return None

    def _start_warm(
        self,
        spec: RunSpec,
        entry: ProcessAlgorithm,
        env: Mapping[str, str],
        base: Mapping[str, str],
    ) -> tuple[WarmChild, object] | None:
        """Fork the run's child from its zygote: (child, its log stream), or None to run cold."""
        zenv = {k: v for k, v in base.items() if k != "TMPDIR"}
        key = self._zygote_key(entry, zenv)
        z = self._zygote_for(key)
        if z is None:
            return None
        r, w = os.pipe()
        try:
            child = z.fork(env, str(spec.workdir), w)
        except ZygoteError as exc:
            os.close(r)
            log.warning("run %s: %s; running it in a fresh interpreter", spec.run_id, exc)
            with self._lock:
                if self._zygotes.get(key) is z:
                    self._zygotes.pop(key)
            z.retire()
            return None
        finally:
            os.close(w)
        return child, os.fdopen(r, "rb")

    def run(self, spec: RunSpec) -> RunOutcome:
        entry = self.entry_for(spec.image)
        if entry is None:  # prepare() was skipped: it raises the refusal
            self.prepare(spec)
            raise AssertionError("prepare() refuses an image without a module")
        with self._lock:
            self._starting.add(spec.run_id)  # a kill from now on is remembered (see kill())
        try:
            return self._run(spec, entry)
        finally:
            with self._lock:
                self._starting.discard(spec.run_id)
                self._killed.discard(spec.run_id)

    def _run(self, spec: RunSpec, entry: ProcessAlgorithm) -> RunOutcome:
        spec.tmp_dir.mkdir(parents=True, exist_ok=True)
        # The algorithm writes into a folder of its own; the node copies the output out of it
        # (no links followed, bounded) into ``spec.output_file``, which the algorithm never names.
        outdir = spec.workdir / _OUTPUT_DIR
        shutil.rmtree(outdir, ignore_errors=True)
        outdir.mkdir(mode=0o700)
        spec.output_file.unlink(missing_ok=True)
        name = spec.output_file.name or "output"
        base = self._base_env(spec)
        env = algorithm_environment(dataclasses.replace(spec, output_file=outdir / name), base=base)
        warm = self._start_warm(spec, entry, env, base) if self.warm else None
        proc: subprocess.Popen[bytes] | WarmChild
        if warm is not None:
            proc, stream = warm
            exited = None
        else:
            cmd = self.command(entry, entry.module)
            prefix = _pdeathsig_prefix()  # the child dies with the node, even on SIGKILL
            try:
                proc = subprocess.Popen(
                    [*prefix, *cmd] if prefix else cmd,
                    env=env,
                    cwd=str(spec.workdir),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: kill reaches grandchildren
                    preexec_fn=_die_with_parent
                    if prefix is None and sys.platform.startswith("linux")
                    else None,
                )
            except OSError as exc:
                return RunOutcome(RunStatus.FAILED, f"could not start the algorithm process: {exc}")
            stream = proc.stdout
            exited = _exit_notifier(proc)  # opened before anyone can reap the child
        with self._lock:
            self._procs[spec.run_id] = proc
            killed_early = spec.run_id in self._killed
        if killed_early:  # a kill that came while the process was being started
            self._signal_group(proc, signal.SIGKILL)
        captured = bytearray()
        reader = threading.Thread(target=self._drain, args=(stream, captured), daemon=True)
        reader.start()
        if isinstance(proc, WarmChild):
            try:
                proc.wait(spec.limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
        else:
            timed_out = not _wait_for_exit(proc, exited, spec.limits.timeout_s)
        if timed_out:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)
        with self._lock:
            self._procs.pop(spec.run_id, None)
            killed = spec.run_id in self._killed
        code = proc.returncode
        assert code is not None
        outcome = self._outcome(spec, code, bytes(captured), killed=killed, timed_out=timed_out)
        if isinstance(proc, WarmChild) and proc.zygote_died and not (killed or timed_out):
            outcome.reason += " (its fork server died while it ran)"
        if outcome.status == RunStatus.COMPLETED:
            try:
                copy_output(outdir, name, spec.output_file, limit=spec.limits.output_bytes)
            except FileNotFoundError:
                outcome = RunOutcome(
                    RunStatus.CRASHED, MISSING_OUTPUT, outcome.log, outcome.exit_code
                )
            except RuntimeRefusal as refusal:
                log.warning("run %s: %s", spec.run_id, refusal.reason)
                outcome = RunOutcome(refusal.status, refusal.reason, outcome.log, outcome.exit_code)
        shutil.rmtree(outdir, ignore_errors=True)
        return outcome

    @staticmethod
    def _drain(stream: Any, captured: bytearray) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            captured.extend(chunk)
            if len(captured) > 2 * LOG_TAIL_BYTES:
                del captured[: len(captured) - LOG_TAIL_BYTES]
        stream.close()

    @staticmethod
    def _outcome(
        spec: RunSpec, code: int, captured: bytes, *, killed: bool, timed_out: bool
    ) -> RunOutcome:
        tail = log_tail(captured)
        if killed:
            return RunOutcome(RunStatus.KILLED, "killed on request", tail, code)
        if timed_out:
            return timed_out_outcome(spec.limits, tail, code)
        if code != 0:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            return crashed_outcome(how, tail, code)
        return RunOutcome(RunStatus.COMPLETED, "", tail, code)  # the output is checked next

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes] | WarmChild, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self, run_id: int) -> bool:
        """Stop a run in progress here (SIGTERM, then SIGKILL after a grace period).

        A kill that comes while the process is being started is remembered and carried out as
        soon as it exists.
        """
        with self._lock:
            proc = self._procs.get(run_id)
            if proc is None:
                if run_id not in self._starting:
                    return False
                self._killed.add(run_id)
                return True
            if proc.poll() is not None:
                return False
            self._killed.add(run_id)
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=_KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
        return True

    def running(self) -> list[int]:
        """Run ids with a live process."""
        with self._lock:
            return [rid for rid, p in self._procs.items() if p.poll() is None]

    def close(self) -> None:
        with self._lock:  # also the runs still starting (waiting for a zygote, say)
            ids = sorted({*self._procs, *self._starting})
        for rid in ids:
            self.kill(rid)
        with self._lock:
            self._closed = True
            zygotes, self._zygotes = list(self._zygotes.values()), {}
            folder, self._zygote_dir = self._zygote_dir, None
        for z in zygotes:
            z.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
