"""The Podman runtime: the Docker runtime's locked-down containers, run by a rootless Podman."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from vantage6nb.common.errors import ConfigurationError
from vantage6nb.common.schemas import RunStatus

from ..policy import parse_image
from .base import RunOutcome, RunSpec, RuntimeRefusal
from .docker import DockerRuntime, engine_answers
from .docker_sidecar import Sidecar
from .logs import log_tail

__all__ = [
    "CGROUP_CONTROLLERS",
    "HOOK_NAME",
    "PodmanRuntime",
    "RunCgroup",
    "default_socket",
    "ensure_service",
]

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("memory", "cpu", "pids")
HOOK_NAME = "v6nb-podman-cgroup-hook"  # installed by scripts/setup-podman.sh
_KEY_PREFIX = "v6nb-"  # the hook acts only on containers whose hostname starts so
_CFS_PERIOD_US = 100_000
_PODMAN_TMPFS = ("/tmp", "/var/tmp", "/run")
_CHECKED: set[tuple[str, str]] = set()  # (socket, cgroup parent) that passed the self-check
_MODE_SYMLINK = 1 << 27  # Go's os.ModeSymlink, in the archive API's stat header
_SELF_CHECK_PIDS = 61  # an odd number no default uses: seen inside, the limit was applied
#: How long the removal of a run's containers waits after the run, so that it does not compete
#: for the CPU with the node reporting the result (measured: 15-20 ms of a 100-120 ms round trip).
SETTLE_S = 0.25
_SETUP_HINT = (
    "run scripts/setup-podman.sh (as root, once per boot) or see docs/operations.md, 'Podman'"
)


def default_socket() -> Path:
    """Where a rootless ``podman system service`` of this user listens by default.

    Examples
    --------
    >>> default_socket().name
    'podman.sock'
    """
    run_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return Path(run_dir) / "podman" / "podman.sock"


def ensure_service(socket: Path, *, timeout: float = 30.0) -> subprocess.Popen[bytes] | None:
    """Make sure a Podman API service answers on ``socket``; start one (returned) when none does.

    The node starts ``podman system service`` itself only when it is not root: a root node would
    start a rootful Podman. Raises :class:`ConfigurationError` saying what to do otherwise.

    Examples
    --------
    >>> ensure_service(default_socket())  # doctest: +SKIP
    """
    # a service that is there but busy (removing a run's containers) may take a while to answer
    for _ in range(3 if socket.exists() else 1):
        if engine_answers(base_url=f"unix://{socket}", timeout=10.0):
            return None
    if os.geteuid() == 0:
        raise ConfigurationError(
            f"runtime is 'podman' but no Podman service answers on {socket}: set `podman_socket` "
            "in node.yaml to the socket of the rootless service of the ordinary user that owns "
            "the containers (started with `podman system service --time=0 unix://SOCKET`), or "
            f"{_SETUP_HINT}; a node running as root does not start a (rootful) Podman itself",
            errors={"podman_socket": str(socket)},
        )
    podman = shutil.which("podman")
    if podman is None:
        raise ConfigurationError(
            "runtime is 'podman' but podman is not installed: `apt-get install podman uidmap` "
            "(Debian), or set `runtime: docker` / `runtime: process` in node.yaml",
            errors={"runtime": "no podman"},
        )
    socket.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [podman, "system", "service", "--time=0", f"unix://{socket}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C meant for the node must not kill it before the node
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_answers(base_url=f"unix://{socket}"):
            log.info("started podman system service on %s (pid %d)", socket, proc.pid)
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        proc.kill()
    raise ConfigurationError(
        f"podman system service did not answer on {socket} within {timeout:.0f} s; try it by "
        f"hand (`podman system service --time=0 unix://{socket}`) to see why",
        errors={"podman_socket": str(socket)},
    )


def cgroup_v2() -> bool:
    """True when ``/sys/fs/cgroup`` is the unified (v2) hierarchy, where Podman applies limits itself."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


