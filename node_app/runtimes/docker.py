"""The Docker runtime: each run in a locked-down container that can reach nothing but its node's proxy."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
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
from .docker_mounts import IO_DIR, ContainerFiles, RunVolume, container_files
from .docker_sidecar import RELAY_PORT, RELAY_UID, Sidecar, remove, remove_started, start_sidecar
from .logs import Captured, drain, log_tail
from .output import MISSING_OUTPUT
from .process import algorithm_environment
from .warm_containers import (
    BUNDLE,
    EXITED,
    WARM_BOOTSTRAP,
    Spare,
    SparePool,
    WarmKey,
    remove_spare,
    warm_entry,
)

if TYPE_CHECKING:  # pragma: no cover
    import docker

__all__ = ["ALGORITHM_UID", "RELAY_PORT", "RELAY_UID", "DockerRuntime", "engine_answers"]

log = logging.getLogger(__name__)

ALGORITHM_UID = 10001  # the non-root user algorithm containers run as when the node runs as root
LABEL_NODE = "v6nb.node"
LABEL_RUN = "v6nb.run"
LABEL_ROLE = "v6nb.role"
#: What every algorithm container's environment holds besides the image's own (nothing of a run).
BASE_ENV = {"TMPDIR": "/tmp", "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
_STILL_RUNNING = frozenset({"running", "paused", "restarting", "stopping"})
_ENDED = frozenset({"exited", "dead", "stopped"})
STOPPED_AT_RESTART = (
    "the node restarted while this run's algorithm was running; the restarted node cannot "
    "serve it (its proxy, token and timeout were the previous life's), so it stopped it before "
    "it had written its output"
)


def _spare_size_mb(limits: Limits) -> int:
    """A spare's run volume: the output's cap and 1 MiB for the input (most are a few KiB)."""
    return int(limits.output_mb) + 1


def _logs(container: Any) -> bytes:
    """A container's log (stdout and stderr), empty when the engine has none."""
    try:
        return bytes(container.logs(stdout=True, stderr=True, tail=200))
    except Exception:  # gone, or its log driver keeps none
        return b""


