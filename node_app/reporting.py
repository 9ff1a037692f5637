"""A run's final update: encoded, persisted in the outbox, uploaded; a refused one reported as
failed. And the node's column report: its databases' column names and types, when they change."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
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

from .audit import AuditLog, digest_bytes, digest_file
from .config import DatabaseConfig
from .datasources import column_report, source_signature
from .nodestate import NodeState
from .outbox import Outbox
from .payloads import PayloadCodec
from .runtimes.base import RunOutcome
from .server_client import UNTIL_STOPPED, ServerClient

__all__ = ["ColumnReporter", "Reporter", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> str:
    """The time now, as the server's run timestamps take it (ISO 8601, UTC).

    Examples
    --------
    >>> utc_now().endswith("+00:00")
    True
    """
    return datetime.now(timezone.utc).isoformat()


def _fields(exc: V6Error) -> str:
    """What the server said was wrong: the fields it named, else its message."""
    if exc.errors:
        return "; ".join(f"{k}: {v}" for k, v in exc.errors.items())[:300]
    return exc.msg[:300]


class Reporter:
    """Ends runs on the server: every final update goes to the outbox first, then up.

    Parameters
    ----------
    client
        The node's server client.
    outbox
        Where final updates (and staged large results) wait until the server has taken them.
    codec
        Encodes (seals) results for the initiating organization.
    state
        The node's runs, so a kept upload does not race a run of the same id.
    binary_result_kb
        Outputs above this size go up as a file (when the codec can seal files).
    audit
        The node's audit log: every final update is recorded (with a hash of the released output).
    """

    def __init__(
        self,
        client: ServerClient,
        outbox: Outbox,
        codec: PayloadCodec,
        state: NodeState,
        *,
        binary_result_kb: int,
        audit: AuditLog | None = None,
    ) -> None:
        self.audit = audit
        self.client = client
        self.outbox = outbox
        self.codec = codec
        self.state = state
        self.binary_result_kb = binary_result_kb

    # -- a completed run's output ------------------------------------------------------------------
    def return_output(
        self, rid: int, outcome: RunOutcome, output: Path, binding: dict[str, Any]
    ) -> None:
        """Encode a completed run's ``output`` for ``binding`` and end the run with it.

        When the output cannot be returned (unreadable, not encodable), the run fails saying why.
        """
        try:
            if self._is_large(output):
                released = digest_file(output)  # one more pass, over a file in the page cache
                staged = self._stage_result(output, binding)
                return self.finish(rid, outcome, result_file=staged, released=released)
            data = output.read_bytes()
            released = digest_bytes(data)
            result = self.codec.encode_result(data, binding)
        except (OSError, CryptoError, UnicodeDecodeError) as exc:
            return self.finish(
                rid,
                RunOutcome(RunStatus.FAILED, f"could not return the output: {exc}", outcome.log),
            )
        self.finish(rid, outcome, result=result, released=released)

    def _is_large(self, output: Path) -> bool:
        """Whether an output goes by the binary path (streamed, never held whole in memory)."""
        return output.stat().st_size > self.binary_result_kb * 1024

    def _stage_result(self, output: Path, binding: dict[str, Any]) -> str:
        """Encode (seal) ``output`` into the outbox, fsynced, before any upload; returns its name."""
        final = self.outbox.result_path(int(binding["run_id"]))
        partial = final.with_name(final.name + ".partial")
        try:
            self.codec.encode_result_file(output, partial, binding)
            with partial.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        return final.name

    # -- final updates -----------------------------------------------------------------------------
    def finish(
        self,
        rid: int,
        outcome: RunOutcome,
        *,
        result: str | None = None,
        result_file: str | None = None,
        released: str | None = None,
    ) -> None:
        """Persist the final update, then upload it (retrying until the server takes it).

        ``result_file`` names a staged large result in the outbox: it is PUT as bytes first.
        ``released`` is the digest of the output being released, for the audit log.
        """
        body: dict[str, Any] = {
            "status": outcome.status.value,
            "reason": outcome.reason,
            "log": outcome.log,
            "finished_at": utc_now(),
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
        if self.audit is not None:
            self.audit.record(
                "run_ended",
                run_id=rid,
                status=outcome.status.value,
                reason=outcome.reason,
                released=released,
            )
        self.outbox.put(rid, body)
        self.upload(rid, body)

    def upload(self, rid: int, body: dict[str, Any]) -> bool:
        """Send a persisted final update; False when the node stops first (it stays in the outbox)."""
        body = dict(body)
        result_file = body.pop("result_file", None)
        try:
            if result_file:
                self._put_result(rid, body, self.outbox.folder / str(result_file))
            self.client.request("PATCH", f"/run/{rid}", json=body, retries=UNTIL_STOPPED)
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
        never run again in this life either way (:class:`~node_app.nodestate.NodeState`).
        """
        failed = {
            "status": RunStatus.FAILED.value,
            "reason": f"the server refused this run's final update ({_fields(exc)}): "
            f"its {'result' if 'result' in body else 'report'} was not stored",
            "finished_at": body.get("finished_at") or utc_now(),
        }
        try:
            self.client.request("PATCH", f"/run/{rid}", json=failed, retries=UNTIL_STOPPED)
            log.info("run %s: reported as failed: %s", rid, failed["reason"])
        except (Conflict, NotFound, ServerUnavailable) as again:
            log.info("run %s: failure not reported (%s)", rid, again)
        except V6Error as again:
            log.error("run %s: the server refused the failure report too: %s", rid, again)

    def _put_result(self, rid: int, body: dict[str, Any], path: Path) -> None:
        """PUT a staged result; when the server refuses it, the final update says why instead."""
        try:
            self.client.put_file(f"/run/{rid}/result", path, retries=UNTIL_STOPPED)
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

    def flush_outbox(self) -> None:
        """Re-send what a previous life finished but could not upload.

        Each such run is then ended in this life (:meth:`NodeState.end`): a listing taken before
        the upload still shows it open, and it must not start again.
        """
        for rid, body in self.outbox.pending().items():
            if not self.state.hold(rid):
                continue
            try:
                log.info("run %s: uploading a result kept from before", rid)
                self.upload(rid, body)
            finally:
                self.state.end(rid)