class RunCgroup:
    """One container's cgroups (memory, cpu, pids) under the delegated ``parent`` (cgroup v1).

    Rootless Podman ignores resource limits on cgroup v1. The node makes the cgroups (named
    ``key``, the container's hostname) and writes the limits; the OCI prestart hook installed by
    ``scripts/setup-podman.sh`` moves the container's first process into them before it runs, so
    everything it starts is bounded. ``owner``: who must be able to write ``cgroup.procs`` (the
    Podman user, when the node runs as root).
    """

    def __init__(
        self,
        parent: str,
        key: str,
        *,
        memory_mb: int | None,
        cpus: float | None,
        pids: int | None,
        owner: tuple[int, int] | None,
    ) -> None:
        self.key = key
        self.memory_mb = memory_mb
        self.dirs = {c: CGROUP_ROOT / c / parent / key for c in CGROUP_CONTROLLERS}
        try:
            for d in self.dirs.values():
                d.mkdir()
                if owner is not None:
                    os.chown(d / "cgroup.procs", *owner)
            mem = self.dirs["memory"]
            if memory_mb:
                limit = str(int(memory_mb) * 2**20)
                (mem / "memory.limit_in_bytes").write_text(limit)
                memsw = mem / "memory.memsw.limit_in_bytes"
                if memsw.exists():  # swap accounting on: no swap either (as Docker's memswap)
                    memsw.write_text(limit)
                with contextlib.suppress(OSError):
                    (mem / "memory.swappiness").write_text("0")
            if cpus:
                cpu = self.dirs["cpu"]
                (cpu / "cpu.cfs_period_us").write_text(str(_CFS_PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(int(float(cpus) * _CFS_PERIOD_US)))
            if pids:
                (self.dirs["pids"] / "pids.max").write_text(str(int(pids)))
        except OSError:
            self.remove()
            raise

    def binds(self) -> dict[str, dict[str, str]]:
        """Read-only mounts showing the container its own cgroups where it looks for them."""
        return {str(d): {"bind": f"/sys/fs/cgroup/{c}", "mode": "ro"} for c, d in self.dirs.items()}

    def holds_processes(self) -> bool:
        """Whether any process is in the memory cgroup now (the hook moved the container in)."""
        try:
            return bool((self.dirs["memory"] / "cgroup.procs").read_text().strip())
        except OSError:
            return False

    def oom_kills(self) -> int:
        """How many processes the kernel killed for exceeding the memory limit."""
        try:
            text = (self.dirs["memory"] / "memory.oom_control").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        """Remove the cgroups (empty once the container is gone; retried briefly while it ends)."""
        for d in self.dirs.values():
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # still has a process that is exiting
                    time.sleep(0.02)


class _Container:
    """A container of the Podman API with its cgroups: removing it removes them too."""

    def __init__(self, inner: Any, cgroup: RunCgroup | None, runtime: PodmanRuntime) -> None:
        self._inner = inner
        self.cgroup = cgroup
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def wait(self, timeout: float | None = None, **_: Any) -> dict[str, Any]:
        """Block until the container has ended (``requests``' ReadTimeout after ``timeout``).

        Podman's own wait endpoint, polling every 10 ms: its Docker-compatible one notices an
        exit only 0.2-1 s late, which every run would pay.
        """
        api = self._inner.client.api
        answer = api._post(
            f"{api.base_url}/v4.0.0/libpod/containers/{self._inner.id}/wait",
            params={"condition": ["stopped", "exited"], "interval": "10ms"},
            timeout=timeout,
        )
        api._raise_for_status(answer)
        return {"StatusCode": answer.json()}

    def attach(self, **kwargs: Any) -> Any:
        """The SDK's ``attach``, without its inspect of the container (does it have a TTY?).

        The answer is in the container's attributes already (a run's container never has one):
        one request to the slower Podman service less at each run's start.
        """
        if not kwargs.get("stream"):
            return self._inner.attach(**kwargs)
        from docker.types.daemon import CancellableStream

        api = self._inner.client.api
        params = {
            name: int(bool(kwargs.get(name))) for name in ("logs", "stdout", "stderr", "stream")
        }
        response = api._post(
            api._url("/containers/{0}/attach", self._inner.id),
            headers={"Connection": "Upgrade", "Upgrade": "tcp"},
            params=params,
            stream=True,
        )
        tty = bool((self._inner.attrs.get("Config") or {}).get("Tty"))
        output = api._read_from_socket(response, True, tty, demux=bool(kwargs.get("demux")))
        return CancellableStream(output, response)

    def get_archive(self, path: str, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        import docker.errors

        try:
            chunks, stat = self._inner.get_archive(path, *args, **kwargs)
        except docker.errors.NotFound:
            # Podman follows a link to its target; a dangling one reads as missing. Say what it
            # is (the Docker engine's stat names the link itself), so it is refused as a link.
            uid, gid = self._runtime._user_ids()  # the run folder's owner: only it may look
            if self._inner.exec_run(["test", "-L", path], user=f"{uid}:{gid}").exit_code == 0:
                return iter(()), {"name": Path(path).name, "mode": _MODE_SYMLINK | 0o777}
            raise
        # Podman names the resolved path as `linkTarget` even for a plain file: only a target
        # other than the path itself (a link on the way) is one, as the Docker engine reports it.
        if stat.get("linkTarget") == path and not int(stat.get("mode") or 0) & _MODE_SYMLINK:
            stat = {**stat, "linkTarget": ""}
        return chunks, stat

    def remove(self, **kwargs: Any) -> None:
        try:
            self._inner.remove(**kwargs)
        finally:
            if self.cgroup is not None:
                self.cgroup.remove()


class _Containers:
    """``client.containers`` adapted to Podman: limits through delegated cgroups on cgroup v1."""

    def __init__(self, inner: Any, runtime: PodmanRuntime) -> None:
        self._inner = inner
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create(self, image: str, command: Any = None, **kwargs: Any) -> _Container:
        if kwargs.get("read_only"):
            # Podman mounts writable tmpfs on /tmp, /var/tmp and /run of a read-only container
            # (its --read-only-tmpfs default, which the Docker API cannot turn off): where the
            # caller mounted nothing, mount read-only ones instead, so read-only means read-only.
            tmpfs = dict(kwargs.get("tmpfs") or {})
            for path in _PODMAN_TMPFS:
                tmpfs.setdefault(path, "ro,nosuid,nodev,noexec,size=4k")
            kwargs["tmpfs"] = tmpfs
        cgroup = self._runtime._limits_for(kwargs)
        try:
            return _Container(self._inner.create(image, command, **kwargs), cgroup, self._runtime)
        except Exception:
            if cgroup is not None:
                cgroup.remove()
            raise


class _Volumes:
    """``client.volumes`` adapted to Podman 4, which reads a tmpfs ``size=`` as a disk quota."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create(self, *args: Any, driver_opts: dict[str, str] | None = None, **kwargs: Any) -> Any:
        if driver_opts and driver_opts.get("type") == "tmpfs":
            page = os.sysconf("SC_PAGE_SIZE")
            opts = []
            for opt in driver_opts.get("o", "").split(","):
                name, _, value = opt.partition("=")
                if name == "size" and value.endswith("m"):
                    # the same cap, in the spelling tmpfs has for it that Podman passes through
                    opt = f"nr_blocks={int(value[:-1]) * 2**20 // page}"
                opts.append(opt)
            driver_opts = {**driver_opts, "o": ",".join(opts)}
        return self._inner.create(*args, driver_opts=driver_opts, **kwargs)


class _PodmanClient:
    """A ``docker.DockerClient`` of Podman's Docker-compatible API, with the adaptations above."""

    def __init__(self, inner: Any, runtime: PodmanRuntime) -> None:
        self._inner = inner
        self.containers = _Containers(inner.containers, runtime)
        self.volumes = _Volumes(inner.volumes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Settling:
    """An executor whose tasks submitted during a run wait ``delay`` seconds first.

    A run's removal is queued as its last step, while the node still has the result to encrypt,
    report and upload. Podman's removal costs far more CPU than Docker's (its service, conmon
    and the cleanup process it starts), so on a small machine it slows the result down; a short
    delay later it competes with nothing. Only work queued from inside :meth:`PodmanRuntime.run`
    waits; ``wake`` ends every wait (the node closes). Nothing is dropped: a removal only starts
    later, and :meth:`~DockerRuntime.close` still waits for every queued one.
    """

    def __init__(self, inner: Any, delay: float, in_run: threading.local, wake: threading.Event):
        self._inner = inner
        self._delay = delay
        self._in_run = in_run
        self._wake = wake

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self._in_run, "active", False) or self._delay <= 0:
            return self._inner.submit(fn, *args, **kwargs)
        until = time.monotonic() + self._delay

        def later() -> Any:
            self._wake.wait(max(0.0, until - time.monotonic()))
            return fn(*args, **kwargs)

        return self._inner.submit(later)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ReaderFailed(Exception):
    """The volume reader did not answer in time or sensibly: the node uses the archive API."""


class VolumeReader:
    """One long-lived :mod:`.podman_reader` in the rootless user's namespaces, for a node without root.

    Such a node may not read the algorithm's files (they belong to sub-uids) and does not see the
    run volume's mount (it is in Podman's mount namespace); ``podman unshare`` starts the reader
    where it does, as the namespace's root. Started the first time it is needed; one request at
    a time, each with a deadline. A reader that does not start, dies, or answers garbage is
    stopped and raises :class:`ReaderFailed` (the caller falls back to the archive API); the next
    request starts a new one (at most ``_MAX_STARTS`` in all: then the archive API only).

    Examples
    --------
    >>> reader = VolumeReader()  # doctest: +SKIP
    >>> reader.read("/home/u/.local/share/containers/storage/volumes/v/_data", (10001, 10001), "token", 64)  # doctest: +SKIP
    b't'
    """

    START_S = 15.0
    READ_S = 5.0
    COPY_S = 60.0
    _MAX_STARTS = 3

    def __init__(self, argv: list[str] | None = None) -> None:
        podman = shutil.which("podman") or "podman"
        self.argv = argv or [
            podman,
            "unshare",
            sys.executable,
            "-m",
            "node_app.runtimes.podman_reader",
        ]
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._starts = 0
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The process group of the running reader (None: not started)."""
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        if self._closed or self._starts >= self._MAX_STARTS:
            raise ReaderFailed("the volume reader is off")
        self._starts += 1
        src = str(Path(__file__).resolve().parents[2])  # the folder holding node_app
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd="/",
                start_new_session=True,  # its own process group: stopped with its child
            )
        except OSError as exc:
            raise ReaderFailed(f"cannot start the volume reader: {exc}") from exc
        self._buf = b""
        hello = self._answer(time.monotonic() + self.START_S)
        if hello.get("ready") is not True:
            self._stop()
            raise ReaderFailed("the volume reader did not start")
        log.debug("volume reader started (pid %d)", self._proc.pid)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def _answer(self, deadline: float) -> dict[str, Any]:
        """The next answer line, as a JSON object; else the reader is stopped and ReaderFailed."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk or len(self._buf) > 1 << 20:  # ended, too slow, or no line at all
                self._stop()
                raise ReaderFailed("the volume reader did not answer")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            got = json.loads(line)
        except ValueError:
            got = None
        if not isinstance(got, dict):
            self._stop()
            raise ReaderFailed("the volume reader answered garbage")
        return got

    def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=timeout):
            raise ReaderFailed("the volume reader is busy")
        try:
            if self._proc is not None and self._proc.poll() is not None:
                self._stop()  # it died: this request goes to the archive API, the next starts one
                raise ReaderFailed("the volume reader ended")
            if self._proc is None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(request).encode() + b"\n")
                self._proc.stdin.flush()
            except OSError as exc:
                self._stop()
                raise ReaderFailed("the volume reader is gone") from exc
            got = self._answer(deadline)
            if got.get("unusable") is True or "error" in got:
                raise ReaderFailed("the volume reader could not use the volume")
            return got
        finally:
            self._lock.release()

    def copy(
        self, mountpoint: str, owner: tuple[int, int], name: str, dest: Path, limit: int
    ) -> None:
        """Copy the output ``name`` of the volume mounted at ``mountpoint`` to ``dest``.

        The checks of :func:`.output.copy_output_at`, in the reader; FileNotFoundError: none,
        RuntimeRefusal: refused, ReaderFailed: ask the archive API.
        """
        got = self._ask(
            {
                "op": "copy",
                "mountpoint": mountpoint,
                "owner": list(owner),
                "name": name,
                "dest": str(dest),
                "limit": int(limit),
            },
            self.COPY_S,
        )
        if got.get("ok") is True:
            return
        if got.get("missing") is True:
            raise FileNotFoundError(name)
        refused, reason = got.get("refused"), got.get("reason")
        if isinstance(refused, str) and isinstance(reason, str):
            try:
                status = RunStatus(refused)
            except ValueError:
                status = None
            if status is not None:
                raise RuntimeRefusal(status, reason)
        with self._lock:
            self._stop()
        raise ReaderFailed("the volume reader answered garbage")

    def read(self, mountpoint: str, owner: tuple[int, int], name: str, limit: int) -> bytes | None:
        """The first ``limit`` bytes of the regular file ``name`` in the volume; None: none."""
        got = self._ask(
            {
                "op": "read",
                "mountpoint": mountpoint,
                "owner": list(owner),
                "name": name,
                "limit": int(limit),
            },
            self.READ_S,
        )
        data = got.get("data", False)
        if data is None:
            return None
        if isinstance(data, str):
            try:
                raw = base64.b64decode(data, validate=True)
            except ValueError:
                raw = None
            if raw is not None and len(raw) <= limit:
                return raw
        with self._lock:
            self._stop()
        raise ReaderFailed("the volume reader answered garbage")

    def close(self) -> None:
        """Stop the reader (a request after this raises ReaderFailed)."""
        self._closed = True
        with self._lock:
            self._stop()


