"""A fork server for the process runtime: one warm interpreter per algorithm, one fresh child per run."""

# The zygote is a long-lived process started by :class:`Zygote` in the algorithm's interpreter
# (``python -c <_START> <this file>``, so it needs only the standard library there). It imports
# pandas, numpy, the algorithm wrapper and the algorithm module, reports which files it loaded,
# then waits on a control socket. For each run the node sends one request (the run's environment,
# working folder, and two file descriptors: the run's report socket and the write end of its log
# pipe); the zygote forks ONE child in a process group of its own, which takes the log pipe as
# stdout/stderr, replaces its environment with the run's, changes into the working folder and runs
# the wrapper exactly as ``python -m vantage6nb.algorithm <module>`` would, then exits. The zygote
# reaps it and writes its exit code to the run's report socket. A child never serves a second run,
# and the zygote never runs algorithm code beyond the imports. When the node goes away (the control
# socket closes) the zygote kills every child's process group and exits.

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["WarmChild", "Zygote", "ZygoteError", "fork_supported"]

_MAX_MESSAGE = 1 << 20  # a run's request: its environment, paths and module name
_SOURCE_PATH = Path(__file__) if "__file__" in globals() else None  # None in the zygote
_PR_SET_PDEATHSIG = 1
# How a zygote starts: this file, run as ``__main__`` by an interpreter that need not import node_app
_START = "import sys; p = sys.argv[1]; exec(compile(open(p).read(), p, 'exec'))  # v6nb zygote"


class ZygoteError(RuntimeError):
    """The zygote could not be started, or could not start a run (the runtime then runs cold)."""


def fork_supported() -> bool:
    """Whether this platform can run a fork server (Linux: fork, SCM_RIGHTS, SOCK_SEQPACKET).

    Examples
    --------
    >>> isinstance(fork_supported(), bool)
    True
    """
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and hasattr(socket, "send_fds")
        and hasattr(socket, "SOCK_SEQPACKET")
    )


# -- the node's side -------------------------------------------------------------------------------


class WarmChild:
    """The node's handle on one forked child: ``pid``, ``poll()``, ``wait()`` like a ``Popen``.

    A thread reads the run's report socket; the zygote writes the child's exit code there once it
    has reaped it (``returncode`` as ``Popen`` gives it: negative for a signal). When the zygote
    dies first, the child dies with it (its parent-death signal) and ``returncode`` is ``-9``.
    """

    def __init__(
        self, pid: int, report: socket.socket, on_exit: Callable[[], None] | None = None
    ) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.zygote_died = False
        self._report = report
        self._on_exit = on_exit
        self._done = threading.Event()
        threading.Thread(target=self._read_exit, name=f"warm-child-{pid}", daemon=True).start()

    def _read_exit(self) -> None:
        try:
            data = self._report.recv(4096)
            code = json.loads(data)["exit"] if data else None
        except (OSError, ValueError, KeyError, TypeError):
            code = None
        finally:
            self._report.close()
        if code is None:  # the zygote went away without reaping the child: it died with it
            self.zygote_died = True
            code = -signal.SIGKILL
        self.returncode = int(code)
        self._done.set()
        if self._on_exit is not None:
            self._on_exit()

    def poll(self) -> int | None:
        """The exit code once the child has exited, else None."""
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child's exit; raises ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"warm child {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode


