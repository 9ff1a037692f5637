"""One run on this node: policy and data checks, input, container token, the algorithm, its outcome."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vantage6nb.common.errors import Conflict, CryptoError, NotFound, ServerUnavailable
from vantage6nb.common.schemas import RunStatus

from .audit import AuditLog, digest_bytes
from .config import NodeConfig
from .datasources import DataSourceError, requested_labels, resolve_databases
from .disclosure import DisclosureGate, Screened
from .nodestate import JOURNAL_NAME, NodeState, StartRecord, UnreadableRecord
from .payloads import PayloadCodec, read_run_input
from .policy import ImagePolicy
from .proxy import AlgorithmProxy, RunContext
from .reporting import Reporter, utc_now
from .runtimes.base import RunOutcome, RunSpec, Runtime, RuntimeRefusal
from .runtimes.output import committed_output
from .server_client import UNTIL_STOPPED, ServerClient

__all__ = ["RunExecution"]

log = logging.getLogger(__name__)

_PARSE_LIMIT = 1 << 20  # bytes of input the node parses for the audit log's method
_RESTART_NOTE = "the node restarted while this run was in progress; it was run again"
_RESUMED_NOTE = (
    "the node restarted after this run's algorithm had finished; its output was returned "
    "without running it again"
)
_OUTPUT_NAME = "output.json"  # the node's copy of a run's output, in its work folder

# The server's answer to the move to initializing: None when the run is already final there.
_Moving = Future[dict[str, Any] | None]


@dataclass
class _Prepared:
    """A run ready for its algorithm: the runtime's spec and the binding of its ciphertexts."""

    spec: RunSpec
    binding: dict[str, Any]
    method: str | None = None  # from the opened input, for the audit log
    arguments: str = ""  # digest of the opened input
    screened: Screened | None = None  # the disclosure gate's word before the run


