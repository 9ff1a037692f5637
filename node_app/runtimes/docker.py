"""The Docker runtime: each run in a locked-down container that can reach nothing but its node's proxy."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vantage6nb.common.schemas import RunStatus

from ..policy import ImageRef, parse_image
from .base import (
    DatabaseMount,
    RunOutcome,
    RunSpec,
    Runtime,
    RuntimeRefusal,
    crashed_outcome,
    timed_out_outcome,
)
from .docker_mounts import ContainerFiles, container_files
from .process import LOG_TAIL_BYTES, algorithm_environment, log_tail

if TYPE_CHECKING:  # pragma: no cover
    import docker

__all__ = ["ALGORITHM_UID", "RELAY_PORT", "DockerRuntime", "engine_answers"]

log = logging.getLogger(__name__)

ALGORITHM_UID = 10001  # the non-root user algorithm containers run as when the node runs as root
RELAY_PORT = 7601  # where the side-car relay listens, on the loopback the algorithm shares with it
LABEL_NODE = "v6nb.node"
LABEL_RUN = "v6nb.run"
LABEL_ROLE = "v6nb.role"
_RELAY_READY_S = 3.0


def engine_answers(*, base_url: str | None = None, timeout: float = 2.0) -> bool:
    """True when a Docker engine answers a ping (``docker`` SDK imported only here, lazily).

    Examples
    --------
    >>> engine_answers(base_url="unix:///nonexistent.sock")
    False
    """
    try:
        import docker

        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout)
            if base_url
            else docker.from_env(timeout=timeout)
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure to reach the engine means "no engine"
        return False


class DockerRuntime(Runtime):
    """Runs each algorithm in a container with no network but a relay to the node's proxy.

    Per run, a side-car container (``network_mode="none"``) runs ``socat``, listening on
    ``127.0.0.1:RELAY_PORT`` in its own network namespace and forwarding to the node proxy's unix
    socket (``RunSpec.proxy_socket``, bind-mounted). The algorithm container joins that namespace
    (``network_mode="container:<side-car>"``): its only interface is ``lo`` and the only thing it can
    reach is the proxy. It runs with a read-only root, a tmpfs ``/tmp`` scratch, a non-root user, all
    capabilities dropped, no-new-privileges and the memory/CPU/pids limits of ``RunSpec.limits``.

    Parameters
    ----------
    node_name
        Names the containers (``v6nb-<name>-run<id>-<random>``; characters Docker refuses become ``-``).
    instance
        Labels every container (``v6nb.node=<instance>``) so :meth:`cleanup` finds a previous life's
        leftovers; identifies this node installation on the engine (default: ``node_name``). Two
        nodes sharing an engine need different instances, else one's start removes the other's runs.
    sidecar_image
        An image with ``socat`` (the base image built by ``scripts/build-images.sh``).
    client
        A ``docker.DockerClient``; by default ``docker.from_env()``.
    tmpfs_mb
        Size of the ``/tmp`` scratch (it counts against the memory limit).
    warm
        Keep the critical path short: start the next run's relay side-car ahead of time (one
        spare per proxy socket, each still used by exactly one run, so no two runs ever share a
        network namespace), and remove finished containers in the background after the outcome is
        returned. :meth:`close` waits for those removals and removes the spare.
    registry
        Registry (``host:port``) for image names that name none: ``v6nb/summary`` is pulled as
        ``<registry>/v6nb/summary@<pinned digest>`` (by tag when none is pinned). None: such names
        are local images.

    Examples
    --------
    >>> rt = DockerRuntime(node_name="leiden")  # doctest: +SKIP
    >>> rt.cleanup()  # doctest: +SKIP
    []
    """

    name: ClassVar[str] = "docker"
    isolated: ClassVar[bool] = True

    def __init__(
        self,
        *,
        node_name: str = "node",
        instance: str | None = None,
        sidecar_image: str = "v6nb/base:latest",
        client: docker.DockerClient | None = None,
        tmpfs_mb: int = 256,
        registry: str | None = None,
        warm: bool = False,
    ) -> None:
        if client is None:
            import docker

            client = docker.from_env(timeout=60)
        self.client = client
        self.node_name = node_name
        self.instance = instance or node_name
        self._slug = re.sub(r"[^a-zA-Z0-9_.-]", "-", node_name).strip("-._") or "node"
        self.sidecar_image = sidecar_image
        self.tmpfs_mb = tmpfs_mb
        self.registry = registry
        self._images: dict[int, str] = {}  # run id -> verified image id, from prepare()
        self._containers: dict[int, Any] = {}
        self._killed: set[int] = set()
        self._suffixes: dict[int, str] = {}  # run id -> random part of its containers' names
        self._lock = threading.Lock()
        self.warm = warm
        # One worker each: removals queue up behind each other, and never delay a spare's start.
        self._removals = ThreadPoolExecutor(1, thread_name_prefix="v6nb-docker-remove")
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="v6nb-docker-prestart")
        self._spares: dict[str, Future[Any]] = {}  # proxy socket -> a relay starting or started
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove every container labelled with this node's name (leftovers of a previous life)."""
        removed = []
        # sparse: no inspect per container, so one that disappears meanwhile is no error
        for c in self.client.containers.list(
            all=True, sparse=True, filters={"label": f"{LABEL_NODE}={self.instance}"}
        ):
            with contextlib.suppress(Exception):  # already gone: nothing to clean
                c.remove(force=True)
                removed.append((c.attrs.get("Names") or [c.short_id])[0].lstrip("/"))
        if removed:
            log.info("removed %d leftover container(s): %s", len(removed), ", ".join(removed))
        return removed

    def close(self) -> None:
        with self._lock:
            ids = list(self._containers)
            self._closing = True
            spares = list(self._spares.values())
            self._spares.clear()
        for rid in ids:
            self.kill(rid)
        self._starter.shutdown(wait=True)
        for spare in spares:
            _remove_started(spare)
        self._removals.shutdown(wait=True)  # queued removals finish before the node exits
        self.client.close()

    # -- image policy ------------------------------------------------------------------------------

    def prepare(self, spec: RunSpec) -> None:
        """Pull (by digest when pinned) and verify the image; remember its id for :meth:`run`."""
        import docker.errors

        ref = parse_image(spec.image)
        pinned = spec.digest or ref.digest
        if spec.digest and ref.digest and spec.digest != ref.digest:
            raise RuntimeRefusal(
                RunStatus.NOT_ALLOWED,
                f"digest mismatch: expected {spec.digest}, got {ref.digest} (in the image name)",
            )
        if not ref.registry and self.registry:
            ref = dataclasses.replace(ref, registry=self.registry)
        if ref.registry:
            image = self._pull(ref, pinned)
        else:
            local = spec.image.split("@", 1)[0]
            try:
                image = self.client.images.get(local if ref.tag else f"{local}:latest")
            except docker.errors.ImageNotFound as exc:
                raise RuntimeRefusal(
                    RunStatus.FAILED,
                    f"image '{spec.image}' is not on this node's Docker engine: build it with "
                    "`v6nb algorithm build`, or name it with its registry (e.g. 127.0.0.1:5000/...) "
                    "so the node pulls it",
                ) from exc
        if pinned:
            have = image_digests(image, ref.repository)
            if pinned not in have:
                got = have[0]  # the registry digest when there is one, else the image id
                raise RuntimeRefusal(
                    RunStatus.NOT_ALLOWED, f"digest mismatch: expected {pinned}, got {got}"
                )
        with self._lock:
            self._images[spec.run_id] = image.id
        if self.warm and spec.proxy_socket is not None:
            self._prestart(spec.proxy_socket)  # starts while the node fetches the token and reports

    def _pull(self, ref: ImageRef, pinned: str | None) -> Any:
        """The image from its registry: by the pinned digest when there is one, else by tag."""
        import docker.errors

        if pinned:
            # Content addressed: an image already here under that digest is that image; no round trip.
            with contextlib.suppress(docker.errors.APIError):  # not here, or not a valid digest
                return self.client.images.get(f"{ref.repository}@{pinned}")
        tag = ref.tag or "latest"
        attempts = [pinned, tag] if pinned and not ref.digest else [pinned or tag]
        for i, attempt in enumerate(attempts):
            what = f"{ref.repository}{'@' if attempt.startswith('sha256:') else ':'}{attempt}"
            try:
                return self.client.images.pull(ref.repository, tag=attempt)
            except docker.errors.APIError as exc:
                if i + 1 < len(attempts):
                    # The registry does not hold the pinned digest: pull the tag to report which
                    # digest it serves instead (prepare() then refuses it as a digest mismatch).
                    continue
                raise RuntimeRefusal(
                    RunStatus.FAILED, f"pull failed: {what}: {_explain(exc)}"
                ) from exc
            except Exception as exc:  # connection reset, timeout
                raise RuntimeRefusal(RunStatus.FAILED, f"pull failed: {what}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- running -----------------------------------------------------------------------------------

    def run(self, spec: RunSpec) -> RunOutcome:
        import docker.errors

        with self._lock:
            image_id = self._images.pop(spec.run_id, None)
        if image_id is None:
            try:
                self.prepare(spec)
            except RuntimeRefusal as refusal:
                return RunOutcome(refusal.status, refusal.reason)
            with self._lock:
                image_id = self._images.pop(spec.run_id)
        files = container_files(spec, outdir_owner=self._user_ids())
        sidecar = None
        container = None
        try:
            try:
                sidecar = self._take_sidecar(spec) if spec.proxy_socket else None
                container = self._create_algorithm(spec, image_id, files, sidecar)
                with self._lock:
                    self._containers[spec.run_id] = container
                    # closing: the node is stopping, and close() killed only containers it saw
                    killed_early = spec.run_id in self._killed or self._closing
                if killed_early:
                    return RunOutcome(RunStatus.KILLED, "killed on request")
                # Attach before start: the attach stream ends only once all output is delivered,
                # whereas `docker logs` right after exit may miss the last lines (the crash).
                captured = _Captured()
                stream = container.attach(
                    stdout=True, stderr=True, stream=True, logs=True, demux=True
                )
                reader = threading.Thread(target=_drain, args=(stream, captured), daemon=True)
                reader.start()
                if sidecar is not None:
                    self._wait_relay(sidecar)
                container.start()
                with self._lock:
                    if self._closing:
                        self._killed.add(spec.run_id)
                    killed_now = spec.run_id in self._killed
                if killed_now:  # a kill that came between create and start
                    container.kill()
            except (docker.errors.DockerException, OSError) as exc:
                return RunOutcome(
                    RunStatus.FAILED, f"could not start the container: {_explain(exc)}"
                )
            timed_out = self._wait(container, spec.limits.timeout_s)
            reader.join(timeout=10)
            output = captured.output()
            return self._outcome(spec, container, files, output, timed_out=timed_out)
        finally:
            with self._lock:
                self._containers.pop(spec.run_id, None)
                self._killed.discard(spec.run_id)
                self._suffixes.pop(spec.run_id, None)
            shutil.rmtree(files.outdir, ignore_errors=True)
            done = [c for c in (container, sidecar) if c is not None]
            if self.warm and not self._closing:
                # The outcome does not wait for removal: the result is uploaded meanwhile.
                self._removals.submit(_remove, done)
                if spec.proxy_socket is not None:
                    self._prestart(spec.proxy_socket)
            else:
                _remove(done)

    def kill(self, run_id: int) -> bool:
        with self._lock:
            container = self._containers.get(run_id)
            if container is None:
                return False
            self._killed.add(run_id)
        try:
            container.kill()  # SIGKILL: PID 1 in a container ignores SIGTERM unless it handles it
            return True
        except Exception:  # not started yet (run() kills it at start) or already ended
            with contextlib.suppress(Exception):
                container.reload()
            if container.status == "created":
                return True
            with self._lock:
                self._killed.discard(run_id)
            return False

    def running(self) -> list[int]:
        """Run ids with a container."""
        with self._lock:
            return list(self._containers)

    # -- internals ---------------------------------------------------------------------------------

    def _user_ids(self) -> tuple[int, int]:
        # A root node runs algorithms as an unprivileged uid; any other node as itself (non-root).
        if os.geteuid() == 0:
            return ALGORITHM_UID, ALGORITHM_UID
        return os.geteuid(), os.getegid()

    def _container_name(self, spec: RunSpec) -> str:
        # Unique per attempt: a run retried after a node restart, or the same run id on another
        # network sharing this engine, must not collide with a container that is still going away.
        tag = self._suffixes.setdefault(spec.run_id, secrets.token_hex(3))
        return f"v6nb-{self._slug}-run{spec.run_id}-{tag}"

    def _labels(self, spec: RunSpec | None, role: str) -> dict[str, str]:
        # A spare relay belongs to no run yet (labels are fixed at creation): `v6nb.run=spare`.
        run = str(spec.run_id) if spec is not None else "spare"
        return {LABEL_NODE: self.instance, LABEL_RUN: run, LABEL_ROLE: role}

    def _locked_down(self, spec: RunSpec | None, role: str) -> dict[str, Any]:
        """The container options every run container gets."""
        return {
            "labels": self._labels(spec, role),
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "ipc_mode": "private",
            "detach": True,
        }

    def _take_sidecar(self, spec: RunSpec) -> Any:
        """This run's relay: the spare started ahead of time when there is a healthy one, else a new one."""
        assert spec.proxy_socket is not None
        with self._lock:
            spare = self._spares.pop(str(spec.proxy_socket), None)
        if spare is not None:
            try:
                sidecar = spare.result(timeout=60)
                sidecar.reload()
                if sidecar.status == "running":
                    return sidecar
                self._removals.submit(_remove, [sidecar])
            except Exception as exc:  # the spare failed to start: start one the ordinary way
                log.warning("spare relay unusable (%s); starting a new one", exc)
        return self._start_sidecar(spec.proxy_socket, f"{self._container_name(spec)}-relay", spec)

    def _prestart(self, proxy_socket: Path) -> None:
        """Queue the start of a spare relay for the next run on ``proxy_socket`` (if none is queued)."""
        key = str(proxy_socket)
        with self._lock:
            if self._closing or key in self._spares:
                return
            name = f"v6nb-{self._slug}-relay-{secrets.token_hex(4)}"
            self._spares[key] = self._starter.submit(self._start_sidecar, proxy_socket, name, None)

    def _start_sidecar(self, proxy_socket: Path, name: str, spec: RunSpec | None) -> Any:
        sock = "/run/v6nb/proxy.sock"
        # The relay runs as the node's own uid (without capabilities) so it may open the node's socket.
        sidecar = self.client.containers.create(
            self.sidecar_image,
            command=[
                "socat",
                f"TCP-LISTEN:{RELAY_PORT},bind=127.0.0.1,fork,reuseaddr",
                f"UNIX-CONNECT:{sock}",
            ],
            name=name,
            network_mode="none",
            user=f"{os.geteuid()}:{os.getegid()}",
            volumes={str(proxy_socket): {"bind": sock, "mode": "rw"}},
            mem_limit="64m",
            pids_limit=64,
            **self._locked_down(spec, "relay"),
        )
        sidecar.start()
        return sidecar

    def _wait_relay(self, sidecar: Any) -> None:
        """Wait until socat listens, so the algorithm's first request cannot race it."""
        sidecar.reload()
        pid = sidecar.attrs.get("State", {}).get("Pid") or 0
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
        log.warning("relay %s did not listen within %.0f s", sidecar.name, _RELAY_READY_S)

    def _create_algorithm(
        self, spec: RunSpec, image_id: str, files: ContainerFiles, sidecar: Any
    ) -> Any:
        uid, gid = self._user_ids()
        inside = dataclasses.replace(
            spec,
            input_file=Path(files.input_file),
            output_file=Path(files.output_file),
            token_file=Path(files.token_file),
            tmp_dir=Path("/tmp"),
            databases=[
                DatabaseMount(d.label, files.database_uris[d.label], d.type, d.query)
                for d in spec.databases
            ],
            proxy_host="http://127.0.0.1" if sidecar is not None else spec.proxy_host,
            proxy_port=RELAY_PORT if sidecar is not None else spec.proxy_port,
        )
        env = algorithm_environment(
            inside, base={"TMPDIR": "/tmp", "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
        )
        limits = spec.limits
        opts: dict[str, Any] = {}
        if limits.memory_mb:
            opts["mem_limit"] = f"{int(limits.memory_mb)}m"
            opts["memswap_limit"] = (
                f"{int(limits.memory_mb)}m"  # no swap: exceeding means OOM, not crawling
            )
        if limits.cpus:
            opts["nano_cpus"] = int(limits.cpus * 1e9)
        if limits.pids:
            opts["pids_limit"] = int(limits.pids)
        return self.client.containers.create(
            image_id,
            name=self._container_name(spec),
            network_mode=f"container:{sidecar.id}" if sidecar is not None else "none",
            user=f"{uid}:{gid}",
            environment=env,
            volumes=files.volumes,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"},
            working_dir="/tmp",
            **opts,
            **self._locked_down(spec, "algorithm"),
        )

    @staticmethod
    def _wait(container: Any, timeout_s: float | None) -> bool:
        """Wait for the container to end; True if the wall-clock timeout ended it instead."""
        import requests

        try:
            container.wait(timeout=timeout_s if timeout_s else None)
            return False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            with contextlib.suppress(Exception):
                container.kill()
            with contextlib.suppress(Exception):
                container.wait(timeout=30)
            return True

    def _outcome(
        self,
        spec: RunSpec,
        container: Any,
        files: ContainerFiles,
        captured: bytes,
        *,
        timed_out: bool,
    ) -> RunOutcome:
        container.reload()
        state = container.attrs.get("State", {})
        code = state.get("ExitCode")
        tail = log_tail(captured)
        with self._lock:
            killed = spec.run_id in self._killed
        if killed:
            return RunOutcome(RunStatus.KILLED, "killed on request", tail, code)
        if timed_out:
            return timed_out_outcome(spec.limits, tail, code)
        if state.get("OOMKilled"):
            return RunOutcome(
                RunStatus.CRASHED,
                f"out of memory (limit {spec.limits.memory_mb} MB; limits.memory_mb in node.yaml)",
                tail,
                code,
            )
        if code != 0:
            how = f"killed by signal {code - 128}" if code and code > 128 else f"exit code {code}"
            return crashed_outcome(how, tail, code)
        produced = Path(files.outdir) / Path(files.output_file).name
        if not produced.is_file():
            return RunOutcome(
                RunStatus.CRASHED,
                "algorithm exited without writing its output (OUTPUT_FILE is missing)",
                tail,
                code,
            )
        spec.output_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), str(spec.output_file))
        return RunOutcome(RunStatus.COMPLETED, "", tail, code)