class ColumnReporter:
    """Keeps the server's copy of this node's column report current (docs/privacy.md).

    :meth:`tick` runs at start and on every re-sync: it reads the sources again only when a
    file's mtime or size changed (an SQL server, having no file, is read each time) and sends a
    report only when it differs from the last one sent. Turned off, it asks the server once to
    forget any earlier report and sends nothing else.

    Parameters
    ----------
    client
        The node's server client.
    databases
        The node's configured databases (with their ``hide_columns``).
    enabled
        ``report_columns`` from node.yaml.
    node_id
        This node's id once logged in.

    Examples
    --------
    >>> reporter = ColumnReporter(client, config.databases, enabled=True, node_id=lambda: 7)  # doctest: +SKIP
    >>> reporter.tick()  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        client: ServerClient,
        databases: Sequence[DatabaseConfig],
        *,
        enabled: bool,
        node_id: Callable[[], int],
    ) -> None:
        self.client = client
        self.databases = list(databases)
        self.enabled = enabled
        self.node_id = node_id
        self._signatures: list[Any] | None = None
        self._sent: str | None = None  # digest of what the server holds; "off": forgotten

    def _unchanged(self, signatures: list[Any]) -> bool:
        return (
            self._sent is not None
            and signatures == self._signatures
            and all(s is not None for s in signatures)
        )

    def files_changed(self) -> bool:
        """Whether a file source changed since the last report (a cheap ``stat`` of each file;
        the node's watcher asks every few seconds, so a researcher sees a new column soon)."""
        if not self.enabled or self._signatures is None:
            return False
        now = [source_signature(db) for db in self.databases]
        return any(
            new != old and (new is not None or old is not None)
            for new, old, db in zip(now, self._signatures, self.databases, strict=True)
            if db.type != "sql" or db.uri.startswith("sqlite:///")
        )

    def tick(self) -> bool:
        """Report (or clear) when needed; True when something was sent. Raises V6Error."""
        if not self.enabled:
            if self._sent == "off":
                return False
            self.client.report_columns(self.node_id(), None)
            self._sent = "off"
            log.info(
                "column report: off (report_columns: false); the server forgot any earlier one"
            )
            return True
        signatures = [source_signature(db) for db in self.databases]
        if self._unchanged(signatures):
            return False
        report = column_report(self.databases)
        digest = hashlib.sha256(json.dumps(report, sort_keys=True).encode()).hexdigest()
        if digest == self._sent:
            self._signatures = signatures
            return False
        self.client.report_columns(self.node_id(), report)
        self._sent, self._signatures = digest, signatures
        log.info(
            "column report sent: %s",
            ", ".join(f"'{d['label']}' ({len(d['columns'])} columns)" for d in report) or "none",
        )
        return True
