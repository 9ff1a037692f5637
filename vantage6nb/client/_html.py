"""Rich HTML reprs (like PySyft's) for Client, Task and a result's provenance; text stays in __repr__."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..common.errors import V6Error

if TYPE_CHECKING:  # pragma: no cover
    from ._client import Client
    from ._task import Task

__all__ = ["client_html", "note_html", "provenance_html", "task_html"]

# status colours, as the TaskMonitor shows them
_COLOURS = {
    "completed": "#2e7d32",
    "active": "#1565c0",
    "initializing": "#1565c0",
    "pending": "#757575",
    "killed": "#6d4c41",
    "refused": "#8d6e00",
    "not allowed": "#8d6e00",
    "online": "#2e7d32",
    "offline": "#c62828",
}
_STYLE = (
    "<style>.v6nb-card{font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;"
    "border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:4px 0;max-width:64em}"
    ".v6nb-card h4{margin:0 0 6px 0;font-size:14px}"
    ".v6nb-card table{border-collapse:collapse;margin:4px 0}"
    ".v6nb-card th,.v6nb-card td{text-align:left;padding:2px 10px 2px 0;vertical-align:top}"
    ".v6nb-card code{word-break:break-all;white-space:normal}"
    ".v6nb-muted{color:#757575}</style>"
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _status(status: Any) -> str:
    text = str(status or "")
    colour = _COLOURS.get(text, "#c62828" if text else "#757575")
    return (
        f"<span data-status='{_e(text)}' style='color:{colour};font-weight:600'>"
        f"● {_e(text or 'unknown')}</span>"
    )


def _fields(rows: list[tuple[str, str]]) -> str:
    return (
        "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"
    )


def _grid(head: list[str], rows: list[list[str]]) -> str:
    top = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{top}</tr></thead><tbody>{body}</tbody></table>"


def _card(title: str, body: str, kind: str) -> str:
    return f"{_STYLE}<div class='v6nb-card v6nb-{kind}'><h4>{title}</h4>{body}</div>"


def _inline(text: str) -> str:
    """Escape ``text`` and show its `backticked` spans as code."""
    parts = _e(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as it is
        return _e(text)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def note_html(text: str, title: str) -> str:
    """A warning's text as a card: the first line as its lead, ``  - `` lines as a list.

    Examples
    --------
    >>> "<li>Utrecht: offline</li>" in note_html("Task 4 waits:\\n  - Utrecht: offline", "Note")
    True
    """
    lead, *rest = text.splitlines() or [""]
    items = [line.strip()[2:] for line in rest if line.strip().startswith("- ")]
    other = [line.strip() for line in rest if line.strip() and not line.strip().startswith("- ")]
    body = f"<div>{_inline(lead)}</div>"
    if items:
        body += "<ul style='margin:4px 0'>" + "".join(f"<li>{_inline(i)}</li>" for i in items)
        body += "</ul>"
    body += "".join(f"<div>{_inline(line)}</div>" for line in other)
    return (
        f"{_STYLE}<div class='v6nb-card v6nb-warning' role='alert' "
        "style='border-left:4px solid #ef6c00;background:#fff8e1;color:#3e2723'>"
        f"<h4>⚠ {_e(title)}</h4>{body}</div>"
    )


def provenance_html(attrs: Mapping[str, Any]) -> str:
    """Where a result came from (a frame's ``attrs``), as a small card; ``""`` when unknown.

    Examples
    --------
    >>> "task 3" in provenance_html({"task_id": 3, "image": "v6nb/summary",
    ...                              "organizations": ["Leiden"]})
    True
    """
    if not attrs or attrs.get("task_id") is None and not attrs.get("image"):
        return ""
    rows: list[tuple[str, str]] = []
    if attrs.get("task_id") is not None:
        rows.append(("task", _e(attrs["task_id"])))
    if attrs.get("image"):
        rows.append(("image", f"<code>{_e(attrs['image'])}</code>"))
    if attrs.get("method"):
        rows.append(("method", f"<code>{_e(attrs['method'])}</code>"))
    if attrs.get("organizations"):
        rows.append(("organizations", _e(", ".join(map(str, attrs["organizations"])))))
    if attrs.get("collaboration_id") is not None:
        rows.append(("collaboration", _e(attrs["collaboration_id"])))
    if attrs.get("created"):
        rows.append(("created", _e(attrs["created"])))
    withheld = attrs.get("suppressed")
    if withheld:
        if isinstance(withheld, Mapping):
            text = "; ".join(f"{k}: {v}" for k, v in withheld.items())
        else:
            text = f"{len(withheld)} cell(s): " + ", ".join(
                " × ".join("(missing)" if x != x or x is None else str(x) for x in cell)
                if isinstance(cell, list | tuple)
                else str(cell)
                for cell in withheld
            )
        rows.append(("suppressed", _e(text)))
    if attrs.get("missing"):
        rows.append(("missing counted", _e(", ".join(map(str, attrs["missing"])))))
    for note in attrs.get("notes") or []:
        rows.append(("note", _e(note)))
    label = f"task {attrs['task_id']}" if attrs.get("task_id") is not None else "result"
    return _card(f"Provenance of {_e(label)}", _fields(rows), "provenance")


def client_html(client: Client) -> str:
    """The client as a card: server, user, organization, collaborations, nodes online."""
    if not client.logged_in:
        body = _fields([("server", f"<code>{_e(client.url)}</code>"), ("user", "not logged in")])
        return _card("vantage6nb Client", body, "client")
    me = client.whoami
    rows = [
        ("server", f"<code>{_e(client.url)}</code>"),
        (
            "user",
            f"{_e(me.get('username'))} <span class='v6nb-muted'>(id {_e(me.get('id'))})</span>"
            + (" · admin" if me.get("is_admin") else ""),
        ),
        (
            "organization",
            f"{_e(me.get('organization_name'))} "
            f"<span class='v6nb-muted'>(id {_e(me.get('organization_id'))})</span>",
        ),
    ]
    parts = [_fields(rows)]
    try:
        orgs = client.organizations()
        collabs = client.collaborations()
        nodes = client.nodes()
    except V6Error as exc:  # a repr never raises
        parts.append(f"<p class='v6nb-muted'>could not list the network: {_e(exc)}</p>")
        return _card("vantage6nb Client", "".join(parts), "client")
    counts: dict[Any, dict[str, int]] = {}
    for _, node in nodes.iterrows():
        entry = counts.setdefault(node.get("collaboration_id"), {"online": 0, "offline": 0})
        entry["online" if node.get("online") else "offline"] += 1
    collab_rows = []
    for _, c in collabs.iterrows():
        n = counts.get(c["id"], {"online": 0, "offline": 0})
        collab_rows.append(
            [
                _e(c["name"]),
                _e(c["id"]),
                "yes" if c.get("encrypted") else "no",
                _e(", ".join(map(str, c.get("organizations") or []))),
                f"{_status('online')} {n['online']} &nbsp; {_status('offline')} {n['offline']}",
            ]
        )
    parts.append("<b>Collaborations</b>")
    parts.append(
        _grid(["name", "id", "encrypted", "organizations", "nodes"], collab_rows)
        if collab_rows
        else "<p class='v6nb-muted'>none</p>"
    )
    org_rows = [
        [_e(o["name"]), _e(o["id"]), f"<code>{_e(o.get('key_fingerprint') or '—')}</code>"]
        for _, o in orgs.iterrows()
    ]
    parts.append("<b>Organizations</b>")
    parts.append(_grid(["name", "id", "key fingerprint"], org_rows))
    return _card("vantage6nb Client", "".join(parts), "client")


def task_html(task: Task) -> str:
    """The task as a card: id, name, full image, method, state and each organization's run."""
    from ._frames import status_frame

    try:
        task.refresh()
    except V6Error:  # a repr never raises: the runs as last seen
        pass
    try:
        names = task.organization_names()
    except V6Error:
        names = {}
    try:
        nodes = task.node_names()
    except V6Error:
        nodes = {}
    runs = status_frame(task.runs, organization_names=names, node_names=nodes)
    created = task.created_at
    rows = [
        ("task", f"{task.id}" + (f" · {_e(task.name)}" if task.name else "")),
        ("image", f"<code>{_e(task.image)}</code>"),
        ("method", f"<code>{_e(task.method)}</code>"),
        ("collaboration", _e(task.collaboration_id)),
        ("status", _status(task.state)),
    ]
    if created is not None:
        rows.append(("created", _e(created.isoformat())))
    grid = [
        [
            _e(r["organization"]),
            _e(r["node"] or "—"),
            _status(r["status"]),
            _e(r["reason"]),
            _e("" if r["started"] is None or r["started"] != r["started"] else r["started"]),
            _e("" if r["finished"] is None or r["finished"] != r["finished"] else r["finished"]),
        ]
        for _, r in runs.iterrows()
    ]
    body = _fields(rows) + _grid(
        ["organization", "node", "status", "reason", "started", "finished"], grid
    )
    return _card(f"Task {task.id}", body, "task")
