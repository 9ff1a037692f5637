"""The one place where server JSON becomes pandas: list endpoints, run status, provenance."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

__all__ = [
    "COLUMNS",
    "STATUS_COLUMNS",
    "FullTextFrame",
    "FullTextSeries",
    "frame",
    "status_frame",
    "to_timestamp",
    "with_provenance",
]

# Column order per resource; `id` is always a column (not the index) so frames merge easily.
COLUMNS: dict[str, list[str]] = {
    "audit": [
        "id",
        "time",
        "action",
        "outcome",
        "actor_type",
        "actor_id",
        "actor_org_id",
        "address",
        "target",
        "detail",
    ],
    "organization": ["id", "name", "domain", "key_fingerprint", "public_key"],
    "role": ["id", "name", "description", "organization_id", "is_default", "rule_names", "rules"],
    "rule": ["id", "name", "resource", "operation", "scope"],
    "collaboration": ["id", "name", "encrypted", "organization_ids", "organizations"],
    "user": ["id", "username", "organization_id", "organization", "is_admin", "email"],
    "node": [
        "id",
        "name",
        "organization_id",
        "organization",
        "collaboration_id",
        "collaboration",
        "status",
        "online",
        "last_seen",
    ],
    "task": [
        "id",
        "name",
        "status",
        "image",
        "method",
        "collaboration_id",
        "init_org_id",
        "init_user_id",
        "parent_id",
        "job_id",
        "created_at",
        "description",
    ],
}
STATUS_COLUMNS = [
    "organization",
    "node",
    "status",
    "reason",
    "started",
    "finished",
    "organization_id",
    "node_id",
    "run_id",
    "node_status",
]
_TIME_COLUMNS = ("last_seen", "created_at", "started", "finished", "assigned_at", "time")


def to_timestamp(value: Any) -> pd.Timestamp | None:
    """An ISO 8601 string from the server as a UTC ``pandas.Timestamp`` (None stays None).

    Examples
    --------
    >>> to_timestamp("2024-05-01T10:02:11+00:00")
    Timestamp('2024-05-01 10:02:11+0000', tz='UTC')
    >>> to_timestamp(None) is None
    True
    """
    if value is None or value == "":
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _wide() -> Any:
    """Display options under which a key fingerprint (50 characters) is not cut."""
    width = pd.get_option("display.max_colwidth")
    return pd.option_context("display.max_colwidth", None if width is None else max(width, 100))


class FullTextFrame(pd.DataFrame):
    """A DataFrame whose text cells are shown whole: key fingerprints are compared by eye, so
    pandas' ``display.max_colwidth`` (50) may not cut them. Frames and columns made from it stay so.

    Examples
    --------
    >>> df = FullTextFrame({"key_fingerprint": ["SHA256:" + "a" * 43]})
    >>> "..." in repr(df), "..." in repr(df["key_fingerprint"]), "..." in repr(pd.DataFrame(df))
    (False, False, True)
    """

    @property
    def _constructor(self) -> type[FullTextFrame]:
        return FullTextFrame

    @property
    def _constructor_sliced(self) -> type[FullTextSeries]:
        return FullTextSeries

    def __repr__(self) -> str:
        with _wide():
            return super().__repr__()

    def _repr_html_(self) -> str | None:
        with _wide():
            return super()._repr_html_()


class FullTextSeries(pd.Series):
    """A column of a :class:`FullTextFrame`, shown whole as well."""

    @property
    def _constructor(self) -> type[FullTextSeries]:
        return FullTextSeries

    @property
    def _constructor_expanddim(self) -> type[FullTextFrame]:
        return FullTextFrame

    def __repr__(self) -> str:
        with _wide():
            return super().__repr__()


# resources whose frames hold key fingerprints
_FULL_TEXT = frozenset({"organization"})


def frame(
    kind: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    names: Mapping[str, Mapping[int, str]] | None = None,
) -> pd.DataFrame:
    """A DataFrame for one list endpoint, with a fixed column order and readable extra columns.

    ``names`` maps "organization"/"collaboration" to ``{id: name}`` so that nodes, users and
    collaborations show names next to ids. Unknown extra fields from the server are kept, last.

    Examples
    --------
    >>> frame("organization", [{"id": 1, "name": "Leiden", "domain": None}])[["id", "name"]]
       id    name
    0   1  Leiden
    """
    names = names or {}
    orgs = names.get("organization", {})
    collabs = names.get("collaboration", {})
    records = []
    for row in rows:
        rec = dict(row)
        if kind in ("node", "user"):
            rec["organization"] = orgs.get(rec.get("organization_id"))  # type: ignore[arg-type]
        if kind == "node":
            rec["collaboration"] = collabs.get(rec.get("collaboration_id"))  # type: ignore[arg-type]
            rec["online"] = rec.get("status") == "online"
        if kind == "collaboration":
            rec["organizations"] = [orgs.get(i, str(i)) for i in rec.get("organization_ids") or []]
        records.append(rec)
    columns = list(COLUMNS[kind])
    extra = sorted({k for rec in records for k in rec} - set(columns))
    df = (
        pd.DataFrame.from_records(records, columns=columns + extra)
        if records
        else pd.DataFrame(columns=columns)
    )
    for col in _TIME_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    if "id" in df.columns and len(df):
        df["id"] = df["id"].astype("int64")
    return FullTextFrame(df) if kind in _FULL_TEXT else df


def status_frame(
    runs: Sequence[Mapping[str, Any]],
    *,
    organization_names: Mapping[int, str],
    node_names: Mapping[int, str],
) -> pd.DataFrame:
    """One row per run: organization, node, status, reason, started, finished, then the ids.

    Examples
    --------
    >>> run = {"id": 7, "organization_id": 1, "node_id": None, "status": "pending", "reason": None}
    >>> status_frame([run], organization_names={1: "Leiden"}, node_names={})[["organization", "status"]]
      organization   status
    0       Leiden  pending
    """
    rows = []
    for run in runs:
        org_id = run.get("organization_id")
        node_id = run.get("node_id")
        rows.append(
            {
                "organization": organization_names.get(org_id, f"organization {org_id}"),  # type: ignore[arg-type]
                "node": node_names.get(node_id) if node_id is not None else None,
                "status": str(run.get("status")),
                "reason": run.get("reason") or "",
                "started": to_timestamp(run.get("started_at")),
                "finished": to_timestamp(run.get("finished_at")),
                "organization_id": org_id,
                "node_id": node_id,
                "run_id": run.get("id", run.get("run_id")),
                "node_status": run.get("node_status"),
            }
        )
    df = pd.DataFrame.from_records(rows, columns=STATUS_COLUMNS)
    for col in ("started", "finished"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def with_provenance(
    df: pd.DataFrame,
    *,
    task_id: int,
    image: str,
    organizations: Sequence[str],
    created: datetime | None = None,
    **extra: Any,
) -> pd.DataFrame:
    """Record where a result came from in ``df.attrs`` (task id, image, organizations, time).

    Examples
    --------
    >>> df = with_provenance(pd.DataFrame({"a": [1]}), task_id=3, image="v6nb/summary",
    ...                      organizations=["Leiden"])
    >>> df.attrs["task_id"], df.attrs["organizations"]
    (3, ['Leiden'])
    """
    df.attrs.update(
        task_id=task_id,
        image=image,
        organizations=list(organizations),
        created=(created or datetime.now(timezone.utc)).isoformat(),
        **extra,
    )
    return df