def image_digests(image: Any, repository: str | None = None) -> list[str]:
    """The digests an image is known by: its registry digests (for ``repository`` first) and its id."""
    digests: list[str] = []
    for rd in image.attrs.get("RepoDigests") or []:
        repo, _, digest = rd.partition("@")
        if (
            repository is None
            or repo == repository
            or parse_image(repo).name == parse_image(repository).name
        ):
            digests.append(digest)
    digests.append(image.id)
    return list(dict.fromkeys(digests))


def _remove(containers: list[Any]) -> None:
    for c in containers:
        with contextlib.suppress(Exception):  # already gone
            c.remove(force=True)


def _remove_started(spare: Future[Any]) -> None:
    with contextlib.suppress(Exception):  # it never started: nothing to remove
        _remove([spare.result(timeout=60)])


class _Captured:
    """A container's stdout and stderr, each kept as a bounded tail.

    Docker copies the two through separate pipes, so their relative order is not reliable; a
    crash's traceback (stderr) must not be pushed out of the log tail by stdout that arrives after
    it. The log is the stdout tail, then the stderr tail after a marker line.
    """

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()

    def add(self, buffer: bytearray, chunk: bytes | None) -> None:
        if chunk:
            buffer.extend(chunk)
            if len(buffer) > 2 * LOG_TAIL_BYTES:
                del buffer[: len(buffer) - LOG_TAIL_BYTES]

    def output(self) -> bytes:
        if not self.err:
            return bytes(self.out)
        if not self.out:
            return bytes(self.err)
        return bytes(self.out).rstrip(b"\n") + b"\n--- stderr ---\n" + bytes(self.err)


def _drain(stream: Any, captured: _Captured) -> None:
    """Collect a container's (demultiplexed) output until the container's streams close."""
    try:
        for out, err in stream:
            captured.add(captured.out, out)
            captured.add(captured.err, err)
    except Exception:  # the container went away mid-stream: keep what arrived
        pass


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
