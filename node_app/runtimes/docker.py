"""The Docker runtime: each run in a locked-down container that can reach nothing but its node's proxy."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vantage6nb.common.schemas import RunStatus

from .base import (
    DatabaseMount,
    Limits,
    RunOutcome,
    RunSpec,
    Runtime,
    RuntimeRefusal,
    crashed_outcome,
    timed_out_outcome,
)
from .docker_images import explain, find_image, image_functions, lookup_image
from .docker_mounts import ContainerFiles, RunVolume, container_files
from .docker_sidecar import RELAY_PORT, RELAY_UID, Sidecar, remove, remove_started, start_sidecar
from .logs import Captured, drain, log_tail
from .output import MISSING_OUTPUT
from .process import algorithm_environment

if TYPE_CHECKING:  # pragma: no cover
    import docker

__all__ = ["ALGORITHM_UID", "RELAY_PORT", "RELAY_UID", "DockerRuntime", "engine_answers"]

log = logging.getLogger(__name__)

ALGORITHM_UID = 10001  # the non-root user algorithm containers run as when the node runs as root
LABEL_NODE = "v6nb.node"
LABEL_RUN = "v6nb.run"
LABEL_ROLE = "v6nb.role"


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

    Per run, a side-car container (``network_mode="none"``, a non-root user) runs ``socat``,
    listening on ``127.0.0.1:RELAY_PORT`` in its own network namespace and forwarding to the node
    proxy's unix socket (``RunSpec.proxy_socket``, bind-mounted). The algorithm container joins that
    namespace (``network_mode="container:<side-car>"``): its only interface is ``lo`` and the only
    thing it can reach is the proxy. It runs with a read-only root, a non-root user, all
    capabilities dropped, no-new-privileges and the memory/CPU/pids limits of ``RunSpec.limits``.
    What it can write is capped: ``/tmp`` (``limits.scratch_mb``), ``/dev/shm`` (``limits.shm_mb``)
    and the run folder holding input, token and output (a tmpfs volume of ``limits.output_mb``,
    :class:`~.docker_mounts.RunVolume`), which the side-car keeps mounted until the node has read
    the output; without a proxy socket the side-car only does that. Its log is capped too.

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
        self.registry = registry
        self._images: dict[int, str] = {}  # run id -> verified image id, from prepare()
        self._roles: dict[str, dict[str, str] | None] = {}  # image id -> its function roles
        self._resolved: dict[tuple[str, str | None], str] = {}  # (name, pin) -> image id, latest
        self._containers: dict[int, Any] = {}
        self._killed: set[int] = set()
        self._starting: set[int] = set()  # run ids inside run(), from the first step to the end
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
        """Remove every container and run volume labelled with this node's name (a previous life's)."""
        removed = []
        # sparse: no inspect per container, so one that disappears meanwhile is no error
        for c in self.client.containers.list(
            all=True, sparse=True, filters={"label": f"{LABEL_NODE}={self.instance}"}
        ):
            with contextlib.suppress(Exception):  # already gone: nothing to clean
                c.remove(force=True)
                removed.append((c.attrs.get("Names") or [c.short_id])[0].lstrip("/"))
        for v in self.client.volumes.list(filters={"label": f"{LABEL_NODE}={self.instance}"}):
            with contextlib.suppress(Exception):  # in use by a container going away, or gone
                v.remove(force=True)
                removed.append(f"volume {v.name[:12]}")
        if removed:
            log.info("removed %d leftover(s): %s", len(removed), ", ".join(removed))
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
            remove_started(spare)
        self._removals.shutdown(wait=True)  # queued removals finish before the node exits
        self.client.close()

    # -- image policy ------------------------------------------------------------------------------

    def prepare(self, spec: RunSpec) -> None:
        """Pull (by digest when pinned) and verify the image; remember its id for :meth:`run`."""
        image = find_image(self.client, spec, self.registry)
        with self._lock:
            self._images[spec.run_id] = image.id
        self._remember_roles(spec.image, spec.digest, image)  # what functions() says, for free
        if self.warm and spec.proxy_socket is not None:
            # starts while the node fetches the token and reports
            self._prestart(spec.proxy_socket, spec.limits)

    def functions(self, image: str, digest: str | None = None) -> dict[str, str] | None:
        """The roles in the image's ``org.vantage6nb.functions`` label; None without (a valid) one.

        Cached by image id: after :meth:`prepare` of a run of ``image`` (which resolves the name
        afresh) this makes no engine call, and describes exactly the image that run uses.
        """
        import docker.errors

        with self._lock:
            image_id = self._resolved.get((image, digest))
            if image_id is not None and image_id in self._roles:
                return self._roles[image_id]
        try:
            found = lookup_image(self.client, image, digest, self.registry)
        except RuntimeRefusal as refusal:  # prepare() refuses the run for the same reason
            log.warning("%s: cannot read its function roles: %s", image, refusal.reason)
            return None
        except (docker.errors.DockerException, OSError) as exc:
            log.warning("%s: cannot read its function roles: %s", image, explain(exc))
            return None
        return self._remember_roles(image, digest, found)

    def _remember_roles(self, name: str, digest: str | None, image: Any) -> dict[str, str] | None:
        with self._lock:
            known = image.id in self._roles
            roles = self._roles.get(image.id)
        if not known:
            roles = image_functions(image)  # parsed (and warned about) once per image
        with self._lock:
            self._roles.setdefault(image.id, roles)
            self._resolved[(name, digest)] = image.id
            return self._roles[image.id]

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
        files = container_files(spec)
        sidecar: Sidecar | None = None
        container = None
        with self._lock:
            self._starting.add(spec.run_id)  # a kill from now on is remembered (see kill())
        try:
            try:
                inputs = {
                    "input": spec.input_file.read_bytes(),
                    "token": spec.token_file.read_bytes(),
                }
                # the output's cap, plus room for what the node puts in (rounded up to MiB)
                size_mb = spec.limits.output_mb + -(-sum(map(len, inputs.values())) // 2**20)
                sidecar = self._take_sidecar(spec, size_mb)
                sidecar.volume.write_inputs(sidecar.container, inputs)
                container = self._create_algorithm(spec, image_id, files, sidecar)
                with self._lock:
                    self._containers[spec.run_id] = container
                    # closing: the node is stopping, and close() killed only containers it saw
                    killed_early = spec.run_id in self._killed or self._closing
                if killed_early:
                    return RunOutcome(RunStatus.KILLED, "killed on request")
                # Attach before start: the attach stream ends only once all output is delivered,
                # whereas `docker logs` right after exit may miss the last lines (the crash).
                captured = Captured()
                stream = container.attach(
                    stdout=True, stderr=True, stream=True, logs=True, demux=True
                )
                reader = threading.Thread(target=drain, args=(stream, captured), daemon=True)
                reader.start()
                sidecar.wait_listening()
                container.start()
                with self._lock:
                    if self._closing:
                        self._killed.add(spec.run_id)
                    killed_now = spec.run_id in self._killed
                if killed_now:  # a kill that came between create and start
                    container.kill()
            except RuntimeRefusal as refusal:
                return RunOutcome(refusal.status, refusal.reason)
            except (docker.errors.DockerException, OSError) as exc:
                return RunOutcome(
                    RunStatus.FAILED, f"could not start the container: {explain(exc)}"
                )
            timed_out = self._wait(container, spec.limits.timeout_s)
            reader.join(timeout=10)
            output = captured.output()
            return self._outcome(spec, container, files, sidecar, output, timed_out=timed_out)
        finally:
            with self._lock:
                self._starting.discard(spec.run_id)
                self._containers.pop(spec.run_id, None)
                self._killed.discard(spec.run_id)
                self._suffixes.pop(spec.run_id, None)
            done = [c for c in (container, sidecar) if c is not None]
            if self.warm and not self._closing:
                # The outcome does not wait for removal: the result is uploaded meanwhile.
                self._removals.submit(remove, done)
                if spec.proxy_socket is not None:
                    self._prestart(spec.proxy_socket, spec.limits)
            else:
                remove(done)

    def kill(self, run_id: int) -> bool:
        """Kill a run in progress here; True when it was (its outcome is then KILLED).

        A kill that comes while the run is still being set up (side-car, run volume, container
        create) is remembered and carried out as soon as the container exists; one that finds the
        container not started yet is carried out by :meth:`run` right after the start.
        """
        with self._lock:
            if run_id not in self._starting:
                return False
            self._killed.add(run_id)
            container = self._containers.get(run_id)
        if container is not None:
            with contextlib.suppress(Exception):  # not started yet, or already ended: run() sees it
                container.kill()  # SIGKILL: PID 1 in a container ignores SIGTERM unless it handles it
        return True

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
            # the engine's copy of the output is a file on the node's disk: keep it small
            "log_config": {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
        }

    def _start_sidecar(
        self, proxy_socket: Path | None, name: str, spec: RunSpec | None, size_mb: int
    ) -> Sidecar:
        """The run's volume and the side-car that holds it (and relays to ``proxy_socket``, if any)."""
        volume = RunVolume(
            self.client,
            labels=self._labels(spec, "volume"),
            size_mb=size_mb,
            owner=self._user_ids(),
        )
        return start_sidecar(
            self.client,
            self.sidecar_image,
            name=name,
            proxy_socket=proxy_socket,
            volume=volume,
            options=self._locked_down(spec, "relay"),
        )

    def _take_sidecar(self, spec: RunSpec, size_mb: int) -> Sidecar:
        """This run's side-car: the spare started ahead of time when there is a healthy one, else a new one."""
        spare = None
        if spec.proxy_socket is not None:
            with self._lock:
                spare = self._spares.pop(str(spec.proxy_socket), None)
        if spare is not None:
            try:
                sidecar: Sidecar = spare.result(timeout=60)
                sidecar.container.reload()
                if sidecar.container.status == "running" and sidecar.volume.size_mb == size_mb:
                    return sidecar
                self._removals.submit(remove, [sidecar])
            except Exception as exc:  # the spare failed to start: start one the ordinary way
                log.warning("spare relay unusable (%s); starting a new one", exc)
        return self._start_sidecar(
            spec.proxy_socket, f"{self._container_name(spec)}-relay", spec, size_mb
        )

    def _prestart(self, proxy_socket: Path, limits: Limits) -> None:
        """Queue the start of a spare relay for the next run on ``proxy_socket`` (if none is queued)."""
        key = str(proxy_socket)
        with self._lock:
            if self._closing or key in self._spares:
                return
            name = f"v6nb-{self._slug}-relay-{secrets.token_hex(4)}"
            # sized for inputs up to 1 MiB (most are a few KiB); a larger one gets its own
            size_mb = limits.output_mb + 1
            self._spares[key] = self._starter.submit(
                self._start_sidecar, proxy_socket, name, None, size_mb
            )

    def _create_algorithm(
        self, spec: RunSpec, image_id: str, files: ContainerFiles, sidecar: Sidecar
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
            proxy_host="http://127.0.0.1" if sidecar.relays else spec.proxy_host,
            proxy_port=RELAY_PORT if sidecar.relays else spec.proxy_port,
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
        volumes: dict[str, dict[str, str]] = sidecar.volume.bind()
        for entry in files.volumes:
            host, inside_path, mode = entry.rsplit(":", 2)
            volumes[host] = {"bind": inside_path, "mode": mode}
        return self.client.containers.create(
            image_id,
            name=self._container_name(spec),
            network_mode=f"container:{sidecar.container.id}" if sidecar.relays else "none",
            user=f"{uid}:{gid}",
            environment=env,
            volumes=volumes,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={int(limits.scratch_mb)}m,mode=1777"},
            shm_size=f"{int(limits.shm_mb)}m",
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
        sidecar: Sidecar,
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
            outcome = crashed_outcome(how, tail, code)
            if "No space left on device" in tail:
                outcome.reason += (
                    f" (the run may write {spec.limits.output_mb} MB next to its output and "
                    f"{spec.limits.scratch_mb} MB in /tmp: limits.output_mb and limits.scratch_mb "
                    "in node.yaml)"
                )
            return outcome
        spec.output_file.parent.mkdir(parents=True, exist_ok=True)
        spec.output_file.unlink(missing_ok=True)
        try:
            sidecar.volume.take_output(
                sidecar.container,
                Path(files.output_file).name,
                spec.output_file,
                limit=spec.limits.output_bytes,
            )
        except FileNotFoundError:
            return RunOutcome(RunStatus.CRASHED, MISSING_OUTPUT, tail, code)
        except RuntimeRefusal as refusal:
            log.warning("run %s: %s", spec.run_id, refusal.reason)
            return RunOutcome(refusal.status, refusal.reason, tail, code)
        return RunOutcome(RunStatus.COMPLETED, "", tail, code)
