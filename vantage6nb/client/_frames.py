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
    "export",
    "frame",
    "read_export",
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


# -- export with provenance ------------------------------------------------------------------------
PROVENANCE_SUFFIX = ".provenance.json"
_EXPORT_FORMATS = ("csv", "parquet")


def _json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it: NaN/NA as null, timestamps as ISO text, tuples as lists."""
    import math

    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _label_text(label: Any) -> str:
    if isinstance(label, tuple):
        return " / ".join(_label_text(v) for v in label)
    return "(missing)" if _json_safe(label) is None else str(label)


def _axis_spec(index: pd.Index) -> dict[str, Any]:
    return {
        "names": [_json_safe(n) for n in index.names],
        "labels": [_json_safe(v) for v in index.tolist()],
        "dtype": str(index.dtype),
        "multi": isinstance(index, pd.MultiIndex),
    }


def _axis_from(spec: Mapping[str, Any]) -> pd.Index:
    labels = [float("nan") if v is None else v for v in spec["labels"]]
    if spec.get("multi"):
        tuples = [tuple(float("nan") if x is None else x for x in v) for v in spec["labels"]]
        return pd.MultiIndex.from_tuples(tuples, names=spec["names"])
    dtype = spec.get("dtype")
    try:
        return pd.Index(labels, name=spec["names"][0], dtype=dtype)
    except (TypeError, ValueError):  # a dtype this pandas cannot rebuild from JSON values
        return pd.Index(labels, name=spec["names"][0], dtype=object)


def export(
    df: pd.DataFrame, path: str | Any, *, format: str | None = None, provenance: bool = True
) -> Any:
    """Write a result to CSV or Parquet, with its provenance in a sidecar JSON file.

    The data file holds the table as any tool reads it (the index as its first columns, column
    labels as text, missing values empty in CSV); ``<file>.provenance.json`` beside it holds
    ``df.attrs`` (task id, image, organizations, creation time, suppressed cells, notes), the
    exact row and column labels and dtypes, when it was written, by which vantage6nb, and the
    SHA-256 of the data file, so :func:`read_export` gives the same frame back. A sidecar, not
    a header comment: the CSV stays a plain CSV for every reader.

    Parameters
    ----------
    df : DataFrame
        The table, e.g. what ``analysis.crosstab`` returned.
    path : str or path
        The data file; its suffix picks the format (``.csv``, ``.parquet``) unless ``format``.
    format : {"csv", "parquet"}, optional
        Parquet needs pyarrow (``pip install pyarrow``).
    provenance : bool
        False writes the data file only.

    Returns
    -------
    pathlib.Path
        The data file written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> df = with_provenance(pd.DataFrame({"n": [1, 2]}), task_id=3, image="v6nb/crosstab",
    ...                      organizations=["Leiden"])
    >>> out = export(df, pathlib.Path(tempfile.mkdtemp()) / "t3.csv")
    >>> read_export(out).attrs["task_id"], out.with_name("t3.csv.provenance.json").exists()
    (3, True)
    """
    import hashlib
    import json
    from pathlib import Path

    target = Path(path)
    kind = (format or target.suffix.lstrip(".")).lower()
    if kind == "pq":
        kind = "parquet"
    if kind not in _EXPORT_FORMATS:
        raise ValueError(
            f"Cannot export to {target.name!r}: give a .csv or .parquet file name, or "
            "format='csv' / format='parquet'."
        )
    index_cols = [f"__index_{i}__" for i in range(df.index.nlevels)]
    flat = pd.DataFrame(df).copy()
    flat.columns = [_label_text(c) for c in flat.columns]
    seen: dict[str, int] = {}
    for i, name in enumerate(list(flat.columns)):  # two labels with one text: keep both
        if name in seen:
            flat.columns.values[i] = f"{name}.{i}"
        seen[name] = i
    names = [n if n is not None else index_cols[i] for i, n in enumerate(df.index.names)]
    shown = [str(n) if str(n) not in flat.columns else index_cols[i] for i, n in enumerate(names)]
    flat.index = df.index.set_names(shown)
    flat = flat.reset_index()
    if df.index.nlevels == 1 and df.index.dtype == object:  # text, so Parquet takes it
        flat[shown[0]] = [_label_text(v) for v in df.index]
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        flat.to_csv(target, index=False)
    else:
        try:
            flat.to_parquet(target, index=False)
        except ImportError as exc:
            raise ImportError(
                "Parquet export needs pyarrow: pip install pyarrow (or export to .csv)."
            ) from exc
    if not provenance:
        return target
    from .. import __version__

    sidecar = {
        "file": target.name,
        "format": kind,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "written": datetime.now(timezone.utc).isoformat(),
        "written_by": f"vantage6nb {__version__}",
        "provenance": _json_safe(dict(df.attrs)),
        "index": _axis_spec(df.index),
        "columns": _axis_spec(df.columns),
        "index_columns": shown,
        "data_columns": [str(c) for c in flat.columns[len(shown) :]],
        "dtypes": [str(t) for t in df.dtypes],
    }
    target.with_name(target.name + PROVENANCE_SUFFIX).write_text(
        json.dumps(sidecar, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return target


def read_export(path: str | Any) -> pd.DataFrame:
    """Read a file :func:`export` wrote: the same frame, its ``attrs`` from the sidecar.

    The sidecar's SHA-256 is checked: a data file changed since it was written raises
    ``ValueError``. Without a sidecar the file is read as it is (no provenance). ``attrs`` come
    back as JSON holds them (tuples as lists, times as ISO text).

    Examples
    --------
    >>> read_export("task-12-crosstab.csv").attrs["task_id"]  # doctest: +SKIP
    12
    """
    import hashlib
    import json
    from pathlib import Path

    target = Path(path)
    side = target.with_name(target.name + PROVENANCE_SUFFIX)
    parquet = target.suffix.lower() in (".parquet", ".pq")
    if not side.exists():
        return pd.read_parquet(target) if parquet else pd.read_csv(target)
    meta = json.loads(side.read_text(encoding="utf-8"))
    if hashlib.sha256(target.read_bytes()).hexdigest() != meta.get("sha256"):
        raise ValueError(
            f"{target.name} changed after it was exported (its SHA-256 differs from the one in "
            f"{side.name}): its provenance no longer describes it. Export the result again."
        )
    kind = meta.get("format")
    flat = pd.read_parquet(target) if kind == "parquet" else pd.read_csv(target)
    data = flat[meta["data_columns"]]
    df = pd.DataFrame(data.to_numpy(dtype=object), columns=_axis_from(meta["columns"]))
    for i, dtype in enumerate(meta["dtypes"]):
        column = data.iloc[:, i]
        try:
            df.isetitem(i, column.astype(dtype) if dtype != "object" else column.astype(object))
        except (TypeError, ValueError):  # e.g. a mixed column: as read
            df.isetitem(i, column)
    df.index = _axis_from(meta["index"])
    df.attrs.update(meta.get("provenance") or {})
    return df
