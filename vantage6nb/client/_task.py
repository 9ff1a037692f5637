"""A task as the researcher sees it: live run status, waiting woken by events, decoded results."""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ..common.errors import ServerUnavailable, TaskError, TaskTimeout, V6Error
from ..common.events import NODE_OFFLINE, NODE_ONLINE, RUN_STATUS, TASK_CREATED
from ..common.schemas import task_status
from . import _display, _frames, _notebook_warnings, _outcome
from ._events import RECONNECTED
from ._progress import ProgressLine, choose_progress
from ._runs import RunBook
from ._session import Session

__all__ = ["Results", "Task"]

_SAFETY_REFETCH_S = 5.0  # in case an event was missed; events do the real work


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
        self, session: Session, data: dict[str, Any], runs: list[dict[str, Any]] | None = None
    ):
        self._session = session
        self._data = dict(data)
        self._book = RunBook(int(data["id"]), self._data.get("organization_ids") or [])
        self._failures_accepted = False  # wait(raise_on_failure=False) was called
        # the refusal for a run the server lists that this client did not create (see refresh)
        self._foreign: Exception | None = None
        self._book.merge(runs if runs is not None else list(data.get("runs") or []))
        # set by _follow: the event connection (generation) that has fed this task every run_status
        # since before its creation, so a wait() on it needs no first re-read of the runs
        self._followed_since: int | None = None
        self._unfollow: Callable[[], None] | None = None
        self._parts: dict[int, RunBook] = {}  # subtasks' runs, seen while a line shows progress

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

    def __getitem__(self, key: str) -> Any:
        """The task as the server describes it, read like vantage6's task dict (``task["id"]``).

        Examples
        --------
        >>> task["id"] == task.id  # doctest: +SKIP
        True
        """
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """``task[key]``, or ``default`` when the server's description has no such field.

        Examples
        --------
        >>> task.get("id") == task.id  # doctest: +SKIP
        True
        """
        return self._data.get(key, default)

    @property
    def collaboration_id(self) -> int:
        """The collaboration the task runs in."""
        return int(self._data["collaboration_id"])

    @property
    def verified(self) -> bool:
        """True when this client (or one sharing its state folder) created the task and the server
        still describes it as created: its results are then checked against that binding.

        False for tasks created elsewhere (their results come with an
        :class:`UnverifiedResultWarning`, once) and for a task the server now describes otherwise
        (whose results are refused).

        Examples
        --------
        >>> client.task.create(image="v6nb/summary", method="summary").verified  # doctest: +SKIP
        True
        """
        record = self._session.state.task(self.id)
        return (
            record is not None
            and self._foreign is None
            and not _outcome.binding_mismatch(record, self._data)
        )

    @property
    def created_at(self) -> pd.Timestamp | None:
        """When the server stored the task (UTC)."""
        return _frames.to_timestamp(self._data.get("created_at"))

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The run summaries as last seen, in organization order (copies)."""
        return self._book.ordered()

    @property
    def run_book(self) -> RunBook:
        """The live runs of this task, merged from re-reads and events (monitors read it)."""
        return self._book

    @property
    def organization_ids(self) -> list[int]:
        """The receiving organizations, in the order the results are returned."""
        return [int(r["organization_id"]) for r in self.runs]

    @property
    def done(self) -> bool:
        """True when every run has a final status (completed, or one of the ways a run fails)."""
        if not self._book.all_final():
            self.refresh()
        return self._book.all_final()

    # -- state ----------------------------------------------------------------------------------
    def refresh(self) -> Task:
        """Re-read the runs from the server; returns the task.

        When the server lists a run this client did not create for it (another task's, for
        example), the task is no longer :attr:`verified` and waiting for it or reading its
        results raises :class:`~vantage6nb.errors.CryptoError`.
        """
        rows = self._session.transport.paginate("/run", {"task_id": self.id})
        self._foreign = _outcome.foreign_runs(self._session, self.id, rows) or self._foreign
        self._book.merge(rows)
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
            self.runs, organization_names=self.organization_names(), node_names=self.node_names()
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
        names = self.organization_names()
        out: dict[str, str] = {}
        for run in self._session.transport.paginate("/run", {"task_id": self.id, "include": "log"}):
            org = int(run["organization_id"])
            out[str(names.get(org, org))] = str(run.get("log") or "")
        return out

    def organization_names(self) -> dict[int, str]:
        """``{organization id: name}`` as this task's status shows them.

        Examples
        --------
        >>> task.organization_names()  # doctest: +SKIP
        {1: 'Leiden', 2: 'Utrecht'}
        """
        return self._session.directory.organization_names()

    def node_names(self) -> dict[int, str]:
        """``{node id: name}`` of the nodes of this task's collaboration.

        Examples
        --------
        >>> task.node_names()  # doctest: +SKIP
        {1: 'leiden-node', 2: 'utrecht-node'}
        """
        return self._session.directory.node_names(self.collaboration_id)

    def subtasks(self) -> list[Task]:
        """The tasks a central algorithm of this task created (with their runs).

        Examples
        --------
        >>> [sub.status() for sub in task.subtasks()]  # doctest: +SKIP
        """
        transport = self._session.transport
        return [
            Task(self._session, sub, list(transport.paginate("/run", {"task_id": int(sub["id"])})))
            for sub in transport.paginate("/task", {"parent_id": self.id})
        ]

    def on_change(self, callback: Callable[[Task, dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(task, run_event)`` on every run status change of this task.

        The task's cached runs are already updated when the callback runs (in the socket.io
        thread). On reconnect the callback gets ``(task, {"event": "reconnected"})`` after a
        re-fetch. Returns a function that unsubscribes.
        """
        events = self._session.events

        def on_run(payload: Any) -> None:
            if self._book.absorb(payload):
                callback(self, payload)

        def on_reconnect(_: Any) -> None:
            self.refresh()
            callback(self, {"event": RECONNECTED, "task_id": self.id})

        offs = [events.on(RUN_STATUS, on_run), events.on(RECONNECTED, on_reconnect)]

        def unsubscribe() -> None:
            for off in offs:
                off()

        return unsubscribe

    def on_subtask(self, callback: Callable[[Task], None]) -> Callable[[], None]:
        """Call ``callback(subtask)`` for every subtask a central algorithm of this task creates.

        The subtask is a :class:`Task` without runs yet: its runs come in with its events (follow
        them with ``subtask.on_change``). Returns a function that unsubscribes.

        Examples
        --------
        >>> off = task.on_subtask(lambda sub: print("subtask", sub.id))  # doctest: +SKIP
        """

        def on_created(payload: Any) -> None:
            if not isinstance(payload, dict) or payload.get("parent_id") != self.id:
                return
            if payload.get("task_id") is None:
                return
            data = {
                "id": int(payload["task_id"]),
                "collaboration_id": payload.get("collaboration_id", self.collaboration_id),
                "name": payload.get("name"),
                "organization_ids": list(payload.get("organization_ids") or []),
                "parent_id": self.id,
            }
            callback(Task(self._session, data))

        return self._session.events.on(TASK_CREATED, on_created)

    def on_node(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(event)`` when a node of this task's collaboration goes online or offline.

        The event has ``node_id``, ``name``, ``organization_id``, ``status`` (online or offline)
        and ``last_seen``. Returns a function that unsubscribes.

        Examples
        --------
        >>> off = task.on_node(lambda node: print(node["name"], node["status"]))  # doctest: +SKIP
        """

        def on_event(payload: Any) -> None:
            if (
                isinstance(payload, dict)
                and payload.get("collaboration_id") == self.collaboration_id
            ):
                callback(payload)

        events = self._session.events
        offs = [events.on(NODE_ONLINE, on_event), events.on(NODE_OFFLINE, on_event)]

        def unsubscribe() -> None:
            for off in offs:
                off()

        return unsubscribe

    def wait(
        self,
        timeout: float | None = None,
        *,
        raise_on_failure: bool = True,
        progress: bool | str | Callable[[Task], None] | None = None,
    ) -> Task:
        """Block until every run is final; returns the task.

        Woken by ``run_status`` events (and a re-fetch on reconnect, plus a slow safety re-fetch).

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait; None waits for ever.
        raise_on_failure : bool
            Raise :class:`~vantage6nb.errors.TaskFailed` when a run failed, crashed, was killed,
            not allowed or refused, with each organization's reason and log tail;
            :class:`~vantage6nb.errors.DisclosureRefused` (a TaskFailed) when every run that did
            not complete was refused by its node's disclosure policy.
        progress : bool, str or callable, optional
            What the wait shows. None: the client's setting (``Client(url, progress=...)``), else
            ``$V6NB_PROGRESS``, else ``"auto"``: the live :class:`~vantage6nb.widgets.TaskMonitor`
            in a Jupyter kernel (once per task, following its subtasks too), one updating line
            on stderr when it is a terminal or in terminal IPython, nothing in a script whose
            stderr is not a terminal. ``"monitor"``, ``"line"``, ``"off"`` choose; True shows what
            suits where it runs even when ``"auto"`` would not; False shows nothing; a callable
            is called with the task on every change.

        Raises
        ------
        TaskTimeout
            Naming each unfinished organization, its status and why (for example its node is offline).
        DisclosureRefused
            Naming the refusing organization, the rule and its threshold (``exc.organization``,
            ``exc.rule``, ``exc.threshold``).

        Examples
        --------
        >>> task.wait(timeout=60)  # doctest: +SKIP
        <Task 12 'summary' v6nb/summary:summary — Leiden completed, Utrecht completed>
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        report = choose_progress(progress, default=getattr(self._session, "progress", None))
        events = self._session.events
        # the run book's version moves on with every event and with a reconnect. Events carry
        # the run's status, so the runs are re-read only on the first pass, after a reconnect (events
        # may have been missed) and on the slow safety timer, not on every event.
        refetch = threading.Event()
        if not self._followed_unbroken():
            refetch.set()

        def reconnected(_: Any = None) -> None:
            refetch.set()
            self._book.poke()

        offs = [events.on(RUN_STATUS, self._book.absorb), events.on(RECONNECTED, reconnected)]
        if isinstance(report, ProgressLine):  # the line counts the parts a central creates
            offs += self._follow_parts()
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
                    if self._foreign is not None:  # another task's runs: they would never end
                        raise self._foreign
                seen = self._book.version  # later events and reconnects move it on
                if report is not None:
                    report(self)
                if self._book.all_final():
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
                if not self._book.wait_changed(seen, pause):
                    refetch.set()  # the safety re-fetch
                if not events.connected:
                    refetch.set()
                    events.ensure_connected()
        finally:
            for off in offs:
                off()
            if self._book.all_final():
                self._stop_following()
            if isinstance(report, ProgressLine):
                report.close()
        if raise_on_failure:
            self._raise_if_failed()
        else:
            self._failures_accepted = True
        return self

    # -- results --------------------------------------------------------------------------------
    def results(self, *, timeout: float | None = None) -> Results:
        """The decoded result of every run, in organization order (waits for the task first).

        A list (as vantage6's results are), each entry labelled with its organization: the repr
        names them, ``results.organizations`` lists them and ``results["Leiden"]`` is one. Runs
        that did not complete give None when the task was waited for with
        ``raise_on_failure=False``; otherwise a failure raises :class:`TaskFailed`.

        Examples
        --------
        >>> task.results()  # doctest: +SKIP
        2 results, by organization:
          Leiden:  {'count': 120}
          Utrecht: {'count': 98}
        >>> task.results()[0], task.results()["Utrecht"]  # doctest: +SKIP
        ({'count': 120}, {'count': 98})
        """
        by_run = self._decoded(timeout)
        names = self.organization_names()
        runs = self.runs
        return Results(
            [by_run.get(int(r["id"])) for r in runs],
            [str(names.get(int(r["organization_id"]), r["organization_id"])) for r in runs],
        )

    def results_by_organization(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The decoded results keyed by organization name.

        Examples
        --------
        >>> task.results_by_organization()  # doctest: +SKIP
        {'Leiden': {'count': 120}, 'Utrecht': {'count': 98}}
        """
        by_run = self._decoded(timeout)
        names = self.organization_names()
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

    def results_frame(self, *, timeout: float | None = None) -> pd.DataFrame:
        """The results as a DataFrame, where their shape allows; :class:`TaskError` where not.

        One row per organization when each result is a flat object (``{"count": 3, ...}``); the
        table itself when the task has one result that is a table (an object of columns, as
        ``DataFrame.to_dict()`` writes, a list of records, or such JSON text, as many vantage6
        algorithms return). Provenance (task id, image, organizations) is in ``attrs``.

        Examples
        --------
        >>> task.results_frame()  # doctest: +SKIP
                  sum  count
        Leiden  4402.1    101
        """
        results = self.results(timeout=timeout)
        names = self.organization_names()
        orgs = [str(names.get(int(r["organization_id"]), r["organization_id"])) for r in self.runs]
        df = _results_table(results, orgs)
        if df is None:
            raise TaskError(
                f"The results of task {self.id} are not tabular (each a flat object, or one "
                "table): read them with task.results()."
            )
        return _frames.with_provenance(
            df, task_id=self.id, image=self.image, organizations=orgs, method=self.method
        )

    def kill(self) -> Task:
        """Stop every open run of this task (they end as ``killed``); returns the task."""
        self._session.transport.request("POST", f"/task/{self.id}/kill")
        return self.refresh()

    # -- internals ------------------------------------------------------------------------------
    def _decoded(self, timeout: float | None) -> dict[int, Any]:
        if not self._book.all_final():
            self.wait(timeout=timeout)  # shows what a wait shows (docs/client.md)
        elif not self._failures_accepted:  # as documented: a failure raises, as wait() does
            self._raise_if_failed()
        return _outcome.decode_results(self._session, self._data)

    def _follow(self, early: list[Any], stop_early: Callable[[], None], generation: int) -> None:
        """Keep folding this task's ``run_status`` events in from now on (until every run is
        final), after those caught in ``early`` by a subscription taken before the task existed."""
        events = self._session.events
        self._unfollow = events.on(RUN_STATUS, self._absorb_following, connect=False)
        stop_early()
        for payload in list(early):  # older than any event since: the run book never moves back
            self._book.absorb(payload)
        self._followed_since = generation

    def _followed_unbroken(self) -> bool:
        events = self._session.events
        return (
            self._followed_since is not None
            and events.connected
            and events.generation == self._followed_since
        )

    def _absorb_following(self, payload: Any) -> None:
        if self._book.absorb(payload) and self._book.all_final():
            self._stop_following()

    def _stop_following(self) -> None:
        off, self._unfollow = self._unfollow, None
        if off is not None:
            off()

    def _timeout_message(self, timeout: float | None) -> str:
        nodes = self._session.directory.nodes_by_organization(self.collaboration_id)
        parts: list[tuple[int, list[dict[str, Any]]]] = []
        try:  # the organizations a central waits for are open too: name them all
            transport = self._session.transport
            for sub in transport.paginate("/task", {"parent_id": self.id}):
                rows = list(transport.paginate("/run", {"task_id": int(sub["id"])}))
                parts.append((int(sub["id"]), rows))
        except V6Error:  # the message without the parts, rather than no message
            parts = []
        return _outcome.timeout_message(
            self.id,
            self.name or self.method,
            timeout,
            self.runs,
            self.organization_names(),
            nodes,
            parts=parts,
        )

    def _follow_parts(self) -> list[Callable[[], None]]:
        """Keep the runs of this task's subtasks (from events) for :meth:`part_runs`."""
        books = self._parts

        def on_sub(sub: Task) -> None:
            books.setdefault(sub.id, RunBook(sub.id, sub._data.get("organization_ids") or []))

        def on_run(payload: Any) -> None:
            if isinstance(payload, dict) and payload.get("task_id") in books:
                books[int(payload["task_id"])].absorb(payload)
                self._book.poke()  # the waiter reports the change

        events = self._session.events
        return [self.on_subtask(on_sub), events.on(RUN_STATUS, on_run)]

    def part_runs(self) -> list[dict[str, Any]]:
        """The runs of this task's subtasks seen while waiting (a central algorithm's parts).

        Examples
        --------
        >>> [r["status"] for r in task.part_runs()]  # doctest: +SKIP
        ['completed', 'active', 'pending']
        """
        return [r for book in list(self._parts.values()) for r in book.ordered()]

    def _warn_offline(self, organizations: Sequence[int] | None = None) -> None:
        """Warn at once when a receiving organization's node is offline (or missing);
        ``organizations``: those a central algorithm of this task will run its parts at.

        The server's answer to the creation gives each run's node status: the nodes are read
        (for their names and since when) only when one of them is not online."""
        if organizations is None:
            runs = self.runs
            ids = [int(r["organization_id"]) for r in runs if r.get("node_status") != "online"]
            if runs and not ids:
                return  # every node online: no request
        else:
            ids = [int(i) for i in organizations]
        try:
            nodes = self._session.directory.nodes_by_organization(self.collaboration_id)
            names = self.organization_names()
        except V6Error:  # a warning is not worth failing a created task for
            return
        ids = (
            ids
            or self.organization_ids
            or [int(i) for i in self._data.get("organization_ids") or []]
        )
        note = _outcome.offline_note(self.id, ids, names, nodes)
        if note:
            _notebook_warnings.install()  # in a kernel: shown as a card, not file:line text
            warnings.warn(note, _outcome.NodeOfflineWarning, stacklevel=_caller_level())

    def _raise_if_failed(self) -> None:
        _outcome.raise_if_failed(
            self._session, self.id, self.name or self.method, self.runs, self.organization_names
        )

    def _ipython_display_(self) -> None:
        # In a notebook a task shows itself through the display hook (a live TaskMonitor from
        # vantage6nb.widgets); without ipywidgets it falls back to its text repr.
        _display.show_result(self)  # not again below a wait's monitor of this cell

    @property
    def state(self) -> str:
        """The task's status as a task list shows it (:func:`~vantage6nb.common.schemas.task_status`):
        an open run's status, else completed, killed, refused or failed. From the runs as last
        seen (no request; :meth:`refresh` re-reads them).

        Examples
        --------
        >>> task.kill().state  # doctest: +SKIP
        'killed'
        """
        return task_status(r.get("status") for r in self.runs)

    def __repr__(self) -> str:
        ids = [int(r["organization_id"]) for r in self.runs if r.get("organization_id") is not None]
        try:  # by name: one listing of the organizations when a name is not known yet
            names = self._session.directory.organization_names(need=ids)
        except V6Error:  # a repr never raises: ids, then
            names = self._session.directory.organization_names(refresh=False)
        parts = [
            f"{names.get(r.get('organization_id'), r.get('organization_id'))} {r.get('status')}"  # type: ignore[arg-type]
            for r in self.runs
        ]
        label = f" '{self.name}'" if self.name else ""
        state = f" {self.state}" if parts else ""
        return (
            f"<Task {self.id}{label} {self.image}:{self.method}{state} — "
            f"{', '.join(parts) or 'no runs'}>"
        )

    def _repr_html_(self) -> str:
        """A card: id, name, the full image, method, the status as ``task.list()`` shows it and
        each organization's run by name (``vantage6nb.client._html``)."""
        from ._html import task_html

        return task_html(self)


class Results(list):  # type: ignore[type-arg]
    """A task's results in organization order, each labelled with its organization's name.

    A plain list otherwise (``==``, indexing, ``len``, JSON); ``results["Leiden"]`` is Leiden's.

    Examples
    --------
    >>> r = Results([{"n": 3}, None], ["Leiden", "Utrecht"])
    >>> r
    2 results, by organization:
      Leiden:  {'n': 3}
      Utrecht: None
    >>> r == [{"n": 3}, None], r["Leiden"], r.organizations
    (True, {'n': 3}, ['Leiden', 'Utrecht'])
    """

    def __init__(self, values: list[Any], organizations: list[str]) -> None:
        super().__init__(values)
        self.organizations = list(organizations)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self.organizations:
                raise KeyError(
                    f"No result of organization {key!r}; these organizations have one: "
                    f"{', '.join(self.organizations)}."
                )
            return list.__getitem__(self, self.organizations.index(key))
        return list.__getitem__(self, key)

    def items(self) -> list[tuple[str, Any]]:
        """``(organization, result)`` pairs, in order."""
        return list(zip(self.organizations, self, strict=False))

    def __repr__(self) -> str:
        import pprint

        width = max((len(o) for o in self.organizations), default=0) + 1
        lines = [f"{len(self)} result{'s' * (len(self) != 1)}, by organization:"]
        for org, value in self.items():
            text = pprint.pformat(value, width=max(40, 96 - width), compact=True)
            pad = " " * (width + 3)
            lines.append(f"  {org + ':':<{width}} " + text.replace("\n", "\n" + pad))
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("Results(...)" if cycle else repr(self))


def _results_table(results: list[Any], orgs: list[str]) -> pd.DataFrame | None:
    """``results`` as a table (see :meth:`Task.results_frame`), or None when they are not one."""
    import json

    values = []
    for value in results:
        if isinstance(value, str):  # JSON text, as vantage6 algorithms often return
            try:
                value = json.loads(value)
            except ValueError:
                return None
        values.append(value)
    scalar = (str, int, float, bool, type(None))
    if values and all(
        isinstance(v, dict) and all(isinstance(x, scalar) for x in v.values()) for v in values
    ):
        return pd.DataFrame.from_records(values, index=pd.Index(orgs, name="organization"))
    if len(values) == 1:
        (value,) = values
        if isinstance(value, list) and all(isinstance(r, dict) for r in value):
            return pd.DataFrame.from_records(value)
        if isinstance(value, dict) and _columns_of_lists(value):
            try:
                return pd.DataFrame(value)
            except ValueError:  # columns of different lengths
                return None
    return None


def _columns_of_lists(value: dict[str, Any]) -> bool:
    return bool(value) and all(isinstance(v, (dict, list)) for v in value.values())


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside vantage6nb: the researcher's line."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("vantage6nb."):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
