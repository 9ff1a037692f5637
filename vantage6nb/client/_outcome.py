"""How a task ended: its decoded results, and the messages of a failure or a timeout."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..common.disclosure import Refusal, parse_reason, unwrap_result
from ..common.errors import REJECTED, CryptoError, DisclosureRefused, RunFailure, TaskFailed
from ..common.schemas import FAILED_VALUES, FINAL_VALUES, RunStatus
from . import _frames, _notebook_warnings
from ._codec import Codec
from ._session import Session

__all__ = [
    "NodeOfflineWarning",
    "UnverifiedResultWarning",
    "binding_mismatch",
    "check_runs",
    "decode_results",
    "foreign_runs",
    "offline_note",
    "raise_if_failed",
    "timeout_message",
]

_LOG_TAIL_LINES = 15
_BOUND = ("uid", "collaboration_id", "init_org_id")  # what a created task's record fixes


class UnverifiedResultWarning(UserWarning):
    """Results of a task this client did not create: taken as the server describes the task."""


def binding_mismatch(record: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
    """What the server says of a task that differs from this client's record of creating it.

    Examples
    --------
    >>> binding_mismatch({"uid": "a", "collaboration_id": 1, "init_org_id": 2},
    ...                  {"uid": "b", "collaboration_id": 1, "init_org_id": 2})
    {'uid': {'created': 'a', 'server': 'b'}}
    """
    out = {}
    for key in _BOUND:
        if key in task and task.get(key) != record.get(key):
            out[key] = {"created": record.get(key), "server": task.get(key)}
    return out


def _refuse(session: Session, task_id: int, differs: dict[str, Any]) -> CryptoError:
    said = ", ".join(
        f"{k} {v['server']!r} (created with {v['created']!r})" for k, v in differs.items()
    )
    return CryptoError(
        f"Task {task_id} is not the task this client created: the server now gives {said}. "
        f"This client's record of creating it is in {session.state.tasks_where}. Its results are "
        "refused, because a server that edits its database could hand back an older task's "
        "genuine results as this one's. Ask the server's operator what changed, and run the task "
        "again for results you can trust.",
        errors={"task_id": task_id, **{k: "differs from this client's record" for k in differs}},
    )


def foreign_runs(
    session: Session, task_id: int, rows: Sequence[Mapping[str, Any]]
) -> CryptoError | None:
    """The refusal for runs of a task this client created that it did not create (another run
    id, or the run of another organization: the server describes some other task as this one);
    None when every run is one it created, or it has no record of the task."""
    record = session.state.task(task_id)
    runs = {int(k): int(v) for k, v in ((record or {}).get("runs") or {}).items()}
    if not runs:
        return None
    for row in rows:
        run_id, org = row.get("id", row.get("run_id")), row.get("organization_id")
        if run_id is not None and org is not None and runs.get(int(run_id)) != int(org):
            return _refuse(
                session,
                task_id,
                {"run": {"created": sorted(runs), "server": f"run {run_id} of organization {org}"}},
            )
    return None


def check_runs(session: Session, task_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Raise :func:`foreign_runs`' refusal, if any."""
    refusal = foreign_runs(session, task_id, rows)
    if refusal is not None:
        raise refusal


def _bound_task(session: Session, task: Mapping[str, Any]) -> dict[str, Any]:
    """The task as this client created it, or as the server describes it (with a warning once,
    unless it is a subtask of a task this client created) when this client has no record of it."""
    task_id = int(task["id"])
    record = session.state.task(task_id)
    if record is None:
        parent = task.get("parent_id")
        # a subtask of a task this client created (its central algorithm made it): expected, not
        # warned about; its results stay unverified (task.verified is False)
        derived = parent is not None and session.state.task(int(parent)) is not None
        if not derived and task_id not in session.unverified_warned:
            session.unverified_warned.add(task_id)
            _notebook_warnings.install()
            warnings.warn(
                f"Task {task_id} was not created by this client (no record in "
                f"{session.state.where}): its results are taken as the server describes the task, "
                "unverified (task.verified is False). Results of tasks you create are checked "
                "against what you created.",
                UnverifiedResultWarning,
                stacklevel=5,  # the notebook line that asked for the results
            )
        return dict(task)
    differs = binding_mismatch(record, task)
    if differs:
        raise _refuse(session, task_id, differs)
    return {**dict(task), **{k: record[k] for k in _BOUND}}