def _rename(container: Any, name: str) -> None:
    """Give a warm container its run's name, so that ``docker ps`` says which run it serves."""
    with contextlib.suppress(Exception):  # it ended and went away meanwhile: nothing to name
        container.rename(name)


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
    warm_spares
        With ``warm``: how many warm algorithm containers may wait at once (0: none). After a
        run of an image whose command is ``python -m vantage6nb.algorithm``, the next run's
        whole sandbox (side-car, run volume and algorithm container, with every option of a
        cold run's) is started for the same image id, data and limits; its interpreter imports
        numpy, pandas, the wrapper and the module and waits for the run's bundle
        (:mod:`.warm_containers`). A spare serves exactly one run, is discarded when the image,
        its digest, the data or the limits differ, and by :meth:`close`.
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
        warm_spares: int = 0,
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
        self._entries: dict[str, tuple[str, list[str]] | None] = {}  # image id -> warm entry
        #: The last runs' (run id, "warm" | "cold", seconds per phase), for benchmarks/roundtrip.py
        self.phases: deque[tuple[int, str, dict[str, float]]] = deque(maxlen=256)
        self._pool = SparePool(
            warm_spares if warm else 0, submit=self._starter.submit, discard=self._discard
        )
        # run id -> (algorithm container, its relay, run volume) a previous life left; until cleanup
        self._left: dict[int, tuple[Any, Any | None, str]] | None = None

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
        self._left = {}  # nothing of a previous life is left to recover
        return removed

    def recover(self, run_id: int, dest: Path, *, limit: int) -> Path | None:
        """Adopt the output of ``run_id``'s algorithm container that a previous life left (before
        :meth:`cleanup` removes it); see :meth:`Runtime.recover`.

        The side-car keeps the run volume mounted after the node dies. When the algorithm
        container has exited with code 0 and its output in the volume is complete (the wrapper
        names ``OUTPUT_FILE`` only by rename), the output is copied to ``dest`` (bounded, no links,
        by rename) as the run's own end would have. A container still running is killed: the
        restarted node cannot serve it (its proxy socket, token, log stream and timeout were the
        dead process's); an output it had completed before is its result all the same, and
        without one the run fails. A non-zero exit is the run's outcome (crashed).

        None when no algorithm container of the run started (the node died before it), or the
        side-car holding its volume is gone (the engine or the machine restarted: the files are
        lost, and the run is run again as after a machine crash).
        """
        left = self._left_by_previous().get(run_id)
        if left is None:
            return None
        algorithm, relay, volume_name = left
        state = algorithm.attrs.get("State") or {}
        status = str(state.get("Status") or "")
        stopped = status in _STILL_RUNNING
        if stopped:
            log.warning(
                "run %s: its algorithm is still running from a previous life: stopping it", run_id
            )
            with contextlib.suppress(Exception):  # it ended meanwhile
                algorithm.kill()
            with contextlib.suppress(Exception):
                algorithm.wait(timeout=30)
            algorithm.reload()
            state = algorithm.attrs.get("State") or {}
        elif status not in _ENDED:
            return None  # created, never started: nothing of the algorithm ran
        if relay is None or relay.status != "running":
            log.warning("run %s: the side-car holding its output is gone", run_id)
            return None
        code = state.get("ExitCode")
        if not stopped and code != 0:
            tail = log_tail(_logs(algorithm))
            if state.get("OOMKilled"):
                raise RuntimeRefusal(
                    RunStatus.CRASHED, "out of memory (limits.memory_mb in node.yaml)"
                )
            how = f"killed by signal {code - 128}" if code and code > 128 else f"exit code {code}"
            ended = crashed_outcome(how, tail, code)
            raise RuntimeRefusal(ended.status, ended.reason)
        volume = RunVolume.existing(self.client, volume_name, owner=self._user_ids())
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            volume.take_output(relay, dest.name, dest, limit=limit)
        except FileNotFoundError:
            if stopped:
                raise RuntimeRefusal(RunStatus.FAILED, STOPPED_AT_RESTART) from None
            raise RuntimeRefusal(RunStatus.CRASHED, MISSING_OUTPUT) from None
        return dest

    def _left_by_previous(self) -> dict[int, tuple[Any, Any | None, str]]:
        """The algorithm containers a previous life left, by run (one engine scan, until cleanup)."""
        if self._left is not None:
            return self._left
        import docker.errors

        found = []
        for c in self.client.containers.list(
            all=True, sparse=True, filters={"label": f"{LABEL_NODE}={self.instance}"}
        ):
            with contextlib.suppress(docker.errors.NotFound):  # gone meanwhile
                found.append(self._adopted(self.client.containers.get(c.id)))
        holders: dict[str, Any] = {}
        algorithms: list[tuple[Any, str]] = []
        for c in found:
            volume = next(
                (
                    m.get("Name")
                    for m in c.attrs.get("Mounts") or []
                    if m.get("Destination") == IO_DIR and m.get("Name")
                ),
                None,
            )
            role = (c.labels or {}).get(LABEL_ROLE)
            if volume is None:
                continue
            if role == "relay":
                holders[volume] = c
            elif role == "algorithm":
                algorithms.append((c, volume))
        left: dict[int, tuple[Any, Any | None, str]] = {}
        for c, volume in algorithms:
            relay = holders.get(volume)
            rid = self._run_of(c, relay, volume)
            if rid is not None:
                left[rid] = (c, relay, volume)
        self._left = left
        return left

    def _run_of(self, container: Any, relay: Any | None, volume: str) -> int | None:
        """The run an algorithm container served: its label, its name (a spare, renamed at the
        handoff) or, for a spare not renamed yet, the run bundle in its volume; None: no run."""
        run = str((container.labels or {}).get(LABEL_RUN, ""))
        if run.isdigit():
            return int(run)
        named = re.fullmatch(rf"v6nb-{re.escape(self._slug)}-run(\d+)-[0-9a-f]+", container.name)
        if named:
            return int(named.group(1))
        if relay is None or relay.status != "running":
            return None
        raw = RunVolume.existing(self.client, volume, owner=self._user_ids()).read_small(
            relay, BUNDLE, limit=1 << 20
        )
        try:
            rid = json.loads(raw or b"null").get("run")
        except (ValueError, AttributeError):
            return None  # no bundle: the spare never served a run
        return rid if isinstance(rid, int) else None

    def _adopted(self, container: Any) -> Any:
        """A container of a previous life as this runtime handles it (Podman adapts its API)."""
        return container

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
        for waiting in self._pool.close():
            remove_spare(waiting)
        self._removals.shutdown(wait=True)  # queued removals finish before the node exits
        self.client.close()

    # -- image policy ------------------------------------------------------------------------------

    def prepare(self, spec: RunSpec) -> None:
        """Pull (by digest when pinned) and verify the image; remember its id for :meth:`run`."""
        image = find_image(self.client, spec, self.registry)
        with self._lock:
            self._images[spec.run_id] = image.id
            if image.id not in self._entries:
                self._entries[image.id] = warm_entry(image.attrs)
        self._remember_roles(spec.image, spec.digest, image)  # what functions() says, for free
        self._pool.discard_stale(self._slot(spec), image.id)  # the image or its digest moved
        if self.warm and spec.proxy_socket is not None:
            # starts while the node fetches the token and reports (a run that finds a warm
            # spare leaves the relay for the next cold one)
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
        t0 = time.perf_counter()
        files = container_files(spec)
        sidecar: Sidecar | None = None
        container = None
        key = self._warm_key(spec, image_id)
        spare: Spare | None = None
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
                if key is not None and size_mb <= _spare_size_mb(spec.limits):
                    spare = self._pool.take(self._slot(spec), key)
                if spare is not None:  # started before this run: it waits for the bundle
                    sidecar, container = spare.sidecar, spare.container
                else:
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
                ended = threading.Event()  # its streams closed (or, warm: the engine saw it end)

                def read() -> None:
                    drain(stream, captured)
                    ended.set()

                reader = threading.Thread(target=read, daemon=True)
                reader.start()
                if spare is not None:  # the handoff: the run begins when its bundle appears
                    bundle = (BUNDLE, self._bundle(spec, files, sidecar))
                    sidecar.volume.write_inputs(sidecar.container, inputs, last=bundle)
                    # named for its run now, as a cold run's container is (labels are fixed)
                    threading.Thread(
                        target=_rename, args=(container, self._container_name(spec)), daemon=True
                    ).start()
                else:
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
                with self._lock:
                    killed = spec.run_id in self._killed
                if killed:  # a kill that stopped a warm container before its handoff
                    return RunOutcome(RunStatus.KILLED, "killed on request")
                return RunOutcome(
                    RunStatus.FAILED, f"could not start the container: {explain(exc)}"
                )
            t_started = time.perf_counter()
            reported = None
            if spare is not None:
                timed_out, reported = self._wait_warm(container, sidecar, ended, spec)
            else:
                timed_out = self._wait(container, spec.limits.timeout_s)
            t_ended = time.perf_counter()
            reader.join(timeout=10)
            output = captured.output()
            outcome = self._outcome(
                spec, container, files, sidecar, output, timed_out=timed_out, reported=reported
            )
            phases = {
                "start": t_started - t0,  # warm: take the spare and hand the run over
                "algorithm": t_ended - t_started,  # from the handoff (or start) to the exit
                "output": time.perf_counter() - t_ended,  # log, exit state, output copied out
            }
            self.phases.append((spec.run_id, "warm" if spare is not None else "cold", phases))
            log.debug("run %s (%s): %s", spec.run_id, self.phases[-1][1], phases)
            return outcome
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
                if key is not None:  # the next run of this image, data and limits starts warm
                    self._offer_spare(spec, key)
                elif spec.proxy_socket is not None:
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

    def _inside(self, spec: RunSpec, files: ContainerFiles, sidecar: Sidecar) -> RunSpec:
        """``spec`` as its container sees it: its paths and the relay's address."""
        return dataclasses.replace(
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

    def _algorithm_options(
        self, spec: RunSpec | None, limits: Limits, files: ContainerFiles, sidecar: Sidecar
    ) -> dict[str, Any]:
        """The options of an algorithm container, cold or warm (labels: ``spec``'s, or a spare's)."""
        uid, gid = self._user_ids()
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
        return {
            "network_mode": f"container:{sidecar.container.id}" if sidecar.relays else "none",
            "user": f"{uid}:{gid}",
            "volumes": volumes,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={int(limits.scratch_mb)}m,mode=1777"},
            "shm_size": f"{int(limits.shm_mb)}m",
            "working_dir": "/tmp",
            **opts,
            **self._locked_down(spec, "algorithm"),
        }

    def _create_algorithm(
        self, spec: RunSpec, image_id: str, files: ContainerFiles, sidecar: Sidecar
    ) -> Any:
        env = algorithm_environment(self._inside(spec, files, sidecar), base=BASE_ENV)
        return self.client.containers.create(
            image_id,
            name=self._container_name(spec),
            environment=env,
            **self._algorithm_options(spec, spec.limits, files, sidecar),
        )

    # -- warm spares -------------------------------------------------------------------------------

    @staticmethod
    def _slot(spec: RunSpec) -> tuple[str, str]:
        """Where a run looks for its spare: its proxy socket and the image name (a new digest
        pinned for the name, or the name moved to another image, then finds the old spare stale)."""
        return (str(spec.proxy_socket), spec.image)

    def _warm_key(self, spec: RunSpec, image_id: str) -> WarmKey | None:
        """What a spare for ``spec`` must have been made for; None: this run has no spare."""
        if self._pool.capacity <= 0 or self._entries.get(image_id) is None:
            return None
        return WarmKey(
            image_id=image_id,
            databases=tuple((d.label, d.uri, d.type) for d in spec.databases),
            limits=spec.limits,
            user=self._user_ids(),
            proxy_socket=str(spec.proxy_socket) if spec.proxy_socket is not None else None,
            sidecar_image=self.sidecar_image,
        )

    def _offer_spare(self, spec: RunSpec, key: WarmKey) -> None:
        """Start the next run's spare for ``key`` in the background (made from ``spec``'s setup
        only: its data, limits and proxy; nothing of the run itself reaches the containers)."""
        template = dataclasses.replace(
            spec, extra_env={}, output_file=Path("output"), task_id=0, run_id=0
        )
        self._pool.offer(self._slot(spec), key, lambda: self._start_spare(key, template))

    def _start_spare(self, key: WarmKey, template: RunSpec) -> Spare:
        """Start a spare: side-car, run volume, and the algorithm container waiting for a bundle."""
        entry = self._entries.get(key.image_id)
        assert entry is not None, "spares only for images with a warm entry"
        python, args = entry
        name = f"v6nb-{self._slug}-spare-{secrets.token_hex(4)}"
        sidecar = self._start_sidecar(
            template.proxy_socket, f"{name}-relay", None, _spare_size_mb(key.limits)
        )
        container = None
        try:
            files = container_files(template)
            container = self.client.containers.create(
                key.image_id,
                command=[IO_DIR, *args],
                entrypoint=[python, "-c", WARM_BOOTSTRAP],
                name=name,
                environment=dict(BASE_ENV),
                **self._algorithm_options(None, key.limits, files, sidecar),
            )
            sidecar.wait_listening()
            container.start()
        except Exception:
            remove([c for c in (container, sidecar) if c is not None])
            raise
        return Spare(key, sidecar, container)

    def _bundle(self, spec: RunSpec, files: ContainerFiles, sidecar: Sidecar) -> bytes:
        """The run's contract environment, as a warm container applies it at the handoff."""
        env = algorithm_environment(self._inside(spec, files, sidecar))
        # `run`: which run it serves, for a restarted node (recover) if the rename did not happen
        return json.dumps({"env": env, "run": spec.run_id}).encode()

    def _discard(self, parts: list[Any]) -> None:
        """Remove containers in the background (inline once the node is closing)."""
        try:
            self._removals.submit(remove, parts)
        except RuntimeError:  # shut down: close() is removing everything anyway
            remove(parts)

    def _wait_warm(
        self, container: Any, sidecar: Sidecar, ended: threading.Event, spec: RunSpec
    ) -> tuple[bool, int | None]:
        """Wait for a warm run to end: (timed out, its exit code when it reported a clean exit).

        The engine can take a while to notice an exit (Podman: 0.1-0.2 s). A spare's interpreter
        writes its exit code into the run volume just before it exits; once its streams have
        closed and that code is 0, the run is over and no time is lost waiting for the engine.
        Anything else (a kill, a crash, the timeout) takes the engine's word, as a cold run does.
        """
        box: dict[str, bool] = {}

        def engine() -> None:
            try:
                box["timed_out"] = self._wait(container, spec.limits.timeout_s)
            finally:
                ended.set()

        waiter = threading.Thread(target=engine, daemon=True)
        waiter.start()
        ended.wait()
        if "timed_out" not in box:  # the streams closed first
            with self._lock:
                killed = spec.run_id in self._killed
            if not killed and sidecar.volume.read_small(sidecar.container, EXITED) == b"0":
                return False, 0
        waiter.join()
        return box.get("timed_out", False), None

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
        reported: int | None = None,
    ) -> RunOutcome:
        if reported is None:
            container.reload()
            state = container.attrs.get("State", {})
        else:  # a warm run that reported its clean exit (see _wait_warm)
            state = {"ExitCode": reported}
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
