"""NetworkView: collaborations, their organizations and nodes, online state updated live from events,
and the columns each node reports per database (names and types)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import traitlets

from ..common.events import NODE_OFFLINE, NODE_ONLINE
from ._output import ErrorOutput

__all__ = ["NetworkView"]


def _records(df: Any) -> list[dict[str, Any]]:
    return df.to_dict("records") if hasattr(df, "to_dict") else [dict(r) for r in df]


class NetworkView(widgets.VBox):
    """The network as the logged-in researcher sees it, with each node's online/offline state.

    Node states change live on the server's ``node_online`` / ``node_offline`` events; the whole
    view is re-read on :meth:`refresh` (the Refresh button) and after a reconnect.
    The ``node_status`` trait maps node id to ``"online"``/``"offline"``. Under each collaboration
    a collapsible table lists the columns its nodes report, per organization and database
    (:meth:`vantage6nb.Client.columns`; :attr:`columns` holds them as a DataFrame).

    Examples
    --------
    >>> view = NetworkView(client)  # doctest: +SKIP
    >>> view.node_status  # doctest: +SKIP
    {1: 'online', 2: 'online', 3: 'offline'}
    """

    node_status = traitlets.Dict(help="node id -> 'online' or 'offline'.")

    def __init__(self, client: Any, **kwargs: Any) -> None:
        self.client = client
        self.collaborations: list[dict[str, Any]] = []
        self.organizations: dict[int, str] = {}
        self.nodes: dict[int, dict[str, Any]] = {}
        self._columns: dict[int, Any] = {}  # collaboration id -> client.columns() frame
        self._unsubscribe: list[Callable[[], None]] = []
        self.html = widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.errors = ErrorOutput()
        super().__init__([self.html, self.refresh_button, self.errors.widget], **kwargs)
        self.add_class("v6nb-network")
        self.refresh()
        events = getattr(client, "events", None)
        if events is not None:
            with self.errors.catch("subscribing to node events"):
                self._unsubscribe += [
                    events.on(NODE_ONLINE, self._on_node_event),
                    events.on(NODE_OFFLINE, self._on_node_event),
                    events.on("reconnected", lambda _: self.refresh(), connect=False),
                ]

    def refresh(self) -> None:
        """Re-read collaborations, organizations and nodes from the server."""
        with self.errors.catch("reading the network"):
            self.organizations = {
                int(o["id"]): str(o["name"]) for o in _records(self.client.organizations())
            }
            self.collaborations = _records(self.client.collaborations())
            self.nodes = {int(n["id"]): dict(n) for n in _records(self.client.nodes())}
        self._read_columns()
        self._render()

    def _read_columns(self) -> None:
        self._columns = {}
        if not callable(getattr(self.client, "columns", None)):
            return
        with self.errors.catch("reading the reported columns"):
            for collab in self.collaborations:
                cid = int(collab["id"])
                self._columns[cid] = self.client.columns(cid)

    def _on_node_event(self, payload: Any) -> None:
        if not isinstance(payload, dict) or payload.get("node_id") is None:
            return
        node_id = int(payload["node_id"])
        node = self.nodes.setdefault(node_id, {"id": node_id})
        for key in ("name", "organization_id", "collaboration_id", "status", "last_seen"):
            if payload.get(key) is not None:
                node[key] = payload[key]
        self._render()

    def _render(self) -> None:
        self.node_status = {nid: str(n.get("status") or "offline") for nid, n in self.nodes.items()}
        parts = []
        for collab in self.collaborations:
            cid = int(collab["id"])
            enc = " 🔒 encrypted" if collab.get("encrypted") else ""
            rows = []
            for oid in collab.get("organization_ids") or []:
                oid = int(oid)
                nodes = [
                    n
                    for n in self.nodes.values()
                    if n.get("collaboration_id") == cid and n.get("organization_id") == oid
                ]
                cell = ", ".join(self._node_html(n) for n in nodes) or "<i>no node</i>"
                rows.append(
                    f"<tr><td style='padding:2px 8px'>{html.escape(self.organizations.get(oid, str(oid)))}</td>"
                    f"<td style='padding:2px 8px'>{cell}</td></tr>"
                )
            parts.append(
                f"<div class='v6nb-collaboration'><b>{html.escape(str(collab.get('name')))}</b>"
                f" <small>(collaboration {cid}){enc}</small>"
                "<table style='border-collapse:collapse'><thead><tr>"
                "<th style='text-align:left;padding:2px 8px'>organization</th>"
                "<th style='text-align:left;padding:2px 8px'>node</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>{self._columns_html(cid)}</div>"
            )
        online = sum(1 for s in self.node_status.values() if s == "online")
        summary = f"<p>{online} of {len(self.node_status)} nodes online</p>"
        self.html.value = summary + ("".join(parts) or "<i>no collaborations</i>")

    def _columns_html(self, collaboration_id: int) -> str:
        """A collapsible table: one row per organization and database, its columns and types."""
        frame = self._columns.get(collaboration_id)
        if frame is None:
            return ""
        records = _records(frame)
        if not records:
            return "<p class='v6nb-columns'><small>no columns reported</small></p>"
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in records:
            groups.setdefault((str(r["organization"]), str(r["database"])), []).append(r)
        cell = "padding:2px 8px;vertical-align:top"
        rows = "".join(
            f"<tr><td style='{cell}'>{html.escape(org)}</td><td style='{cell}'>{html.escape(db)}</td>"
            f"<td style='{cell}'>"
            + ", ".join(
                f"<code>{html.escape(str(c['column']))}</code>"
                f" <small style='color:#757575'>{html.escape(str(c['type']))}</small>"
                for c in cols
            )
            + "</td></tr>"
            for (org, db), cols in groups.items()
        )
        n_db = len(groups)
        return (
            "<details class='v6nb-columns'><summary>"
            f"Columns: {len(records)} in {n_db} database{'s' if n_db != 1 else ''}</summary>"
            "<table style='border-collapse:collapse'><thead><tr>"
            f"<th style='text-align:left;{cell}'>organization</th>"
            f"<th style='text-align:left;{cell}'>database</th>"
            f"<th style='text-align:left;{cell}'>columns (type)</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></details>"
        )

    @property
    def columns(self) -> Any:
        """The reported columns of every collaboration shown, as :meth:`Client.columns` gives
        them, with a ``collaboration_id`` column in front."""
        import pandas as pd

        from ..common.columns import FRAME_COLUMNS

        frames = [f.assign(collaboration_id=cid) for cid, f in self._columns.items() if len(f)]
        names = ["collaboration_id", *FRAME_COLUMNS]
        if not frames:
            return pd.DataFrame(columns=names)
        return pd.concat(frames, ignore_index=True)[names]

    @staticmethod
    def _node_html(node: dict[str, Any]) -> str:
        status = str(node.get("status") or "offline")
        colour = "#2e7d32" if status == "online" else "#9e9e9e"
        return (
            f"<span class='v6nb-node' data-status='{status}'>"
            f"<span style='color:{colour}'>●</span> {html.escape(str(node.get('name') or node.get('id')))}"
            f" <small>{status}</small></span>"
        )

    @property
    def dataframe(self) -> Any:
        """The nodes as a DataFrame with their current status."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "node": n.get("name"),
                    "organization": self.organizations.get(int(n.get("organization_id") or 0), ""),
                    "collaboration_id": n.get("collaboration_id"),
                    "status": n.get("status"),
                }
                for n in self.nodes.values()
            ],
            columns=["node", "organization", "collaboration_id", "status"],
        )

    def close(self) -> None:
        """Stop listening to events and close the widget."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        super().close()
