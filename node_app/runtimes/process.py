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
import threading
from collections.abc import Mapping, Sequence
from typing import ClassVar

from vantage6nb.common.contract import build_environment
from vantage6nb.common.schemas import RunStatus

from ..policy import parse_image
from .base import (
    RunOutcome,
    RunSpec,
    Runtime,
    RuntimeRefusal,
    crashed_outcome,
    functions_table,
    timed_out_outcome,
)
from .logs import LOG_TAIL_BYTES, LOG_TAIL_LINES, log_tail
from .output import MISSING_OUTPUT, copy_output

__all__ = [
    "LOG_TAIL_BYTES",
    "LOG_TAIL_LINES",
    "ProcessRuntime",
    "algorithm_environment",
    "log_tail",
]

log = logging.getLogger(__name__)

_KILL_GRACE_S = 2.0
# What a child inherits from the node's environment; everything else (API key, secrets) stays out.
_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "VIRTUAL_ENV", "SYSTEMROOT", "HOME")
_PR_SET_PDEATHSIG = 1
_OUTPUT_DIR = "algorithm-output"


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
        Image name -> importable module (``process_algorithms``); registry, tag and digest are
        ignored when matching.
    pythonpath
        Extra ``sys.path`` entries for the child; by default the node's working folder and its
        ``PYTHONPATH``, so the child imports what the node imports.

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
        self, algorithms: Mapping[str, str], *, pythonpath: Sequence[str] | None = None
    ) -> None:
        self.algorithms = {parse_image(k).name: v for k, v in algorithms.items()}
        if pythonpath is None:
            pythonpath = [
                os.getcwd(),
                *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
            ]
        self.pythonpath = list(pythonpath)
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._killed: set[int] = set()
        self._starting: set[int] = set()  # run ids inside run(), from the first step to the end
        self._lock = threading.Lock()
        self._functions: dict[str, dict[str, str] | None] = {}  # module -> its roles
        self._functions_lock = threading.Lock()  # held while describing: one child per module

    def module_for(self, image: str) -> str | None:
        """The module that implements ``image``, or None."""
        return self.algorithms.get(parse_image(image).name)

    def prepare(self, spec: RunSpec) -> None:
        if self.module_for(spec.image) is None:
            known = ", ".join(sorted(self.algorithms)) or "none"
            raise RuntimeRefusal(
                RunStatus.FAILED,
                f"image '{spec.image}' has no module for the process runtime (known: {known}); "
                "add it to `process_algorithms` in node.yaml, or run the node with `runtime: docker`",
            )

    def functions(self, image: str, digest: str | None = None) -> dict[str, str] | None:
        """The roles of ``image``'s module, from ``python -m vantage6nb.algorithm --describe``.

        One child process per module for the node's life (a failure too is remembered: the
        module is the same until the node restarts); None, with a warning, when it fails.
        """
        module = self.module_for(image)
        if module is None:
            return None
        with self._functions_lock:
            if module not in self._functions:
                self._functions[module] = self._describe(module)
            return self._functions[module]

    def _describe(self, module: str) -> dict[str, str] | None:
        env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        env["PYTHONPATH"] = os.pathsep.join(self.pythonpath)
        cmd = [sys.executable, "-m", "vantage6nb.algorithm", "--describe", module]
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

    def _base_env(self, spec: RunSpec) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        env["PYTHONPATH"] = os.pathsep.join(self.pythonpath)
        env["PYTHONUNBUFFERED"] = "1"
        env["TMPDIR"] = str(spec.tmp_dir)
        if spec.limits.cpus:
            threads = str(max(1, math.ceil(spec.limits.cpus)))
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[k] = threads
        return env

    def run(self, spec: RunSpec) -> RunOutcome:
        module = self.module_for(spec.image)
        if module is None:  # prepare() was skipped
            self.prepare(spec)
        with self._lock:
            self._starting.add(spec.run_id)  # a kill from now on is remembered (see kill())
        try:
            return self._run(spec, module)
        finally:
            with self._lock:
                self._starting.discard(spec.run_id)
                self._killed.discard(spec.run_id)

    def _run(self, spec: RunSpec, module: str | None) -> RunOutcome:
        spec.tmp_dir.mkdir(parents=True, exist_ok=True)
        # The algorithm writes into a folder of its own; the node copies the output out of it
        # (no links followed, bounded) into ``spec.output_file``, which the algorithm never names.
        outdir = spec.workdir / _OUTPUT_DIR
        shutil.rmtree(outdir, ignore_errors=True)
        outdir.mkdir(mode=0o700)
        spec.output_file.unlink(missing_ok=True)
        name = spec.output_file.name or "output"
        env = algorithm_environment(
            dataclasses.replace(spec, output_file=outdir / name), base=self._base_env(spec)
        )
        cmd = [sys.executable, "-m", "vantage6nb.algorithm", str(module)]
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
        exited = _exit_notifier(proc)  # opened before anyone can reap the child
        with self._lock:
            self._procs[spec.run_id] = proc
            killed_early = spec.run_id in self._killed
        if killed_early:  # a kill that came while the process was being started
            self._signal_group(proc, signal.SIGKILL)
        captured = bytearray()
        reader = threading.Thread(target=self._drain, args=(proc, captured), daemon=True)
        reader.start()
        timed_out = not _wait_for_exit(proc, exited, spec.limits.timeout_s)
        if timed_out:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)
        with self._lock:
            self._procs.pop(spec.run_id, None)
            killed = spec.run_id in self._killed
        outcome = self._outcome(
            spec, proc.returncode, bytes(captured), killed=killed, timed_out=timed_out
        )
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
    def _drain(proc: subprocess.Popen[bytes], captured: bytearray) -> None:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            captured.extend(chunk)
            if len(captured) > 2 * LOG_TAIL_BYTES:
                del captured[: len(captured) - LOG_TAIL_BYTES]
        proc.stdout.close()

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
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
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
        with self._lock:
            ids = list(self._procs)
        for rid in ids:
            self.kill(rid)