class PodmanRuntime(DockerRuntime):
    """Runs each algorithm like :class:`DockerRuntime` does, in a rootless Podman's containers.

    It talks to Podman's Docker-compatible API (``podman system service``, running as the node's
    ordinary user), so every container option, the relay side-car, the run volume, the image and
    digest checks and the outcome rules are the Docker runtime's own. What differs is adapted at
    the API boundary: tmpfs volume sizes, and (on cgroup v1, where rootless Podman ignores
    resource limits) the memory/CPU/pids limits, applied through cgroups delegated to the user
    (:class:`RunCgroup`). Before its first run it checks that a limit really reaches a container,
    and refuses to run anything if not.

    Parameters
    ----------
    socket
        The Podman API socket (default :func:`default_socket`).
    cgroup_parent
        On cgroup v1: the cgroup under ``/sys/fs/cgroup/{memory,cpu,pids}/`` delegated to the
        Podman user (``scripts/setup-podman.sh`` makes ``v6nb-podman``).
    client
        A ``docker.DockerClient`` of the Podman API (default: one for ``socket``).
    start_service
        Start ``podman system service`` on ``socket`` when none answers (:func:`ensure_service`);
        :meth:`close` stops it.
    node_name, instance, sidecar_image, registry, warm, warm_spares
        As for :class:`DockerRuntime`. A side-car image without registry is pulled from
        ``registry`` when Podman does not have it.

    Examples
    --------
    >>> rt = PodmanRuntime(node_name="leiden", registry="127.0.0.1:5000")  # doctest: +SKIP
    >>> rt.name  # doctest: +SKIP
    'podman'
    """

    name: ClassVar[str] = "podman"
    isolated: ClassVar[bool] = True

    def __init__(
        self,
        *,
        socket: str | os.PathLike[str] | None = None,
        cgroup_parent: str = "v6nb-podman",
        client: Any = None,
        node_name: str = "node",
        instance: str | None = None,
        sidecar_image: str = "v6nb/base:latest",
        registry: str | None = None,
        warm: bool = False,
        warm_spares: int = 0,
        start_service: bool = False,
    ) -> None:
        self.socket = Path(socket) if socket else default_socket()
        self.cgroup_parent = cgroup_parent
        self._v1 = not cgroup_v2()
        if self._v1:
            self._check_delegation()
        self._service = ensure_service(self.socket) if start_service and client is None else None
        if client is None:
            import docker

            client = docker.DockerClient(base_url=f"unix://{self.socket}", timeout=60)
        try:
            _check_rootless(client, self.socket)
        except Exception:
            self._stop_service()
            raise
        self._checked = False
        self._check_lock = threading.Lock()
        self._reader = VolumeReader()  # started when a node without root first reads a volume
        try:
            owner = os.stat(self.socket)
            self._service_ids: tuple[int, int] | None = (owner.st_uid, owner.st_gid)
        except OSError:
            self._service_ids = None
        super().__init__(
            node_name=node_name,
            instance=instance,
            sidecar_image=sidecar_image,
            client=_PodmanClient(client, self),
            registry=registry,
            warm=warm,
            warm_spares=warm_spares,
        )
        digest = hashlib.sha256(self.instance.encode()).hexdigest()[:8]
        self._key_prefix = f"{_KEY_PREFIX}{digest}-"
        # what a run leaves behind waits until its result is on its way (see _Settling)
        self._in_run = threading.local()
        self._wake = threading.Event()
        # (the next run's spare starts at once: a run that comes soon after finds it sooner)
        settling = _Settling(self._removals, SETTLE_S, self._in_run, self._wake)
        self._removals = settling  # type: ignore[assignment]
        self._ensure_sidecar_image()

    # -- setup checks ------------------------------------------------------------------------------

    def _check_delegation(self) -> None:
        missing = [
            str(CGROUP_ROOT / c / self.cgroup_parent)
            for c in CGROUP_CONTROLLERS
            if not os.access(CGROUP_ROOT / c / self.cgroup_parent, os.W_OK | os.X_OK)
        ]
        if missing:
            raise ConfigurationError(
                "rootless Podman cannot apply memory/CPU/pids limits on this host's cgroup v1, and "
                f"the cgroups delegated for them are missing or not writable: {', '.join(missing)}; "
                f"{_SETUP_HINT}",
                errors={"podman_cgroup_parent": self.cgroup_parent},
            )

    def _ensure_sidecar_image(self) -> None:
        import docker.errors

        try:
            self.client.images.get(self.sidecar_image)
            return
        except docker.errors.ImageNotFound:
            pass
        if not self.registry or parse_image(self.sidecar_image).registry:
            return  # the first run says it is missing
        repo, _, tag = self.sidecar_image.partition(":")
        with contextlib.suppress(docker.errors.APIError):
            image = self.client.images.pull(f"{self.registry}/{repo}", tag=tag or "latest")
            self.sidecar_image = image.id

    def self_check(self) -> None:
        """Start a container with limits and check they hold for its process (once per process).

        On cgroup v1 its process must be in the run cgroups the node made (so the hook works);
        on v2 it must see its pids limit. Raises :class:`RuntimeRefusal` (FAILED) naming what to
        fix when not: the limits would not hold, so no run starts.
        """
        key = (str(self.socket), self.cgroup_parent)
        with self._check_lock:
            if self._checked or key in _CHECKED:
                return
            script = "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids.max 2>/dev/null || true"
            container = None
            try:
                # through create (not run): the limits take the same path as a run's
                container = self.client.containers.create(
                    self.sidecar_image,
                    ["sh", "-c", script],
                    network_mode="none",
                    user="65534:65534",
                    pids_limit=_SELF_CHECK_PIDS,
                    mem_limit="32m",
                    **self._locked_down(None, "check"),
                )
                container.start()
                container.wait(timeout=60)
                out = container.logs(stdout=True, stderr=True).decode(errors="replace")
            except Exception as exc:
                raise RuntimeRefusal(
                    RunStatus.FAILED, f"podman self-check failed to run a container: {exc}"
                ) from exc
            finally:
                if container is not None:
                    with contextlib.suppress(Exception):
                        container.remove(force=True)
            lines = out.split()
            if container.cgroup is not None:  # v1: where the hook put it, controller by controller
                want = f"/{self.cgroup_parent}/{container.cgroup.key}"
                placed = {
                    ctl: any(ln.split(":", 2)[1:] == [ctl, want] for ln in lines)
                    for ctl in CGROUP_CONTROLLERS
                }
                ok, seen = all(placed.values()), ", ".join(c for c, p in placed.items() if not p)
                seen = f"not in its {seen} cgroup(s)" if seen else ""
            else:
                ok, seen = str(_SELF_CHECK_PIDS) in lines, f"pids.max {lines[-1:]}"
            if not ok:
                raise RuntimeRefusal(
                    RunStatus.FAILED,
                    f"podman self-check: a container with limits was {seen}: resource limits do "
                    f"not reach containers (on cgroup v1: the OCI hook {HOOK_NAME} is not "
                    f"installed, not in Podman's hooks_dir, or not for cgroup parent "
                    f"'{self.cgroup_parent}'); {_SETUP_HINT}",
                )
            self._checked = True
            _CHECKED.add(key)  # the same service and cgroups in this process: checked

    # -- the adaptations ---------------------------------------------------------------------------

    def _limits_for(self, kwargs: dict[str, Any]) -> RunCgroup | None:
        """On cgroup v1: take the limit options out of ``kwargs`` into a new :class:`RunCgroup`."""
        if not self._v1:
            return None
        mem = kwargs.pop("mem_limit", None)
        kwargs.pop("memswap_limit", None)
        nano = kwargs.pop("nano_cpus", None)
        pids = kwargs.pop("pids_limit", None)
        key = f"{self._key_prefix}{secrets.token_hex(6)}"
        memory_mb = _megabytes(mem) if mem is not None else None
        cgroup = RunCgroup(
            self.cgroup_parent,
            key,
            memory_mb=memory_mb,
            cpus=nano / 1e9 if nano else None,
            pids=int(pids) if pids else None,
            owner=self._service_ids if os.geteuid() == 0 else None,
        )
        kwargs["hostname"] = key
        tmpfs = dict(kwargs.get("tmpfs") or {})
        tmpfs["/sys/fs/cgroup"] = "ro,size=4k"  # only its own cgroups (below), as under Docker
        kwargs["tmpfs"] = tmpfs
        volumes = dict(kwargs.get("volumes") or {})
        volumes.update(cgroup.binds())
        kwargs["volumes"] = volumes
        return cgroup

    def _start_sidecar(
        self, proxy_socket: Path | None, name: str, spec: RunSpec | None, size_mb: int
    ) -> Sidecar:
        """The Docker runtime's side-car, and (a root node) its run volume read through it.

        Rootless Podman mounts the volume in its own mount namespace, where a root node can still
        read it through the side-car's (``/proc/<pid>/root``) instead of the archive API, which
        costs 20-60 ms per read; writing stays with the archive API (a root node cannot create
        files in a tmpfs of the rootless user's namespace). A node without root reads it through
        its :class:`VolumeReader`, which falls back to the archive API when it fails.
        """
        sidecar = super()._start_sidecar(proxy_socket, name, spec, size_mb)
        if os.geteuid() != 0:
            # the node's own reader in the user's namespaces reads it (ids as they number them)
            sidecar.volume.read_with(self._reader, self._user_ids())
        else:
            seen = False
            with contextlib.suppress(Exception):  # the engine did not say: the archive API it is
                sidecar.container.reload()
                pid = int(sidecar.container.attrs.get("State", {}).get("Pid") or 0)
                owner = _host_ids(pid, self._user_ids())
                seen = bool(pid and owner and sidecar.volume.read_via(pid, owner))
            if not seen:
                log.debug("run volume %s: read through the archive API", sidecar.volume.name)
        return sidecar

    def _adopted(self, container: Any) -> Any:
        # the archive API's answers adapted as for this life's containers (links, linkTarget)
        return _Container(container, None, self)

    def run(self, spec: RunSpec) -> RunOutcome:
        try:
            self.self_check()
        except RuntimeRefusal as refusal:
            return RunOutcome(refusal.status, refusal.reason)
        self._in_run.active = True
        try:
            return super().run(spec)
        finally:
            self._in_run.active = False

    def _outcome(
        self,
        spec: RunSpec,
        container: Any,
        files: Any,
        sidecar: Any,
        captured: bytes,
        *,
        timed_out: bool,
        reported: int | None = None,
    ) -> RunOutcome:
        cgroup = getattr(container, "cgroup", None)
        with self._lock:
            killed = spec.run_id in self._killed
        if cgroup is not None and not killed and not timed_out and cgroup.oom_kills():
            container.reload()
            code = container.attrs.get("State", {}).get("ExitCode")
            if code != 0:
                return RunOutcome(
                    RunStatus.CRASHED,
                    f"out of memory (limit {spec.limits.memory_mb} MB; limits.memory_mb in "
                    "node.yaml)",
                    log_tail(captured),
                    code,
                )
        return super()._outcome(
            spec, container, files, sidecar, captured, timed_out=timed_out, reported=reported
        )

    def close(self) -> None:
        self._wake.set()  # queued removals go at once
        try:
            super().close()
        finally:
            self._reader.close()
            self._stop_service()

    def _stop_service(self) -> None:
        """Stop the ``podman system service`` this runtime started (none: nothing to do)."""
        if self._service is not None:
            self._service.terminate()
            try:
                self._service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._service.kill()

    def cleanup(self) -> list[str]:
        removed = super().cleanup()
        if self._v1:
            for ctl in CGROUP_CONTROLLERS:
                with contextlib.suppress(OSError):
                    for d in (CGROUP_ROOT / ctl / self.cgroup_parent).glob(f"{self._key_prefix}*"):
                        with contextlib.suppress(OSError):  # still in use: not a leftover
                            d.rmdir()
                            removed.append(f"cgroup {ctl}/{d.name}")
        return removed


