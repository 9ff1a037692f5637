"""A task as the researcher sees it: live run status, waiting woken by events, decoded results."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..common.errors import ServerUnavailable, TaskError, TaskFailed, TaskTimeout
from ..common.events import RUN_STATUS
from ..common.schemas import FINAL_STATUSES, RunStatus
from . import _frames
from ._events import RECONNECTED
from ._progress import ProgressLine, choose_progress

if TYPE_CHECKING:  # pragma: no cover
    from ._client import Client

__all__ = ["Task"]

_FINAL = {str(s) for s in FINAL_STATUSES}
_FAILED = _FINAL - {str(RunStatus.COMPLETED)}
_SAFETY_REFETCH_S = 5.0  # in case an event was missed; events do the real work
_EVENT_FIELDS = ("status", "reason", "started_at", "finished_at")  # what a run_status event sets
_LOG_TAIL_LINES = 15
_ORDER = [str(RunStatus.PENDING), str(RunStatus.INITIALIZING), str(RunStatus.ACTIVE)]


def _rank(status: Any) -> int:
    """Progress of a run status: pending 0, initializing 1, active 2, any final status 3."""
    text = str(status)
    return 3 if text in _FINAL else _ORDER.index(text) if text in _ORDER else -1


class Task:
    """One task: its runs (one per organization), their status, and their results.

    Get one from ``client.task.create(...)`` or ``client.task.get(id)``.

    Examples
    --------
    >>> task = client.task.create(image="v6nb/summary", method="partial_summary")  # doctest: +SKIP
    >>> task.wait(timeout=60).results()  # doctest: +SKIP
    [{...}, {...}, {...}]
    >>> task.status()  # doctest: +SKIP
      organization    node     status reason  started  finished ...
    """

    def __init__(
        self, client: Client, data: dict[str, Any], runs: list[dict[str, Any]] | None = None
    ):
        self._client = client
        self._data = dict(data)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._runs: dict[int, dict[str, Any]] = {}
        self._version = 0
        self._failures_accepted = False  # wait(raise_on_failure=False) was called
        self._set_runs(runs if runs is not None else list(data.get("runs") or []))
        # set by _follow: the event connection (generation) that has fed this task every run_status
        # since before its creation, so a wait() on it needs no first re-read of the runs
        self._followed_since: int | None = None
        self._unfollow: Callable[[], None] | None = None

    # -- identity -------------------------------------------------------------------------------
    @property
    def id(self) -> int:
        """The server's task id."""
        return int(self._data["id"])

    @property
    def name(self) -> str:
        """The task's name (may be empty)."""
        return str(self._data.get("name") or "")

    @property
    def image(self) -> str:
        """The algorithm image."""
        return str(self._data.get("image") or "")

    @property
    def method(self) -> str:
        """The method the algorithm runs."""
        return str(self._data.get("method") or "")

    @property
    def collaboration_id(self) -> int:
        """The collaboration the task runs in."""
        return int(self._data["collaboration_id"])

    @property
    def created_at(self) -> pd.Timestamp | None:
        """When the server stored the task (UTC)."""
        return _frames.to_timestamp(self._data.get("created_at"))

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The run summaries as last seen, in organization order (copies)."""
        with self._lock:
            return [dict(r) for r in self._ordered()]

    @property
    def organization_ids(self) -> list[int]:
        """The receiving organizations, in the order the results are returned."""
        return [int(r["organization_id"]) for r in self.runs]

    @property
    def done(self) -> bool:
        """True when every run has a final status (completed, failed, crashed, killed, not allowed)."""
        if not self._all_final():
            self.refresh()
        return self._all_final()

    # -- state ----------------------------------------------------------------------------------
    def refresh(self) -> Task:
        """Re-read the runs from the server; returns the task."""
        runs = self._client._transport.paginate("/run", {"task_id": self.id})
        self._set_runs(runs)
        return self

    def status(self) -> pd.DataFrame:
        """The current status per organization, as a DataFrame.

        Columns: organization, node, status, reason, started, finished, organization_id, node_id,
        run_id, node_status.

        Examples
        --------
        >>> task.status()[["organization", "status"]]  # doctest: +SKIP
          organization     status
        0       Leiden  completed
        """
        self.refresh()
        df = _frames.status_frame(
            self.runs,
            organization_names=self._client._organization_names(),
            node_names=self._client._node_names(self.collaboration_id),
        )
        df.attrs.update(
            task_id=self.id,
            image=self.image,
            method=self.method,
            organizations=[str(o) for o in df["organization"]] if "organization" in df else [],
            created=self.created_at,
            retrieved=pd.Timestamp.now(tz="UTC"),
        )
        return df

    def logs(self) -> dict[str, str]:
        """Each organization's run log (the algorithm's stdout and stderr tail), by organization name.

        Examples
        --------
        >>> print(task.logs()["Leiden"])  # doctest: +SKIP
        """
        names = self._client._organization_names()
        out: dict[str, str] = {}
        for run in self._client._transport.paginate("/run", {"task_id": self.id, "include": "log"}):
            org = int(run["organization_id"])
            out[str(names.get(org, org))] = str(run.get("log") or "")
        return out

    def subtasks(self) -> list[Task]:
        """The tasks a central algorithm of this task created (with their runs).

        Examples
        --------
        >>> [sub.status() for sub in task.subtasks()]  # doctest: +SKIP
        """
        transport = self._client._transport
        return [
            Task(self._client, sub, list(transport.paginate("/run", {"task_id": int(sub["id"])})))
            for sub in transport.paginate("/task", {"parent_id": self.id})
        ]

    def on_change(self, callback: Callable[[Task, dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(task, run_event)`` on every run status change of this task.

        The task's cached runs are already updated when the callback runs (in the socket.io
        thread). On reconnect the callback gets ``(task, {"event": "reconnected"})`` after a
        re-fetch. Returns a function that unsubscribes.
        """
        events = self._client.events

        def on_run(payload: Any) -> None:
            if self._absorb(payload):
                callback(self, payload)

        def on_reconnect(_: Any) -> None:
            self.refresh()
            callback(self, {"event": RECONNECTED, "task_id": self.id})

        offs = [events.on(RUN_STATUS, on_run), events.on(RECONNECTED, on_reconnect)]

        def unsubscribe() -> None:
            for off in offs:
                off()

        return unsubscribe

    def wait(
        self,
        timeout: float | None = None,
        *,
        raise_on_failure: bool = True,
        progress: bool | Callable[[Task], None] | None = None,
    ) -> Task:
        """Block until every run is final; returns the task.

        Woken by ``run_status`` events (and a re-fetch on reconnect, plus a slow safety re-fetch).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait; None waits for ever.
        raise_on_failure : bool
            Raise :class:`~vantage6nb.errors.TaskFailed` when a run failed, crashed, was killed or
            not allowed, with each organization's reason and log tail.
        progress : bool or callable, optional
            None: a one-line progress on a terminal, nothing in a notebook (the task displays itself
            there). True/False force the line on/off; a callable is called with the task on change.

        Raises
        ------
        TaskTimeout
            Naming each unfinished organization, its status and why (for example its node is offline).

        Examples
        --------
        >>> task.wait(timeout=60)  # doctest: +SKIP
        <Task 12 'summary' v6nb/summary:summary — Leiden completed, Utrecht completed>
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        report = choose_progress(progress)
        events = self._client.events
        # _absorb bumps self._version and notifies self._changed; so does a reconnect. Events carry
        # the run's status, so the runs are re-read only on the first pass, after a reconnect (events
        # may have been missed) and on the slow safety timer, not on every event.
        refetch = threading.Event()
        if not self._followed_unbroken():
            refetch.set()

        def reconnected(_: Any = None) -> None:
            refetch.set()
            self._poke()

        offs = [events.on(RUN_STATUS, self._absorb), events.on(RECONNECTED, reconnected)]
        unreachable: ServerUnavailable | None = None
        try:
            while True:
                if refetch.is_set():
                    refetch.clear()
                    try:  # the first pass runs after subscribing, so no change in between is lost
                        self.refresh()
                        unreachable = None
                    except ServerUnavailable as exc:  # a server restart: keep waiting, retry later
                        unreachable = exc
                        refetch.set()
                seen = self._version  # later events and reconnects move it on
                if report is not None:
                    report(self)
                if self._all_final():
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if unreachable is not None:
                        raise TaskTimeout(
                            f"Task {self.id} did not finish within {timeout:g} s, and the server "
                            f"is not answering: {unreachable.msg}"
                        )
                    raise TaskTimeout(self._timeout_message(timeout))
                pause = (
                    _SAFETY_REFETCH_S if remaining is None else min(_SAFETY_REFETCH_S, remaining)
                )
                with self._changed:
                    if not self._changed.wait_for(partial(self._moved_on, seen), timeout=pause):
                        refetch.set()  # the safety re-fetch
                if not events.connected:
                    refetch.set()
                    events.ensure_connected()
        finally:
            for off in offs:
                off()
            if self._all_final():
                self._stop_following()
            if isinstance(report, ProgressLine):
                report.close()
        if raise_on_failure:
            self._raise_if_failed()
        else:
            self._failures_accepted = True
        return self

    # -- results --------------------------------------------------------------------------------
    def results(self, *, timeout: float | None = None) -> list[Any]:
        """The decoded result of every run, in organization order (waits for the task first).

        Runs that did not complete give None when the task was waited for with
        ``raise_on_failure=False``; otherwise a failure raises :class:`TaskFailed`.

        Examples
        --------
        >>> task.results()  # doctest: +SKIP
        [{'count': 120}, {'count': 98}]
        """
        by_run = self._decoded(timeout)
        return [by_run.get(int(r["id"])) for r in self.runs]

    def results_by_organization(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The decoded results keyed by organization name.

        Examples
        --------
        >>> task.results_by_organization()  # doctest: +SKIP
        {'Leiden': {'count': 120}, 'Utrecht': {'count': 98}}
        """
        by_run = self._decoded(timeout)
        names = self._client._organization_names()
        return {
            names.get(int(r["organization_id"]), str(r["organization_id"])): by_run.get(
                int(r["id"])
            )
            for r in self.runs
        }

    def result(self, *, timeout: float | None = None) -> Any:
        """The one result of a task sent to exactly one organization (a central task).

        Examples
        --------
        >>> client.task.create(organizations=["Leiden"], image="v6nb/summary",
        ...                    method="summary").result()  # doctest: +SKIP
        {'columns': {...}}
        """
        out = self.results(timeout=timeout)
        if len(out) != 1:
            raise TaskError(
                f"Task {self.id} has {len(out)} results (one per organization): use task.results() "
                "or task.results_by_organization()."
            )
        return out[0]

    def kill(self) -> Task:
        """Stop every open run of this task (they end as ``killed``); returns the task."""
        self._client._transport.request("POST", f"/task/{self.id}/kill")
        return self.refresh()

    # -- internals ------------------------------------------------------------------------------
    def _decoded(self, timeout: float | None) -> dict[int, Any]:
        if not self._all_final():
            self.wait(timeout=timeout, progress=False)
        elif not self._failures_accepted:  # as documented: a failure raises, as wait() does
            self._raise_if_failed()
        rows = self._client._transport.request("GET", "/result", params={"task_id": self.id})
        rows = rows.get("data", []) if isinstance(rows, dict) else rows
        codec = self._client._codec
        init_org = self._data.get("init_org_id")
        out: dict[int, Any] = {}
        for row in rows:
            if str(row.get("status")) != str(RunStatus.COMPLETED):
                continue
            org_id = int(row["organization_id"])
            binding = {
                "collaboration_id": self.collaboration_id,
                "task_id": self.id,
                "task_uid": self._data.get("uid"),
                "run_id": row.get("run_id"),
                "sender_org_id": org_id,
                "receiver_org_id": init_org,
            }
            if row.get("result") is None and row.get("result_ref"):
                out[int(row["run_id"])] = self._fetch_large(codec, org_id, row, binding)
            else:
                out[int(row["run_id"])] = codec.decode_result(org_id, row.get("result"), binding)
        return out

    def _fetch_large(
        self, codec: Any, org_id: int, row: dict[str, Any], binding: dict[str, Any]
    ) -> Any:
        """A result stored as a file on the server: streamed to a temporary file, decoded from it."""
        fd, name = tempfile.mkstemp(prefix=f"v6nb-run-{row['run_id']}-", suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as fh:
                self._client._transport.download(f"/run/{int(row['run_id'])}/result", fh)
            return codec.decode_result_file(org_id, Path(name), binding)
        finally:
            Path(name).unlink(missing_ok=True)

    def _set_runs(self, runs: list[dict[str, Any]]) -> None:
        with self._changed:
            for run in runs:
                run_id = int(run["id"] if run.get("id") is not None else run["run_id"])
                known = self._runs.get(run_id, {})
                if str(known.get("status")) in _FINAL and str(run.get("status")) not in _FINAL:
                    # a re-read answered before a final event arrived: a final status stays final
                    run = {k: v for k, v in run.items() if k not in _EVENT_FIELDS}
                self._runs[run_id] = {**known, **run, "id": run_id}
            self._version += 1
            self._changed.notify_all()

    def _absorb(self, payload: Any) -> bool:
        """Fold a ``run_status`` event for this task into the cached runs; False if not ours."""
        if not isinstance(payload, dict) or payload.get("task_id") != self.id:
            return False
        run = {k: v for k, v in payload.items() if k != "run_id"}
        run["id"] = payload.get("run_id")
        if run["id"] is None:
            return False
        self._set_runs([run])
        return True

    def _follow(self, early: list[Any], stop_early: Callable[[], None], generation: int) -> None:
        """Keep folding this task's ``run_status`` events in from now on (until every run is
        final), after those caught in ``early`` by a subscription taken before the task existed."""
        events = self._client.events
        self._unfollow = events.on(RUN_STATUS, self._absorb_following, connect=False)
        stop_early()
        for payload in list(early):  # older than any event since: never move a run backwards
            if isinstance(payload, dict) and payload.get("task_id") == self.id:
                known = self._runs.get(int(payload.get("run_id") or 0), {})
                if _rank(payload.get("status")) >= _rank(known.get("status")):
                    self._absorb(payload)
        self._followed_since = generation

    def _followed_unbroken(self) -> bool:
        events = self._client.events
        return (
            self._followed_since is not None
            and events.connected
            and events.generation == self._followed_since
        )

    def _absorb_following(self, payload: Any) -> None:
        if self._absorb(payload) and self._all_final():
            self._stop_following()

    def _stop_following(self) -> None:
        off, self._unfollow = self._unfollow, None
        if off is not None:
            off()

    def _moved_on(self, seen: int) -> bool:
        return self._version != seen

    def _poke(self, _: Any = None) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def _ordered(self) -> list[dict[str, Any]]:
        order = {org: i for i, org in enumerate(self._data.get("organization_ids") or [])}
        return sorted(
            self._runs.values(),
            key=lambda r: (order.get(r.get("organization_id"), len(order)), r["id"]),
        )

    def _all_final(self) -> bool:
        with self._lock:
            return bool(self._runs) and all(
                str(r.get("status")) in _FINAL for r in self._runs.values()
            )

    def _timeout_message(self, timeout: float | None) -> str:
        names = self._client._organization_names()
        nodes = self._client._nodes_by_organization(self.collaboration_id)
        lines = [
            f"Task {self.id} ({self.name or self.method}) did not finish within {timeout:g} s:"
        ]
        for run in self.runs:
            if str(run.get("status")) in _FINAL:
                continue
            org_id = run.get("organization_id")
            org = names.get(org_id, f"organization {org_id}")  # type: ignore[arg-type]
            node = nodes.get(org_id)  # type: ignore[arg-type]
            status = run.get("status")
            if node is None:
                why = (
                    f"organization '{org}' has no node in this collaboration — an administrator "
                    "creates one (POST /api/node), then start it with `v6nb node start`"
                )
            elif node.get("status") != "online":
                since = _clock(node.get("last_seen") or run.get("node_last_seen"))
                when = f" since {since}" if since else " (never connected)"
                why = (
                    f"node '{node.get('name')}' of organization '{org}' is offline{when} — "
                    "start it with `v6nb node start`"
                )
            elif status == str(RunStatus.PENDING):
                why = f"node '{node.get('name')}' of organization '{org}' is online but has not picked the run up yet"
            else:
                why = f"node '{node.get('name')}' of organization '{org}' is still running it"
            lines.append(f"  - {org}: {status} — {why}")
        lines.append("Wait longer with task.wait(timeout=...), or stop it with task.kill().")
        return "\n".join(lines)

    def _raise_if_failed(self) -> None:
        failed = [r for r in self.runs if str(r.get("status")) in _FAILED]
        if not failed:
            return
        logs = {
            int(r["id"]): r
            for r in self._client._transport.paginate(
                "/run", {"task_id": self.id, "include": "log"}
            )
        }
        names = self._client._organization_names()
        lines = [f"Task {self.id} ({self.name or self.method}) did not complete everywhere:"]
        for run in failed:
            org_id = run.get("organization_id")
            org = names.get(org_id, f"organization {org_id}")  # type: ignore[arg-type]
            lines.append(
                f"  - {org}: {run.get('status')} — {run.get('reason') or 'no reason given'}"
            )
            log_text = (logs.get(int(run["id"])) or {}).get("log") or ""
            tail = log_text.rstrip().splitlines()[-_LOG_TAIL_LINES:]
            lines += [f"      | {line}" for line in tail]
        lines.append("See task.status() for every organization.")
        raise TaskFailed("\n".join(lines), errors={"failed_runs": [int(r["id"]) for r in failed]})

    def _ipython_display_(self) -> None:
        # In a notebook a task shows itself as a live TaskMonitor (vantage6nb.widgets); without
        # ipywidgets it falls back to its text repr.
        try:
            from ..widgets import display_task

            display_task(self)
        except ImportError:
            print(repr(self))

    def __repr__(self) -> str:
        names = self._client._organization_names(refresh=False)
        parts = [
            f"{names.get(r.get('organization_id'), r.get('organization_id'))} {r.get('status')}"  # type: ignore[arg-type]
            for r in self.runs
        ]
        label = f" '{self.name}'" if self.name else ""
        return (
            f"<Task {self.id}{label} {self.image}:{self.method} — {', '.join(parts) or 'no runs'}>"
        )


def _clock(value: Any) -> str | None:
    """A server time as local wall-clock time: ``10:02:11`` today, with the date otherwise."""
    ts = _frames.to_timestamp(value)
    if ts is None:
        return None
    local = ts.tz_convert(datetime.now().astimezone().tzinfo)
    same_day = local.date() == datetime.now().date()
    return local.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")