class RunExecution:
    """Carries one open run to its final update (through :class:`~node_app.reporting.Reporter`).

    ``node`` (the node's record) and ``proxy_socket`` are set by the daemon once it is logged in
    and its proxy listens.

    Parameters
    ----------
    config
        The node's settings (databases, limits).
    client, runtime, policy, proxy
        The node's server client, algorithm runtime, image policy and algorithm proxy.
    state
        The node's runs: asked whether a run was killed, told when the server says it is final.
    reporter
        Ends runs on the server.
    codec
        Decodes (opens) run inputs.
    stopping
        Set when the node shuts down.
    audit
        The node's audit log: each image decision and each start is recorded.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        client: ServerClient,
        runtime: Runtime,
        policy: ImagePolicy,
        proxy: AlgorithmProxy,
        state: NodeState,
        reporter: Reporter,
        codec: PayloadCodec,
        stopping: threading.Event,
        audit: AuditLog | None = None,
    ) -> None:
        self.audit = audit
        self.config = config
        self.client = client
        self.runtime = runtime
        self.policy = policy
        self.proxy = proxy
        self.state = state
        self.reporter = reporter
        self.codec = codec
        self.stopping = stopping
        self.workroot = config.data_dir / "runs"
        self.gate = DisclosureGate(
            config.disclosure,
            functions=self.runtime.functions,
            parent_image=self._parent_image,
            audit=audit,
        )
        self.node: dict[str, Any] = {}
        self.proxy_socket: Path | None = None
        # what the runtime said, at this node's start, of runs a previous life had started
        self._recovered: dict[int, RuntimeRefusal] = {}
        # status updates sent while an algorithm starts (one at a time per run, so a few threads)
        self.status_pool = ThreadPoolExecutor(
            max_workers=min(4, config.max_parallel_runs), thread_name_prefix="v6nb-status"
        )

    def shutdown(self) -> None:
        """Wait for the status updates under way."""
        self.status_pool.shutdown(wait=True)

    def clear(self, rid: int) -> None:
        """Remove a run's work folder."""
        shutil.rmtree(self.workroot / f"run-{rid}", ignore_errors=True)

    def recover_previous(self) -> None:
        """Let the runtime adopt what a previous life left of each run it had started (before the
        runtime's clean-up removes it): a complete output lands in the run's work folder, where
        :meth:`execute` finds it; a run the runtime saw end without one is kept to be ended so."""
        for journal in self.workroot.glob(f"run-*/{JOURNAL_NAME}"):
            suffix = journal.parent.name[4:]
            if not suffix.isdigit() or self.state.previous_start(int(suffix)) is None:
                continue
            rid = int(suffix)
            dest = journal.parent / _OUTPUT_NAME
            if dest.exists():  # the node had taken the output already
                continue
            _drop_partial(dest)
            try:
                if self.runtime.recover(rid, dest, limit=self.config.limits.output_bytes):
                    log.info("run %s: adopted the output its algorithm left", rid)
            except RuntimeRefusal as refusal:
                log.warning("run %s: %s", rid, refusal.reason)
                self._recovered[rid] = refusal
            except Exception as exc:  # the engine failed us: say so, never run it blindly again
                log.exception("run %s: could not recover what its algorithm left", rid)
                self._recovered[rid] = RuntimeRefusal(
                    RunStatus.FAILED, f"the node could not read what its algorithm left: {exc}"
                )

    # -- the pipeline ------------------------------------------------------------------------------
    def execute(self, run: dict[str, Any], restarted: bool) -> None:
        """Run one open run (with its ``task`` when the caller has it) and report how it ended.

        ``restarted``: the server has it initializing or active, so a previous life of this node
        had started it. A run whose algorithm a previous life started (its start record) and left
        with a complete output is finished with that output; any other restarted run is run
        again, saying so (docs/operations.md, "Exactly once").
        """
        rid = int(run["id"])
        previous = self.state.previous_start(rid)
        task: dict[str, Any] | None = None
        if previous is not None or restarted:
            task = self._task(run)
            if self._resume(run, task, previous):
                return
            restarted = True
            log.warning(
                "run %s was %s in a previous life of this node: running it again",
                rid,
                run.get("status") or "started",
            )
        note = _RESTART_NOTE if restarted else ""
        # The move to initializing brings the container token (one request less per run) and is
        # sent while the run is prepared here; a run left active by a previous life is not moved
        # back (it turns active again below).
        moving = None
        if not restarted:
            moving = self.status_pool.submit(
                self._patch, rid, {"status": RunStatus.INITIALIZING.value, "container_token": True}
            )
        task = task or self._task(run)
        prepared = self._prepare(run, task, moving)
        if prepared is None:
            return
        token = self._container_token(rid, moving)
        if token is None:
            return
        if self.audit is not None:
            self.audit.record(
                "run_started",
                run_id=rid,
                task_id=task.get("id"),
                parent_id=task.get("parent_id"),
                init_org_id=task.get("init_org_id"),
                init_user_id=task.get("init_user_id"),
                image=prepared.spec.image,
                digest=prepared.spec.digest,
                method=prepared.method,
                arguments=prepared.arguments,
                databases=[d.label for d in prepared.spec.databases],
                runtime=self.runtime.name,
                restarted=restarted,
            )
        record = StartRecord(
            run_id=rid,
            task_id=int(task["id"]),
            life=self.state.life,
            image=prepared.spec.image,
            digest=prepared.spec.digest,
            method=prepared.method,
            arguments=prepared.arguments,
            entry_point=bool(prepared.screened and prepared.screened.entry_point),
            role=prepared.screened.role if prepared.screened else None,
            runtime=self.runtime.name,
        )
        outcome = self._run_algorithm(run, task, prepared.spec, token, note, record)
        if outcome is not None:
            self._report(rid, outcome, prepared, note)

    def _task(self, run: dict[str, Any]) -> dict[str, Any]:
        """The run's task: the one it came with (sync and events carry it), else the server's."""
        task = run.get("task")
        if task:
            return dict(task)
        return dict(
            self.client.until_ok(
                lambda: self.client.request("GET", f"/task/{run['task_id']}"),
                f"run {run['id']}: fetching task",
            )
        )

    def _resume(
        self,
        run: dict[str, Any],
        task: dict[str, Any],
        previous: StartRecord | UnreadableRecord | None,
    ) -> bool:
        """Finish a run whose algorithm a previous life of this node left with a complete output,
        through the same post-run path as any run; True when the run needs nothing more.

        False when there is no complete output: the algorithm was interrupted (or never started)
        and runs again. An output the node cannot return (its start record is unreadable, or the
        output is not a file the node reads) ends the run failed, saying why; it is never run again.
        """
        rid = int(run["id"])
        workdir = self.workroot / f"run-{rid}"
        try:
            recovered = self._recovered.pop(rid, None)
            if recovered is not None:  # the runtime saw its algorithm end without an output
                raise recovered
            _drop_partial(workdir / _OUTPUT_NAME)
            output = committed_output(workdir, _OUTPUT_NAME, limit=self.config.limits.output_bytes)
        except RuntimeRefusal as refusal:
            log.warning("run %s: the output a previous life left is refused: %s", rid, refusal)
            self.reporter.finish(
                rid,
                RunOutcome(
                    refusal.status,
                    f"{refusal.reason} (found after a node restart; the run was not run again)",
                ),
            )
            return True
        except OSError as exc:
            return self._cannot_finish(rid, f"its output cannot be read: {exc}")
        if output is None:
            return False  # interrupted before its output was complete: it runs again
        if not isinstance(previous, StartRecord):
            why = previous.why if previous is not None else "the node has no record of its start"
            return self._cannot_finish(rid, why)
        if previous.task_id != int(task["id"]):
            self.reporter.finish(
                rid,
                RunOutcome(
                    RunStatus.FAILED,
                    f"the node's record of this run names task {previous.task_id}, not "
                    f"{task['id']}; the output it holds was not returned and the run was not "
                    "run again: create the task again",
                ),
            )
            return True
        log.warning(
            "run %s: its algorithm finished in a previous life of this node; returning that "
            "output instead of running it again",
            rid,
        )
        if self.audit is not None:
            self.audit.record(
                "run_resumed", run_id=rid, task_id=previous.task_id, started_by=previous.life
            )
        spec = RunSpec(
            run_id=rid,
            task_id=previous.task_id,
            image=previous.image,
            workdir=workdir,
            input_file=workdir / "input.json",
            output_file=output,
            token_file=workdir / "token",
            tmp_dir=workdir / "tmp",
            databases=[],
            proxy_host="http://127.0.0.1",
            proxy_port=self.proxy.port,
            digest=previous.digest,
        )
        prepared = _Prepared(
            spec,
            _binding(run, task),
            method=previous.method,
            arguments=previous.arguments,
            screened=Screened(entry_point=previous.entry_point, role=previous.role),
        )
        self._report(rid, RunOutcome(RunStatus.COMPLETED), prepared, _RESUMED_NOTE)
        return True

    def _cannot_finish(self, rid: int, why: str) -> bool:
        """End a run a previous life left with an output the node cannot return: failed, why."""
        log.error("run %s: a previous life left an output the node cannot return: %s", rid, why)
        self.reporter.finish(
            rid,
            RunOutcome(
                RunStatus.FAILED,
                "the node restarted after this run's algorithm had written its output, and "
                f"cannot return it ({why}); it was not run again: create the task again",
            ),
        )
        return True

    def _prepare(
        self, run: dict[str, Any], task: dict[str, Any], moving: _Moving | None
    ) -> _Prepared | None:
        """Check the image and the databases, open the input, prepare the runtime.

        Returns None when the run cannot start (it is ended, unless the server had it final).
        """
        rid = int(run["id"])
        image = str(task.get("image") or "")
        decision = self.policy.check(image)
        if self.audit is not None:
            self.audit.record(
                "decision",
                run_id=rid,
                task_id=task.get("id"),
                rule="allowed_images",
                image=image,
                allowed=decision.allowed,
                digest=decision.digest,
                reason=decision.reason,
            )
        if not decision.allowed:
            log.warning("run %s refused: %s", rid, decision.reason)
            self._refuse(rid, RunOutcome(RunStatus.NOT_ALLOWED, decision.reason), moving)
            return None
        try:
            mounts = resolve_databases(
                requested_labels(task.get("databases")), self.config.databases
            )
        except DataSourceError as exc:
            log.warning("run %s failed: %s", rid, exc)
            self._refuse(rid, RunOutcome(RunStatus.FAILED, str(exc)), moving)
            return None
        workdir = self.workroot / f"run-{rid}"
        shutil.rmtree(workdir, ignore_errors=True)
        (workdir / "tmp").mkdir(parents=True)
        binding = _binding(run, task)
        try:
            data = read_run_input(self.client, self.codec, run, binding, workdir / "input.json")
        except CryptoError as exc:
            self._refuse(
                rid, RunOutcome(RunStatus.FAILED, f"could not read the run's input: {exc}"), moving
            )
            return None
        spec = RunSpec(
            run_id=rid,
            task_id=int(task["id"]),
            image=image,
            workdir=workdir,
            input_file=workdir / "input.json",
            output_file=workdir / _OUTPUT_NAME,
            token_file=workdir / "token",
            tmp_dir=workdir / "tmp",
            databases=mounts,
            proxy_host="http://127.0.0.1",
            proxy_port=self.proxy.port,
            proxy_socket=self.proxy_socket,
            limits=self.config.limits,
            digest=decision.digest,
            extra_env=dict(self.config.disclosure.algorithm_env),  # the operator's variables
        )
        method = _method(data, task)
        screened = self.gate.screen(rid, task, method, data, decision.digest)
        if screened.refusal is not None:
            log.warning("run %s refused: %s", rid, screened.refusal.what)
            self._refuse(rid, RunOutcome(RunStatus.REFUSED, screened.refusal.reason()), moving)
            return None
        spec.input_file.write_bytes(data)
        try:
            self.runtime.prepare(spec)
        except RuntimeRefusal as refusal:
            self._refuse(rid, RunOutcome(refusal.status, refusal.reason), moving)
            return None
        return _Prepared(
            spec, binding, method=method, arguments=digest_bytes(data), screened=screened
        )

    def _container_token(self, rid: int, moving: _Moving | None) -> str | None:
        """The run's container token (brought by the move to initializing, else asked for);
        None when the run is no longer open."""
        token: str | None = None
        if moving is not None:
            answer = moving.result()
            if answer is None:  # killed or deleted meanwhile: not running it
                return None
            token = answer.get("container_token")
        try:
            if token is None:  # a run from a previous life, or the PATCH went unanswered
                token = self.client.request(
                    "POST", "/token/container", json={"run_id": rid}, retries=UNTIL_STOPPED
                )["container_token"]
        except (Conflict, NotFound) as exc:
            log.info("run %s: no longer open (%s); not running it", rid, exc.msg)
            return None
        assert token is not None
        return token

    def _run_algorithm(
        self,
        run: dict[str, Any],
        task: dict[str, Any],
        spec: RunSpec,
        token: str,
        note: str,
        record: StartRecord,
    ) -> RunOutcome | None:
        """Start the algorithm and wait for it; None when there is nothing (more) to report."""
        rid = spec.run_id
        spec.token_file.write_text(token, encoding="utf-8")
        spec.token_file.chmod(0o600)
        if self.state.killed_on_request(rid):
            self.reporter.finish(rid, RunOutcome(RunStatus.KILLED, "killed before it started"))
            return None
        if self.stopping.is_set():  # shutting down: the next start picks the run up
            return None
        # reported while the algorithm starts (not before): the final update waits for it
        activated = self._report_active(
            rid, {"status": RunStatus.ACTIVE.value, "started_at": utc_now(), "reason": note}
        )
        ctx = RunContext(
            run_id=rid,
            task_id=int(task["id"]),
            collaboration_id=int(task["collaboration_id"]),
            organization_id=int(run.get("organization_id") or self.node.get("organization_id")),
            image=spec.image,
            databases=list(task.get("databases") or []),
            node_id=self.node.get("id"),
        )
        self.proxy.register(token, ctx)
        try:
            log.info(
                "run %s (task %s, %s) started on the %s runtime",
                rid,
                task["id"],
                spec.image,
                self.runtime.name,
            )
            # from here on a complete output is this run's result: a later life returns it
            # instead of running the algorithm again (docs/operations.md, "Exactly once")
            self.state.record_start(record)
            outcome = self.runtime.run(spec)
        finally:
            self.proxy.unregister(token)
            active = activated.result()
        if not active:  # killed or deleted on the server meanwhile: its word stands
            return None
        return outcome

    def _report(self, rid: int, outcome: RunOutcome, prepared: _Prepared, note: str) -> None:
        """End the run as its algorithm ended, unless a node shutdown interrupted it."""
        if (
            outcome.status == RunStatus.KILLED
            and self.stopping.is_set()
            and not self.state.killed_on_request(rid)
        ):
            # the node is shutting down: leave the run open; the next start runs it again
            log.warning("run %s interrupted by node shutdown; it runs again at the next start", rid)
            return
        if outcome.status == RunStatus.COMPLETED:
            outcome.reason = note
            spec = prepared.spec
            try:
                released, refusal = self.gate.release(
                    rid, spec.image, spec.output_file, prepared.screened or Screened(), _asked(spec)
                )
            except OSError as exc:
                outcome = RunOutcome(
                    RunStatus.FAILED, f"could not read the output: {exc}", outcome.log
                )
                return self.reporter.finish(rid, outcome)
            if refusal is not None:  # the log could hold what was refused: it stays here
                return self.reporter.finish(rid, RunOutcome(RunStatus.REFUSED, refusal.reason()))
            assert released is not None
            self.reporter.return_output(rid, outcome, released, prepared.binding)
            return
        if note:
            outcome.reason = f"{outcome.reason} ({note})"
        self.reporter.finish(rid, outcome)

    # -- status updates on the way ---------------------------------------------------------------
    def _parent_image(self, task_id: int) -> str | None:
        """The image of task ``task_id`` (a run's parent), None when the server has no such task."""
        try:
            task = self.client.until_ok(
                lambda: self.client.request("GET", f"/task/{task_id}"),
                f"fetching parent task {task_id}",
            )
        except NotFound:
            return None
        return str(task.get("image") or "") or None

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

    def _refuse(self, rid: int, outcome: RunOutcome, moving: _Moving | None) -> None:
        """End a run that cannot start, after its move to initializing (if one is under way)."""
        if moving is not None and moving.result() is None:
            return  # already final on the server
        self.reporter.finish(rid, outcome)

    def _report_active(self, rid: int, body: dict[str, Any]) -> Future[bool]:
        """PATCH ``body`` (the move to active) in the background; the future says whether the run
        is still open. When it is not (killed meanwhile), the algorithm is stopped."""

        def report() -> bool:
            if self._patch(rid, body) is not None:
                return True
            self.state.mark_cancelled(rid)
            self.runtime.kill(rid)
            return False

        return self.status_pool.submit(report)