def _check_rootless(client: Any, socket: Path) -> None:
    """Refuse a socket that is not a rootless Podman's (a rootful one, or a Docker engine)."""
    api = client.api
    try:
        answer = api._get(f"{api.base_url}/v4.0.0/libpod/info", timeout=30)
        api._raise_for_status(answer)
        rootless = answer.json()["host"]["security"]["rootless"]
    except Exception as exc:
        raise ConfigurationError(
            f"runtime is 'podman' but {socket} is not the socket of a Podman service ({exc}); "
            "point `podman_socket` in node.yaml at the rootless `podman system service`",
            errors={"podman_socket": str(socket)},
        ) from exc
    if rootless is not True:
        raise ConfigurationError(
            f"the Podman service on {socket} runs as root: the Podman runtime uses only a "
            "rootless one, run by an ordinary user (docs/operations.md, 'Podman'); point "
            "`podman_socket` at that user's service",
            errors={"podman_socket": str(socket)},
        )


def _host_ids(pid: int, ids: tuple[int, int]) -> tuple[int, int] | None:
    """The host's numbers of the uid and gid ``ids`` inside process ``pid``'s user namespace.

    Examples
    --------
    >>> _host_ids(os.getpid(), (0, 0))
    (0, 0)
    """
    found = []
    for kind, inside in zip(("uid_map", "gid_map"), ids, strict=True):
        try:
            table = Path(f"/proc/{int(pid)}/{kind}").read_text()
        except OSError:
            return None
        for line in table.splitlines():
            first, host, count = (int(x) for x in line.split())
            if first <= inside < first + count:
                found.append(host + inside - first)
                break
        else:
            return None
    return found[0], found[1]


def _megabytes(value: Any) -> int:
    """``"512m"`` (the Docker runtime's spelling) or a byte count -> MiB."""
    text = str(value).strip().lower()
    if text.endswith("m"):
        return int(text[:-1])
    return -(-int(text) // 2**20)