def decode_results(session: Session, task: Mapping[str, Any]) -> dict[int, Any]:
    """The decoded result of every completed run of ``task`` (a task record), by run id.

    A task this client created is decoded with the binding it created (uid, collaboration,
    initiating organization, runs), whatever the server says now; a difference is refused.
    """
    task = _bound_task(session, task)
    task_id = int(task["id"])
    rows = session.transport.request("GET", "/result", params={"task_id": task_id})
    rows = rows.get("data", []) if isinstance(rows, dict) else rows
    check_runs(session, task_id, rows)
    codec = session.codec
    out: dict[int, Any] = {}
    for row in rows:
        if str(row.get("status")) != RunStatus.COMPLETED.value:
            continue
        org_id = int(row["organization_id"])
        binding = {
            "collaboration_id": int(task["collaboration_id"]),
            "task_id": task_id,
            "task_uid": task.get("uid"),
            "run_id": row.get("run_id"),
            "sender_org_id": org_id,
            "receiver_org_id": task.get("init_org_id"),
        }
        if row.get("result") is None and row.get("result_ref"):
            value = _fetch_large(session, codec, org_id, row, binding)
        else:
            value = codec.decode_result(org_id, row.get("result"), binding)
        out[int(row["run_id"])] = unwrap_result(value)  # a typed result's checked values
    return out