def _drop_partial(dest: Path) -> None:
    """Remove the half-written copy a node killed while copying an output out left next to
    ``dest`` (the copy is made afresh, and refuses to write over an existing one)."""
    dest.with_name(dest.name + ".partial").unlink(missing_ok=True)


def _binding(run: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """What a run's ciphertexts are bound to (its task, run and organizations)."""
    return {
        "task_id": task["id"],
        "task_uid": task.get("uid"),
        "run_id": int(run["id"]),
        "collaboration_id": task.get("collaboration_id"),
        "init_org_id": task.get("init_org_id"),
        "org_id": run.get("organization_id"),
    }


def _asked(spec: RunSpec) -> bytes:
    """The run's input, for the names a refusal may show (none from an input over the limit)."""
    try:
        if spec.input_file.stat().st_size <= _PARSE_LIMIT:
            return spec.input_file.read_bytes()
    except OSError:
        pass
    return b""


def _method(data: bytes, task: dict[str, Any]) -> str | None:
    """The method an input asks for (None when it is not the contract's JSON object).

    An input over ``_PARSE_LIMIT`` is not parsed a second time here (the algorithm parses it):
    the task's clear method stands in for it, marked ``(clear)``.
    """
    if len(data) > _PARSE_LIMIT:
        clear = task.get("method")
        return f"{clear} (clear)" if clear else None
    try:
        request = json.loads(data)
    except ValueError:
        return None
    method = request.get("method") if isinstance(request, dict) else None
    return str(method) if method is not None else None
