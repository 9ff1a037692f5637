"""The node daemon: log in, listen over socket.io, execute open runs in a bounded pool, report back."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vantage6nb.common.errors import (
    Conflict,
    CryptoError,
    NotFound,
    PayloadTooLarge,
    ServerUnavailable,
    V6Error,
)
from vantage6nb.common.schemas import RunStatus

from .config import NodeConfig
from .datasources import DataSourceError, requested_labels, resolve_databases
from .outbox import Outbox
from .payloads import PayloadCodec, PlainJsonCodec, select_codec
from .policy import ImagePolicy
from .proxy import AlgorithmProxy, RunContext
from .runtimes import make_runtime
from .runtimes.base import RunOutcome, RunSpec, Runtime, RuntimeRefusal
from .server_client import ServerClient
from .socket_link import SocketLink

__all__ = ["NodeDaemon"]

log = logging.getLogger(__name__)

_RESTART_NOTE = "the node restarted while this run was in progress; it was run again"
_FINISHED_KEPT = 100_000


def _fields(exc: V6Error) -> str:
    """What the server said was wrong: the fields it named, else its message."""
    if exc.errors:
        return "; ".join(f"{k}: {v}" for k, v in exc.errors.items())[:300]
    return exc.msg[:300]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class NodeDaemon:
    """One data-station node.

    Examples
    --------
    >>> from node_app.config import load_config
    >>> node = NodeDaemon(load_config("node.yaml"))  # doctest: +SKIP
    >>> node.start(); node.wait()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        runtime: Runtime | None = None,
        codec: PayloadCodec | None = None,
        replace_key: bool = False,
    ) -> None:
        self.config = config
        self.replace_key = replace_key  # `v6nb node start --replace-key`: an explicit, logged act
        self._codec_given = codec is not None
        self.stopping = threading.Event()
        self.client = ServerClient(config.server_url, config.api_key, stop=self.stopping)
        self.codec: PayloadCodec = codec or PlainJsonCodec()
        self.runtime = runtime or make_runtime(config)
        self.policy = ImagePolicy(config.allowed_images, config.image_digests)
        self.proxy = AlgorithmProxy(self.client, port=config.proxy_port, codec=self.codec)
        self.proxy.scratch = config.data_dir / "runs"  # large subtask results: on the node's disk
        self.proxy.on_subtask_created = self._release_slot
        self.workroot = config.data_dir / "runs"
        self.outbox = Outbox(config.data_dir / "outbox")
        # `max_parallel_runs` execution slots; a run that creates subtasks gives its slot back
        # (it now waits on other runs, maybe on this node), so central algorithms cannot starve
        # their own partials. The pool is larger than the slots so waiting runs don't block it.
        self._slots = threading.Semaphore(config.max_parallel_runs)
        self._holding: set[int] = set()
        self.pool = ThreadPoolExecutor(
            max_workers=max(8, 4 * config.max_parallel_runs), thread_name_prefix="v6nb-run"
        )
        # status updates sent while an algorithm starts (one at a time per run, so a few threads)
        self.status_pool = ThreadPoolExecutor(
            max_workers=min(4, config.max_parallel_runs), thread_name_prefix="v6nb-status"
        )
        self.link = SocketLink(self)
        self.node: dict[str, Any] = {}
        self._active: set[int] = set()
        self._cancelled: set[int] = set()
        self._finished: dict[int, None] = {}  # runs this life ended, oldest first
        self._lock = threading.Lock()
        self._sync_wanted = threading.Event()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self.proxy_socket: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Log in (waiting for the server if needed), start the proxy and the background loops."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.workroot.mkdir(parents=True, exist_ok=True)
        self.node = self.client.until_ok(self.client.login, "logging in")
        log.info(
            "node '%s' logged in as node %s of organization %s",
            self.config.name,
            self.node.get("id"),
            self.node.get("organization_id"),
        )
        if not self._codec_given:  # encryption: key checks at start (docs/security.md)
            self.codec = select_codec(
                self.config, self.client, self.node, replace_key=self.replace_key
            )
            self.proxy.codec = self.codec
        for leftover in self.runtime.cleanup():
            log.info("cleaned up %s", leftover)
        self.proxy.start()
        if self.runtime.name == "docker":
            sock = self.config.data_dir / "proxy.sock"
            if len(str(sock)) > 100:  # unix socket paths are limited to ~108 bytes
                sock = Path(tempfile.mkdtemp(prefix="v6nb-")) / "proxy.sock"
            self.proxy_socket = self.proxy.serve_unix(sock)
        self._spawn(self._flush_outbox_loop, "v6nb-outbox")
        self._spawn(self._sync_loop, "v6nb-sync")
        self.link.start()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` is called; True when stopped."""
        return self.stopping.wait(timeout)

    def stop(self) -> None:
        """Stop taking runs, kill running algorithms, close connections. Pending uploads stay on disk."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        log.info("node '%s' stopping", self.config.name)
        self.stopping.set()
        self._sync_wanted.set()
        self.runtime.close()  # first: a shutdown interrupts runs rather than waiting for them
        self.link.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.status_pool.shutdown(wait=True)
        self.proxy.stop()

    # -- finding work ------------------------------------------------------------------------------
    def request_sync(self) -> None:
        """Ask the sync loop to fetch open runs now (socket events and reconnects call this)."""
        self._sync_wanted.set()

    def _sync_loop(self) -> None:
        self._sync_wanted.set()  # once at start: picks up runs left from a previous life
        while not self.stopping.is_set():
            self._sync_wanted.wait(self.config.sync_interval_s)
            self._sync_wanted.clear()
            if self.stopping.is_set():
                return
            try:
                self.sync()
            except ServerUnavailable as exc:
                log.warning("sync skipped: %s", exc)
            except V6Error as exc:
                log.error("sync failed: %s", exc)
            except Exception:
                log.exception("sync failed unexpectedly")

    def sync(self) -> int:
        """Start every open run of this node that is not running yet; returns how many started."""
        runs = self.client.paged(
            "/run", {"node_id": self.node["id"], "status": "open", "include": "input,task"}
        )
        return self.start_runs(runs)

    def start_runs(self, runs: list[dict[str, Any]]) -> int:
        """Start the given open runs (each with its ``task``) unless already running here.

        The sync passes what the server lists; a ``new_task`` event passes the runs it carries,
        which saves the listing on the way to starting a new run.
        """
        started = 0
        for run in runs:
            rid = int(run["id"])
            with self._lock:
                # _finished: a listing taken before this life's final update went out still
                # shows the run open; it is never run twice in one life (docs/security.md)
                if (
                    rid in self._active
                    or rid in self._finished
                    or self.outbox.has(rid)
                    or self.stopping.is_set()
                ):
                    continue
                self._active.add(rid)
            restarted = run.get("status") in (RunStatus.INITIALIZING.value, RunStatus.ACTIVE.value)
            if restarted:
                log.warning(
                    "run %s was %s in a previous life of this node: running it again",
                    rid,
                    run["status"],
                )
            self.pool.submit(self._execute_safely, run, restarted)
            started += 1
        return started

    def kill_runs(self, run_ids: list[int]) -> None:
        """Kill the given runs if they are queued or running here."""
        for rid in run_ids:
            with self._lock:
                if rid not in self._active:
                    continue
                self._cancelled.add(rid)
            if self.runtime.kill(rid):
                log.info("run %s killed on request", rid)

    # -- executing one run -------------------------------------------------------------------------
    def _acquire_slot(self, rid: int) -> bool:
        """Wait for an execution slot; False when the node stops or the run is killed meanwhile."""
        while not self._slots.acquire(timeout=0.5):
            if self.stopping.is_set() or self._killed_on_request(rid):
                return False
        with self._lock:
            self._holding.add(rid)
        return True

    def _release_slot(self, rid: int) -> None:
        with self._lock:
            if rid not in self._holding:
                return
            self._holding.discard(rid)
        self._slots.release()

    def _execute_safely(self, run: dict[str, Any], restarted: bool) -> None:
        rid = int(run["id"])
        try:
            if not self._acquire_slot(rid):
                if self._killed_on_request(rid):
                    self._finish(rid, RunOutcome(RunStatus.KILLED, "killed before it started"))
                return
            self._execute(run, restarted)
        except Exception:
            log.exception("run %s: unexpected node error", rid)
            self._finish(
                rid,
                RunOutcome(
                    RunStatus.FAILED, "the node failed while handling this run; see the node log"
                ),
            )
        finally:
            self._release_slot(rid)
            with self._lock:
                self._remember_finished(rid)
                self._active.discard(rid)
                self._cancelled.discard(rid)
            shutil.rmtree(self.workroot / f"run-{rid}", ignore_errors=True)

    def _remember_finished(self, rid: int) -> None:
        """Record (under the lock) that this life ran ``rid`` to its end; bounded memory."""
        self._finished[rid] = None
        if len(self._finished) > _FINISHED_KEPT:
            del self._finished[next(iter(self._finished))]

    def _killed_on_request(self, rid: int) -> bool:
        with self._lock:
            return rid in self._cancelled

    def _patch(self, rid: int, body: dict[str, Any]) -> dict[str, Any] | None:
        """An intermediate status update: the server's answer ({} when the server is away for
        now); None when the run is already final on the server."""
        try:
            answer = self.client.request("PATCH", f"/run/{rid}", json=body, retries=5)
            return answer if isinstance(answer, dict) else {}
        except (Conflict, NotFound) as exc:
            log.info("run %s: not updating (%s)", rid, exc.msg)
            return None
        except ServerUnavailable as exc:
            log.warning("run %s: status update postponed: %s", rid, exc)
            return {}

    def _refuse(
        self, rid: int, outcome: RunOutcome, moving: Future[dict[str, Any] | None] | None
    ) -> None:
        """End a run that cannot start, after its move to initializing (if one is under way)."""
        if moving is not None and moving.result() is None:
            return  # already final on the server
        self._finish(rid, outcome)

    def _report_active(self, rid: int, body: dict[str, Any]) -> Future[bool]:
        """PATCH ``body`` (the move to active) in the background; the future says whether the run
        is still open. When it is not (killed meanwhile), the algorithm is stopped."""

        def report() -> bool:
            if self._patch(rid, body) is not None:
                return True
            with self._lock:
                self._cancelled.add(rid)
            self.runtime.kill(rid)
            return False

        return self.status_pool.submit(report)

    def _execute(self, run: dict[str, Any], restarted: bool) -> None:
        rid = int(run["id"])
        note = _RESTART_NOTE if restarted else ""
        # The move to initializing brings the container token (one request less per run) and is
        # sent while the run is prepared here; a run left active by a previous life is not moved
        # back (it turns active again below).
        token: str | None = None
        moving = None
        if not restarted:
            moving = self.status_pool.submit(
                self._patch, rid, {"status": RunStatus.INITIALIZING.value, "container_token": True}
            )
        task = run.get("task") or self.client.until_ok(  # sync asks for it with the run
            lambda: self.client.request("GET", f"/task/{run['task_id']}"),
            f"run {rid}: fetching task",
        )
        image = str(task.get("image") or "")
        decision = self.policy.check(image)
        if not decision.allowed:
            log.warning("run %s refused: %s", rid, decision.reason)
            return self._refuse(rid, RunOutcome(RunStatus.NOT_ALLOWED, decision.reason), moving)
        try:
            mounts = resolve_databases(
                requested_labels(task.get("databases")), self.config.databases
            )
        except DataSourceError as exc:
            log.warning("run %s failed: %s", rid, exc)
            return self._refuse(rid, RunOutcome(RunStatus.FAILED, str(exc)), moving)
        workdir = self.workroot / f"run-{rid}"
        shutil.rmtree(workdir, ignore_errors=True)
        (workdir / "tmp").mkdir(parents=True)
        binding = {
            "task_id": task["id"],
            "task_uid": task.get("uid"),
            "run_id": rid,
            "collaboration_id": task.get("collaboration_id"),
            "init_org_id": task.get("init_org_id"),
            "org_id": run.get("organization_id"),
        }
        try:
            data = self.codec.decode_input(run.get("input"), binding)
        except CryptoError as exc:
            return self._refuse(
                rid, RunOutcome(RunStatus.FAILED, f"could not read the run's input: {exc}"), moving
            )
        spec = RunSpec(
            run_id=rid,
            task_id=int(task["id"]),
            image=image,
            workdir=workdir,
            input_file=workdir / "input.json",
            output_file=workdir / "output.json",
            token_file=workdir / "token",
            tmp_dir=workdir / "tmp",
            databases=mounts,
            proxy_host="http://127.0.0.1",
            proxy_port=self.proxy.port,
            proxy_socket=self.proxy_socket,
            limits=self.config.limits,
            digest=decision.digest,
        )
        spec.input_file.write_bytes(data)
        try:
            self.runtime.prepare(spec)
        except RuntimeRefusal as refusal:
            return self._refuse(rid, RunOutcome(refusal.status, refusal.reason), moving)
        if moving is not None:
            answer = moving.result()
            if answer is None:  # killed or deleted meanwhile: not running it
                return
            token = answer.get("container_token")
        try:
            if token is None:  # a run from a previous life, or the PATCH went unanswered
                token = self.client.request(
                    "POST", "/token/container", json={"run_id": rid}, retries=None
                )["container_token"]
        except (Conflict, NotFound) as exc:
            log.info("run %s: no longer open (%s); not running it", rid, exc.msg)
            return
        assert token is not None
        spec.token_file.write_text(token, encoding="utf-8")
        spec.token_file.chmod(0o600)
        if self._killed_on_request(rid):
            return self._finish(rid, RunOutcome(RunStatus.KILLED, "killed before it started"))
        if self.stopping.is_set():  # shutting down: the next start picks the run up
            return
        # reported while the algorithm starts (not before): the final update waits for it
        activated = self._report_active(
            rid, {"status": RunStatus.ACTIVE.value, "started_at": _now(), "reason": note}
        )
        ctx = RunContext(
            run_id=rid,
            task_id=int(task["id"]),
            collaboration_id=int(task["collaboration_id"]),
            organization_id=int(run.get("organization_id") or self.node.get("organization_id")),
            image=image,
            databases=list(task.get("databases") or []),
            node_id=self.node.get("id"),
        )
        self.proxy.register(token, ctx)
        try:
            log.info(
                "run %s (task %s, %s) started on the %s runtime",
                rid,
                task["id"],
                image,
                self.runtime.name,
            )
            outcome = self.runtime.run(spec)
        finally:
            self.proxy.unregister(token)
            active = activated.result()
        if not active:  # killed or deleted on the server meanwhile: its word stands
            return
        if (
            outcome.status == RunStatus.KILLED
            and self.stopping.is_set()
            and not self._killed_on_request(rid)
        ):
            # the node is shutting down: leave the run open; the next start runs it again
            log.warning("run %s interrupted by node shutdown; it runs again at the next start", rid)
            return
        if outcome.status == RunStatus.COMPLETED:
            try:
                outcome.reason = note
                if self._is_large(spec.output_file):
                    return self._finish(
                        rid, outcome, result_file=self._stage_result(spec.output_file, binding)
                    )
                result = self.codec.encode_result(spec.output_file.read_bytes(), binding)
            except (OSError, CryptoError, UnicodeDecodeError) as exc:
                return self._finish(
                    rid,
                    RunOutcome(
                        RunStatus.FAILED, f"could not return the output: {exc}", outcome.log
                    ),
                )
            return self._finish(rid, outcome, result=result)
        if note:
            outcome.reason = f"{outcome.reason} ({note})"
        self._finish(rid, outcome)

    # -- reporting back ----------------------------------------------------------------------------
    def _is_large(self, output: Path) -> bool:
        """Whether an output goes by the binary path (the codec must support files)."""
        return output.stat().st_size > self.config.binary_result_kb * 1024 and hasattr(
            self.codec, "encode_result_file"
        )

    def _stage_result(self, output: Path, binding: dict[str, Any]) -> str:
        """Encode (seal) ``output`` into the outbox, fsynced, before any upload; returns its name."""
        final = self.outbox.result_path(int(binding["run_id"]))
        partial = final.with_name(final.name + ".partial")
        try:
            self.codec.encode_result_file(output, partial, binding)  # type: ignore[attr-defined]
            with partial.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return final.name

    def _finish(
        self,
        rid: int,
        outcome: RunOutcome,
        *,
        result: str | None = None,
        result_file: str | None = None,
    ) -> None:
        """Persist the final update, then upload it (retrying until the server takes it).

        ``result_file`` names a staged large result in the outbox: it is PUT as bytes first.
        """
        body: dict[str, Any] = {
            "status": outcome.status.value,
            "reason": outcome.reason,
            "log": outcome.log,
            "finished_at": _now(),
        }
        if result is not None:
            body["result"] = result
        if result_file is not None:
            body["result_file"] = result_file  # local only: never sent in the PATCH
        log.info(
            "run %s ended %s%s",
            rid,
            outcome.status.value,
            f": {outcome.reason}" if outcome.reason else "",
        )
        self.outbox.put(rid, body)
        self._upload(rid, body)

    def _upload(self, rid: int, body: dict[str, Any]) -> bool:
        body = dict(body)
        result_file = body.pop("result_file", None)
        try:
            if result_file:
                self._put_result(rid, body, self.outbox.folder / str(result_file))
            self.client.request("PATCH", f"/run/{rid}", json=body, retries=None)
        except (Conflict, NotFound) as exc:  # killed or deleted meanwhile: the server's word stands
            log.info("run %s: final update not applied (%s)", rid, exc.msg)
        except ServerUnavailable:  # only when stopping: stays in the outbox for the next start
            return False
        except V6Error as exc:
            log.error("run %s: the server rejected the final update: %s", rid, exc)
            self._report_refused(rid, body, exc)
        self.outbox.done(rid)
        return True

    def _report_refused(self, rid: int, body: dict[str, Any], exc: V6Error) -> None:
        """End a run whose final update the server refused for its content: failed, saying why.

        Without this the run stays active on the server and nothing tells the researcher; it is
        never run again in this life either way (``_finished``).
        """
        failed = {
            "status": RunStatus.FAILED.value,
            "reason": f"the server refused this run's final update ({_fields(exc)}): "
            f"its {'result' if 'result' in body else 'report'} was not stored",
            "finished_at": body.get("finished_at") or _now(),
        }
        try:
            self.client.request("PATCH", f"/run/{rid}", json=failed, retries=None)
            log.info("run %s: reported as failed: %s", rid, failed["reason"])
        except (Conflict, NotFound, ServerUnavailable) as again:
            log.info("run %s: failure not reported (%s)", rid, again)
        except V6Error as again:
            log.error("run %s: the server refused the failure report too: %s", rid, again)

    def _put_result(self, rid: int, body: dict[str, Any], path: Path) -> None:
        """PUT a staged result; when the server refuses it, the final update says why instead."""
        try:
            self.client.put_file(f"/run/{rid}/result", path, retries=None)
            return
        except (Conflict, NotFound, ServerUnavailable):
            raise
        except PayloadTooLarge as exc:
            why = f"the result ({path.stat().st_size / 2**20:.1f} MiB) is too large: {exc.msg}"
        except V6Error as exc:
            why = f"the server refused the result: {exc.msg}"
        except FileNotFoundError:
            why = "the result kept for upload is missing from the node's outbox"
        log.error("run %s: %s", rid, why)
        body.update(status=RunStatus.FAILED.value, reason=why)

    def _flush_outbox_loop(self) -> None:
        """Re-send what a previous life finished but could not upload."""
        for rid, body in self.outbox.pending().items():
            with self._lock:
                if rid in self._active:
                    continue
                self._active.add(rid)
            try:
                log.info("run %s: uploading a result kept from before", rid)
                self._upload(rid, body)
            finally:
                with self._lock:
                    self._active.discard(rid)