class Zygote:
    """A fork server for one algorithm environment (interpreter, module, base environment).

    Parameters
    ----------
    python
        The interpreter to run it in (the node's own, or a virtual environment's ``bin/python``).
    module
        The algorithm module it imports.
    env
        Its environment (what every run's child starts from; each run replaces it with its own).
    workdir
        A private, empty folder for its working directory.
    startup_timeout
        How long the imports may take before :meth:`start` gives up.

    Examples
    --------
    ``z = Zygote(sys.executable, "vantage6nb.algorithms.summary", env, tmp); z.start()``; then
    ``child = z.fork(run_env, cwd, log_fd)`` per run, ``child.wait(timeout)``; ``z.close()``.
    """

    def __init__(
        self,
        python: str,
        module: str,
        env: Mapping[str, str],
        workdir: Path,
        *,
        startup_timeout: float = 30.0,
    ) -> None:
        self.python = python
        self.module = module
        self.env = dict(env)
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.files: dict[str, tuple[int, int, int] | None] = {}
        self._ctl: socket.socket | None = None
        self._lock = threading.Lock()  # one request on the control socket at a time
        self._active = 0  # children alive
        self._retired = False

    def start(self) -> None:
        """Start the zygote and wait until it has done its imports; :class:`ZygoteError` if not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        assert _SOURCE_PATH is not None, "Zygote.start runs in the node, not in a zygote"
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.proc = subprocess.Popen(
                [self.python, "-c", _START, str(_SOURCE_PATH), str(theirs.fileno()), self.module],
                env=self.env,
                cwd=str(self.workdir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"could not start the fork server: {exc}") from exc
        finally:
            theirs.close()
        self._ctl = ours
        ready, _, _ = select.select([ours], [], [], self.startup_timeout)
        try:
            hello = json.loads(ours.recv(_MAX_MESSAGE) or b"null") if ready else None
        except (OSError, ValueError):
            hello = None
        if not isinstance(hello, dict) or "files" not in hello:
            why = hello.get("error") if isinstance(hello, dict) else None
            self.close()
            raise ZygoteError(
                why or f"the fork server did not report ready within {self.startup_timeout:g} s"
            )
        self.files = {f: _stamp(f) for f in [self.python, *hello["files"]]}

    def fresh(self) -> bool:
        """Whether it is alive and nothing it imported (or its interpreter) changed on disk."""
        if self.proc is None or self.proc.poll() is not None or self._ctl is None:
            return False
        return all(_stamp(f) == stamp for f, stamp in self.files.items())

    def fork(self, env: Mapping[str, str], cwd: str, log_fd: int) -> WarmChild:
        """Start one child for one run; ``log_fd`` becomes its stdout and stderr.

        Raises :class:`ZygoteError` when the zygote does not answer (the caller runs cold).
        """
        request = json.dumps({"env": dict(env), "cwd": cwd}).encode()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                if self._ctl is None or self._retired:
                    raise ZygoteError("the fork server is closed")
                socket.send_fds(self._ctl, [request], [theirs.fileno(), log_fd])
                self._active += 1
        except (OSError, ZygoteError) as exc:
            mine.close()
            raise ZygoteError(f"the fork server did not take the run: {exc}") from exc
        finally:
            theirs.close()
        ready, _, _ = select.select([mine], [], [], self.startup_timeout)
        try:
            answer = json.loads(mine.recv(4096) or b"null") if ready else None
        except (OSError, ValueError):
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("pid"), int):
            mine.close()
            self._child_exited()
            raise ZygoteError(f"the fork server did not start the run: {answer!r}")
        return WarmChild(answer["pid"], mine, self._child_exited)

    def _child_exited(self) -> None:
        with self._lock:
            self._active -= 1
            last = self._retired and self._active == 0
        if last:
            self.close()

    def retire(self) -> None:
        """Take no more runs; stop once the children still running have exited."""
        with self._lock:
            self._retired = True
            idle = self._active == 0
        if idle:
            self.close()

    def close(self) -> None:
        """Stop the zygote (its children are killed with it); idempotent."""
        with self._lock:
            ctl, self._ctl = self._ctl, None
        if ctl is not None:
            ctl.close()  # the zygote sees the end of its control socket and exits
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _stamp(path: str) -> tuple[int, int, int] | None:
    """What tells a changed file: modification time, size and inode (None: it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# -- the zygote's side (runs in the algorithm's interpreter, standard library only) ----------------

_CHILD_BOOTSTRAP = """\
import importlib.util, os, runpy, sys
args = sys.argv[1:]
if importlib.util.find_spec("vantage6nb") is not None:
    sys.argv = ["vantage6nb.algorithm", *args]
    runpy.run_module("vantage6nb.algorithm", run_name="__main__", alter_sys=True)
elif importlib.util.find_spec("vantage6") is not None:
    os.environ["PKG_NAME"] = args[0]
    from vantage6.algorithm.tools.wrap import wrap_algorithm
    wrap_algorithm()
else:
    sys.exit("this interpreter has neither vantage6nb nor vantage6-algorithm-tools: install one")
"""


def _preload(module: str) -> list[str]:
    """Import what every run of ``module`` imports; the files loaded from its own packages."""
    import importlib
    import importlib.util

    for heavy in ("numpy", "pandas"):
        try:
            importlib.import_module(heavy)
        except ImportError:
            pass
    ours = importlib.util.find_spec("vantage6nb") is not None
    if ours:
        for name in (
            "vantage6nb.common.contract",
            "vantage6nb.algorithm",
            "vantage6nb.algorithm._roles",
            "vantage6nb.algorithm._vantage6",
            "vantage6nb.algorithm._wrap",
        ):
            importlib.import_module(name)
        _remember_wrapper_choice(module)
    elif importlib.util.find_spec("vantage6") is not None:
        importlib.import_module("vantage6.algorithm.tools.wrap")
    importlib.import_module(module)
    tops = {module.split(".")[0], "vantage6nb"}
    files = set()
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if path and name.split(".")[0] in tops:
            files.add(os.path.abspath(path))
    return sorted(files)


def _remember_wrapper_choice(module: str) -> None:
    """Decide once which wrapper ``module`` runs through, as every run would decide again.

    ``built_on_vantage6`` reads every installed distribution's metadata (~50-150 ms); its answer
    for this module is fixed while the module's files are (a reinstall changes them, and the node
    then starts a new zygote).
    """
    import vantage6nb.algorithm._vantage6 as v6

    decide = v6.built_on_vantage6
    answer = decide(module)

    def built_on_vantage6(name: str) -> bool:
        return answer if name == module else decide(name)

    built_on_vantage6.__doc__ = decide.__doc__
    v6.built_on_vantage6 = built_on_vantage6  # type: ignore[assignment]


def _child(
    request: dict, report_fd: int, log_fd: int, module: str, close: Sequence[int]
) -> None:  # pragma: no cover - runs in the forked child, which leaves with os._exit
    """Become the run's algorithm process; never returns."""
    code = 1
    try:
        try:  # its own process group (the node kills the group); the zygote sets it too
            os.setpgid(0, 0)
        except OSError:
            pass
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            import ctypes

            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
        for fd in (*close, report_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        for fd in {devnull, log_fd} - {0, 1, 2}:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["cwd"]  # as ``python -m`` started in the run's folder has it
        import importlib

        importlib.invalidate_caches()
        _forget_inherited_state()
        sys.argv = ["-c", module]
        code = _run_main(_CHILD_BOOTSTRAP)
    except BaseException:  # noqa: BLE001 - the child reports everything through its exit code
        try:
            import traceback

            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(code)


def _forget_inherited_state() -> None:  # pragma: no cover - in the forked child
    """Reset what the zygote's imports cached that a fresh interpreter would compute per run."""
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None  # type: ignore[attr-defined]  # re-read from the run's TMPDIR
    # ``random`` reseeds itself after fork; numpy's legacy global generator does not
    nprandom = sys.modules.get("numpy.random")
    if nprandom is not None:
        try:
            nprandom.seed()
        except Exception:  # noqa: BLE001
            pass


def _run_main(source: str) -> int:  # pragma: no cover - in the forked child
    """Run ``source`` as ``__main__`` and end as the interpreter would: threads, atexit, code."""
    code = 0
    try:
        exec(compile(source, "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001 - printed as an uncaught exception would be
        import traceback

        traceback.print_exc()
        code = 1
    main = threading.main_thread()
    for t in threading.enumerate():
        if t is not main and not t.daemon:
            t.join()
    import atexit

    atexit._run_exitfuncs()
    return code


def _exit_code(value: object) -> int:
    """The process exit code ``sys.exit(value)`` gives, as CPython computes it."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def serve(control_fd: int, module: str) -> None:  # pragma: no cover - runs in the zygote
    """The zygote's loop: preload, say ready, fork a child per request, report exits."""
    ctl = socket.socket(fileno=control_fd)
    try:
        files = _preload(module)
        if threading.active_count() > 1:
            raise RuntimeError("its imports started threads: forking it is not safe")
    except BaseException as exc:  # noqa: BLE001 - said to the node, which then runs cold
        import traceback

        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        ctl.send(
            json.dumps({"error": f"the fork server could not import {module}: {last}"})[
                :4000
            ].encode()
        )
        os._exit(1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    ctl.send(json.dumps({"files": files, "pid": os.getpid()}).encode())
    reports: dict[int, int] = {}  # child pid -> its run's report socket fd
    while True:
        watched: list[Any] = [ctl, wake_r]
        readable = select.select(watched, [], [])[0]
        if wake_r in readable:
            try:
                while os.read(wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        _reap(reports)
        if ctl not in readable:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(ctl, _MAX_MESSAGE, 2)
        except OSError:
            data, fds = b"", []
        if not data:  # the node went away: nothing of ours outlives it
            for pid in reports:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            os._exit(0)
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        report_fd, log_fd = fds
        try:
            request = json.loads(data)
        except ValueError:
            os.close(log_fd)
            os.close(report_fd)
            continue
        pid = os.fork()
        if pid == 0:
            _child(
                request,
                report_fd,
                log_fd,
                module,
                [ctl.fileno(), wake_r, wake_w, *reports.values()],
            )
        os.close(log_fd)
        try:  # before the node learns the pid, so that a kill of the group cannot miss it
            os.setpgid(pid, pid)
        except OSError:
            pass
        try:
            os.write(report_fd, json.dumps({"pid": pid}).encode())
        except OSError:
            pass
        reports[pid] = report_fd


def _reap(reports: dict[int, int]) -> None:  # pragma: no cover - in the zygote
    while reports:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = reports.pop(pid, None)
        if fd is None:
            continue
        try:
            os.write(fd, json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
        except OSError:
            pass
        os.close(fd)


if __name__ == "__main__":  # ``python -c <_START> <this file> <control fd> <module>``
    serve(int(sys.argv[-2]), sys.argv[-1])