def _fetch_large(
    session: Session, codec: Codec, org_id: int, row: dict[str, Any], binding: dict[str, Any]
) -> Any:
    """A result stored as a file on the server: streamed to a temporary file, decoded from it."""
    fd, name = tempfile.mkstemp(prefix=f"v6nb-run-{row['run_id']}-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as fh:
            session.transport.download(f"/run/{int(row['run_id'])}/result", fh)
        return codec.decode_result_file(org_id, Path(name), binding)
    finally:
        Path(name).unlink(missing_ok=True)


def timeout_message(
    task_id: int,
    label: str,
    timeout: float | None,
    runs: Sequence[Mapping[str, Any]],
    names: Mapping[int, str],
    nodes: Mapping[int, Mapping[str, Any]],
    *,
    parts: Sequence[tuple[int, Sequence[Mapping[str, Any]]]] = (),
    now: datetime | None = None,
) -> str:
    """Why a task did not finish: every organization still open, by name, with its run's state
    (pending, active for how long) and its node's (offline since when, not picked up).

    ``parts`` are the subtasks a central algorithm created, as ``(subtask id, runs)``: their
    open runs are listed too, since the central waits for them.

    Examples
    --------
    >>> print(timeout_message(3, "summary", 5, [{"organization_id": 1, "status": "pending"}],
    ...                       {1: "Leiden"}, {}))  # doctest: +ELLIPSIS
    Task 3 (summary) did not finish within 5 s; still open:
      - Leiden: pending — organization 'Leiden' has no node in this collaboration — ...
    Wait longer with task.wait(timeout=...), or stop it with task.kill().
    """
    now = now or datetime.now(timezone.utc)
    lines = [f"Task {task_id} ({label}) did not finish within {timeout:g} s; still open:"]
    open_parts = [
        (sub_id, [r for r in rows if str(r.get("status")) not in FINAL_VALUES])
        for sub_id, rows in parts
    ]
    waiting_for = [sub_id for sub_id, rows in open_parts if rows]
    for run in runs:
        if str(run.get("status")) in FINAL_VALUES:
            continue
        line = _open_line(run, names, nodes, now)
        if waiting_for and str(run.get("status")) == RunStatus.ACTIVE.value:
            subs = ", ".join(map(str, waiting_for))
            line += f" (the central part, waiting for subtask {subs})"
        lines.append(line)
    for sub_id, rows in open_parts:
        lines += [_open_line(r, names, nodes, now, part=sub_id) for r in rows]
    lines.append("Wait longer with task.wait(timeout=...), or stop it with task.kill().")
    return "\n".join(lines)


class NodeOfflineWarning(UserWarning):
    """A task was created for an organization whose node is offline (or that has none): its run
    waits there until the node is started.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", NodeOfflineWarning)  # a notebook that knows
    """


def offline_note(
    task_id: int,
    organization_ids: Sequence[int],
    names: Mapping[int, str],
    nodes: Mapping[int, Mapping[str, Any]],
) -> str:
    """The warning for a new task whose organizations include one without a node online ('' if
    every node is online).

    Examples
    --------
    >>> print(offline_note(4, [1, 2], {1: "Leiden", 2: "Utrecht"},
    ...                    {1: {"name": "leiden-node", "status": "online"},
    ...                     2: {"name": "utrecht-node", "status": "offline"}}))
    Task 4 runs at organizations whose node is not online; their runs wait for it:
      - Utrecht: node 'utrecht-node' of organization 'Utrecht' is offline (never connected) — start it with `v6nb node start`
    """
    lines = []
    for org_id in organization_ids:
        node = nodes.get(int(org_id))
        if node is not None and node.get("status") == "online":
            continue
        org = _org_name(names, int(org_id))
        lines.append(f"  - {org}: {_node_state(org, node, {})}")
    if not lines:
        return ""
    head = f"Task {task_id} runs at organizations whose node is not online; their runs wait for it:"
    return "\n".join([head, *lines])


def _node_state(org: str, node: Mapping[str, Any] | None, run: Mapping[str, Any]) -> str:
    """Why a node is not running a run: missing, or offline since when."""
    if node is None:
        return (
            f"organization '{org}' has no node in this collaboration — an administrator "
            "creates one (POST /api/node), then start it with `v6nb node start`"
        )
    since = _clock(node.get("last_seen") or run.get("node_last_seen"))
    when = f" since {since}" if since else " (never connected)"
    return (
        f"node '{node.get('name')}' of organization '{org}' is offline{when} — "
        "start it with `v6nb node start`"
    )


def _open_line(
    run: Mapping[str, Any],
    names: Mapping[int, str],
    nodes: Mapping[int, Mapping[str, Any]],
    now: datetime,
    *,
    part: int | None = None,
) -> str:
    """One open run: ``- Utrecht (subtask 8): active for 12 s — node ... is still running it``."""
    org_id = run.get("organization_id")
    org = _org_name(names, org_id)
    node = nodes.get(org_id)  # type: ignore[arg-type]
    status = str(run.get("status"))
    where = f"{org} (subtask {part})" if part is not None else org
    state = status
    started = _frames.to_timestamp(run.get("started_at"))
    if started is not None and status != RunStatus.PENDING.value:
        state = f"{status} for {_duration((now - started.to_pydatetime()).total_seconds())}"
    if node is None or node.get("status") != "online":
        why = _node_state(org, node, run)
    elif status == RunStatus.PENDING.value:
        why = (
            f"node '{node.get('name')}' of organization '{org}' is online but has not picked "
            "the run up yet"
        )
    else:
        why = f"node '{node.get('name')}' of organization '{org}' is still running it"
    return f"  - {where}: {state} — {why}"


def _duration(seconds: float) -> str:
    """``12 s``, ``3 min 05 s``, ``2 h 01 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def raise_if_failed(
    session: Session,
    task_id: int,
    label: str,
    runs: Sequence[Mapping[str, Any]],
    names: Callable[[], Mapping[int, str]],
) -> None:
    """Raise :class:`TaskFailed` naming each run that did not complete, by organization name, with
    its reason and what to do; the runs' log tails follow (``exc.details``, ``exc.failures``).

    A central run that failed because runs of its subtasks failed lists those runs (by
    organization) instead of its own nested message. When every run that did not complete was
    ``refused`` (a node's disclosure policy withheld its output) the error is
    :class:`DisclosureRefused`, with the first refusal's organization (by name), rule, threshold
    and what fell short, read from the run's reason.
    """
    failed = [r for r in runs if str(r.get("status")) in FAILED_VALUES]
    if not failed:
        return
    logs = {
        int(r["id"]): r
        for r in session.transport.paginate("/run", {"task_id": task_id, "include": "log"})
    }
    by_id = names()
    parts: dict[int, Mapping[str, Any]] | None = None
    sub_failures: list[_Part] | None = None
    entries: list[tuple[Mapping[str, Any], str, Refusal | None]] = []  # run, shown org, refusal
    for run in failed:
        refusal = None
        if str(run.get("status")) == RunStatus.REFUSED.value:
            refusal = parse_reason(str(run.get("reason") or ""))
            passed_on = refusal.organization if refusal is not None else None
            if passed_on is not None and passed_on.isdigit():
                # a central passing on a part's refusal: show the part's reason (its node's words)
                parts = _refused_parts(session, task_id) if parts is None else parts
                part = parts.get(int(passed_on))
                if part is not None:
                    run = {
                        **run,
                        "organization_id": part.get("organization_id"),
                        "reason": part.get("reason"),
                    }
                    refusal = parse_reason(str(part.get("reason") or "")) or refusal
                    refusal.organization = None
        org = _refusing_org(by_id, run, refusal)
        entries.append((run, org, refusal))
    failures: list[RunFailure] = []
    for run, org, refusal in entries:
        log_text = (logs.get(int(run["id"])) or {}).get("log") or ""
        sub: tuple[_Part, ...] = ()
        if refusal is None and str(run.get("status")) in _MAY_HAVE_FAILED_PARTS:
            if sub_failures is None:
                sub_failures = _failed_parts(session, task_id, by_id)
            sub = tuple(sub_failures)
        failures.append(_failure(org, run, log_text, sub, refused=refusal is not None))
    refusals = [(org, refusal) for _, org, refusal in entries if refusal is not None]
    all_refused = len(refusals) == len(failed)
    refusing = list(dict.fromkeys(org for org, _ in refusals))
    orgs = " and ".join(refusing)
    if all_refused:
        lines = [f"Task {task_id} ({label}) was refused by the disclosure policy of {orgs}:"]
    else:
        lines = [f"Task {task_id} ({label}) did not complete everywhere:"]
    hints = {f.hint for f in _flat(failures) if f.hint}
    shared = hints.pop() if len(hints) == 1 and len(_flat(failures)) > 1 else ""
    lines += _failure_lines(failures, shared)
    errors = {"failed_runs": [int(r["id"]) for r in failed]}
    if not all_refused:
        if shared:  # said once, not on every line
            lines.append(f"What to do: {shared}.")
        lines.append("See task.status() for every organization, task.logs() for their logs.")
        raise TaskFailed("\n".join(lines), errors=errors, failures=failures)
    org, refusal = refusals[0]
    hint = _HINTS.get(refusal.rule if refusal else "", "ask for less detail")
    lines.append(
        f"To get a result, {hint}; or ask the data owner{'s' if len(refusing) > 1 else ''} of "
        f"{orgs} about the disclosure policy. "
        "See task.status() for every organization."
    )
    raise DisclosureRefused(
        "\n".join(lines),
        errors=errors,
        organization=org,
        rule=refusal.rule if refusal else "",
        threshold=refusal.threshold if refusal else None,
        what=refusal.what if refusal else "",
        failures=failures,
    )


# a central run in one of these may have failed because runs of its subtasks failed
_MAY_HAVE_FAILED_PARTS = frozenset({RunStatus.CRASHED.value, RunStatus.FAILED.value})
# "algorithm crashed (exit code 1): RuntimeError: boom": the status says "crashed" already
_CRASHED = re.compile(r"^algorithm crashed \(exit code \d+\): (?=\S)")


def _failure(
    org: str,
    run: Mapping[str, Any],
    log_text: str,
    parts: Sequence[_Part],
    *,
    refused: bool,
) -> RunFailure:
    """One failed run as the researcher reads it: the reason without the runtime's wording, and
    what to do about it (refusals get theirs after the list)."""
    status = str(run.get("status"))
    reason = str(run.get("reason") or "no reason given")
    tail = "\n".join(log_text.rstrip().splitlines()[-_LOG_TAIL_LINES:])
    if parts:
        sub = sorted({p.task_id for p in parts if p.task_id is not None})
        which = " and ".join(dict.fromkeys(p.organization for p in parts))
        what = f"subtask {', '.join(map(str, sub))}" if sub else "a subtask"
        reason = f"its {what} did not complete at {which}:"
        return RunFailure(org, status, reason, "", tail, tuple(p.failure for p in parts))
    reason = _CRASHED.sub("", reason)
    hint = "" if refused else _what_to_do(status, reason)
    return RunFailure(org, status, reason, hint, tail)


def _what_to_do(status: str, reason: str) -> str:
    """A short 'what to do' for a run that ended ``status`` for ``reason``."""
    if reason.startswith(REJECTED):
        return "change the input and run the task again"
    if status == RunStatus.CRASHED.value:
        return "the algorithm stopped with an error at this station: see its log"
    if status == RunStatus.KILLED.value:
        return "run the task again for its results"
    if status == RunStatus.NOT_ALLOWED.value:
        return "this station's policy does not allow it: ask the station's administrator"
    if "timed out" in reason:
        return "ask for less work, or ask the station's administrator for a longer time limit"
    if "image" in reason or "pull failed" in reason:
        return "check the image name; if it is right, ask the station's administrator"
    return "ask the station's administrator if the reason is about the station"


def _failure_lines(
    failures: Sequence[RunFailure], shared: str = "", indent: str = "  "
) -> list[str]:
    """One line per organization (its parts' below it), with its hint unless ``shared`` by all."""
    lines = []
    for f in failures:
        hint = f" ({f.hint})" if f.hint and f.hint != shared else ""
        lines.append(f"{indent}- {f.organization}: {f.status} — {f.reason}{hint}")
        lines += _failure_lines(f.parts, shared, indent + "    ")
    return lines


def _flat(failures: Sequence[RunFailure]) -> list[RunFailure]:
    return [g for f in failures for g in (f, *_flat(f.parts))]


@dataclass(frozen=True)
class _Part:
    task_id: int | None
    organization: str
    failure: RunFailure


def _failed_parts(session: Session, task_id: int, by_id: Mapping[int, str]) -> list[_Part]:
    """The failed runs of the subtasks of ``task_id`` (with their log tails), by organization."""
    transport = session.transport
    out: list[_Part] = []
    for sub in transport.paginate("/task", {"parent_id": task_id}):
        sub_id = int(sub["id"])
        for run in transport.paginate("/run", {"task_id": sub_id, "include": "log"}):
            if str(run.get("status")) not in FAILED_VALUES:
                continue
            org = _org_name(by_id, run.get("organization_id"))
            refused = str(run.get("status")) == RunStatus.REFUSED.value
            failure = _failure(org, run, str(run.get("log") or ""), (), refused=refused)
            out.append(_Part(sub_id, org, failure))
    return out


# what a researcher can change when a rule refused the output (other rules: "ask for less detail")
_HINTS = {
    "min_count": "ask for coarser groups (fewer or merged categories) or select more records, "
    "so that every cell reaches the node's minimum",
    "max_levels": "group a column with many distinct values into fewer levels (bin or merge them)",
    "levels_density": "group a column with many distinct values into fewer levels "
    "(bin or merge them)",
    "untyped": "use an algorithm that returns typed values (vantage6nb.algorithm)",
    "untyped_number": "use an algorithm that returns typed values (vantage6nb.algorithm)",
    "direct_part": "run the algorithm's entry point, not its per-node (federated) part",
    "denied_column": "leave out the column this node does not share",
    "not_allowed_column": "leave out the column this node does not share",
}


def _refused_parts(session: Session, task_id: int) -> dict[int, Mapping[str, Any]]:
    """The refused runs of the subtasks of ``task_id``, by organization id."""
    transport = session.transport
    out: dict[int, Mapping[str, Any]] = {}
    for sub in transport.paginate("/task", {"parent_id": task_id}):
        for run in transport.paginate("/run", {"task_id": int(sub["id"])}):
            if str(run.get("status")) == RunStatus.REFUSED.value:
                out.setdefault(int(run["organization_id"]), run)
    return out


def _refusing_org(by_id: Mapping[int, str], run: Mapping[str, Any], refusal: Refusal | None) -> str:
    """The name of the organization that refused: the one a passed-on refusal names, else the run's."""
    passed_on = refusal.organization if refusal else None
    if passed_on is not None and passed_on.isdigit():
        return _org_name(by_id, int(passed_on))
    return passed_on or _org_name(by_id, run.get("organization_id"))


def _org_name(by_id: Mapping[int, str], org_id: Any) -> str:
    """An organization by name (``organization <id>`` when the name is not known)."""
    return by_id.get(org_id, f"organization {org_id}")


def _clock(value: Any) -> str | None:
    """A server time as local wall-clock time: ``10:02:11`` today, with the date otherwise."""
    ts = _frames.to_timestamp(value)
    if ts is None:
        return None
    local = ts.tz_convert(datetime.now().astimezone().tzinfo)
    same_day = local.date() == datetime.now().date()
    return local.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")
