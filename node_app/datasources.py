"""Data sources by label: resolve a task's requested databases; read their schemas (never values)."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vantage6nb.common.columns import MAX_COLUMNS, MAX_LABEL, MAX_NAME

from .config import DatabaseConfig
from .runtimes.base import DatabaseMount

__all__ = [
    "SAMPLE_ROWS",
    "DataSourceError",
    "column_report",
    "pandas_column_type",
    "read_columns",
    "requested_labels",
    "resolve_databases",
    "source_signature",
]

log = logging.getLogger(__name__)

SAMPLE_ROWS = 1000  # rows a CSV, Excel sheet or SQL query is typed from (never reported)


class DataSourceError(Exception):
    """A requested database cannot be handed to the algorithm; the message is the run's reason."""


def requested_labels(databases: Iterable[Any] | None) -> list[str]:
    """Labels from a task's ``databases`` field (``[{"label": ...}]`` or plain strings), in order.

    Examples
    --------
    >>> requested_labels([{"label": "default"}, "extra"])
    ['default', 'extra']
    >>> requested_labels(None)
    []
    """
    out: list[str] = []
    for item in databases or []:
        label = item.get("label") if isinstance(item, dict) else item
        if isinstance(label, str) and label and label not in out:
            out.append(label)
    return out


def resolve_databases(
    labels: Sequence[str], configured: Sequence[DatabaseConfig]
) -> list[DatabaseMount]:
    """Map labels to :class:`DatabaseMount`; raise :class:`DataSourceError` with a clear reason.

    Files must exist; SQL URLs are passed through (the algorithm connects). No labels requested:
    nothing is mounted (a central part often needs no data).

    Examples
    --------
    >>> resolve_databases([], [])
    []
    """
    by_label = {d.label: d for d in configured}
    mounts: list[DatabaseMount] = []
    for label in labels:
        db = by_label.get(label)
        if db is None:
            known = ", ".join(f"'{k}'" for k in by_label) or "none"
            raise DataSourceError(
                f"database '{label}' not found: this node has no database with that label "
                f"(configured: {known}; check `databases` in node.yaml)"
            )
        if db.type != "sql":
            path = Path(db.uri)
            if not path.exists():
                raise DataSourceError(
                    f"database '{label}' not found: {path} does not exist (check `databases` in node.yaml)"
                )
            if not path.is_file():
                raise DataSourceError(
                    f"database '{label}' not usable: {path} is not a file (check `databases` in node.yaml)"
                )
        elif db.uri.startswith("sqlite:///") and db.uri != "sqlite:///:memory:":
            path = Path(db.uri[len("sqlite:///") :])
            if not path.is_file():
                raise DataSourceError(
                    f"database '{label}' not found: {path} does not exist (check `databases` in node.yaml)"
                )
        mounts.append(DatabaseMount(label=label, uri=db.uri, type=db.type, query=db.query))
    return mounts


# -- schemas: column names and types, never values ---------------------------------------------------


def pandas_column_type(series: Any) -> str:
    """The report type of a pandas column (a sample's): see docs/api.md, "Columns".

    Text columns whose every present value reads as an ISO 8601 date or time are ``datetime``.

    Examples
    --------
    >>> import pandas as pd
    >>> [pandas_column_type(pd.Series(v)) for v in ([1, 2], [1.5], [True], ["a"], ["2024-01-31"])]
    ['integer', 'float', 'boolean', 'string', 'datetime']
    """
    import pandas as pd
    from pandas.api import types as pt

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pt.is_bool_dtype(dtype):
        return "boolean"
    if pt.is_integer_dtype(dtype):
        return "integer"
    if pt.is_float_dtype(dtype):
        return "float"
    if pt.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return "datetime"
    if pt.is_timedelta64_dtype(dtype) or pt.is_complex_dtype(dtype):
        return "unknown"
    if pt.is_string_dtype(dtype) or pt.is_object_dtype(dtype):
        present = series.dropna()
        if len(present) and all(isinstance(v, str) for v in present):
            return "datetime" if _all_iso_times(present) else "string"
        if len(present) and all(isinstance(v, bool) for v in present):
            return "boolean"
        return "string" if len(present) == 0 else "unknown"
    return "unknown"


def _all_iso_times(values: Any) -> bool:
    import pandas as pd

    if not values.str.match(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?").all():
        return False
    try:
        pd.to_datetime(values, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _arrow_type(typ: Any) -> str:
    import pyarrow as pa

    t = pa.types
    if t.is_dictionary(typ):
        return "category"
    if t.is_boolean(typ):
        return "boolean"
    if t.is_integer(typ):
        return "integer"
    if t.is_floating(typ) or t.is_decimal(typ):
        return "float"
    if t.is_timestamp(typ) or t.is_date(typ) or t.is_time(typ):
        return "datetime"
    if t.is_string(typ) or t.is_large_string(typ):
        return "string"
    return "unknown"


def _sql_type(typ: Any) -> str:
    import sqlalchemy as sa

    checks = (
        (sa.Boolean, "boolean"),
        (sa.Enum, "category"),
        (sa.Integer, "integer"),
        (sa.Float, "float"),
        (sa.Numeric, "float"),
        (sa.DateTime, "datetime"),
        (sa.Date, "datetime"),
        (sa.Time, "datetime"),
        (sa.String, "string"),
    )
    return next((name for cls, name in checks if isinstance(typ, cls)), "unknown")


def _frame_columns(df: Any) -> list[tuple[str, str]]:
    return [(str(name), pandas_column_type(df[name])) for name in df.columns]


def _sql_columns(db: DatabaseConfig) -> list[tuple[str, str]]:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(db.uri)
    try:
        query = db.query
        if not query:
            tables = sa.inspect(engine).get_table_names()
            if len(tables) != 1:
                raise DataSourceError(f"{len(tables)} tables and no `query` (set one in node.yaml)")
            query = tables[0]
        if query.split() == [query]:  # a table: its declared types, no rows read
            cols = sa.inspect(engine).get_columns(query)
            return [(str(c["name"]), _sql_type(c["type"])) for c in cols]
        sample = sa.text(f"SELECT * FROM ({query}) AS v6nb_sample LIMIT {SAMPLE_ROWS}")
        with engine.connect() as conn:
            return _frame_columns(pd.read_sql_query(sample, conn))
    finally:
        engine.dispose()


def read_columns(db: DatabaseConfig) -> list[tuple[str, str]]:
    """``(name, type)`` of each column of ``db``, in the source's order; reads no more than a
    bounded sample (:data:`SAMPLE_ROWS`) and returns no value. Raises on an unreadable source.

    CSV, Excel and SQL queries are typed from their first rows as pandas reads them; parquet
    from its schema and SQL tables from their declared types (no rows read).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
    >>> _ = open(path, "w").write("age,name\\n41,Ann\\n")
    >>> read_columns(DatabaseConfig("default", path, "csv"))
    [('age', 'integer'), ('name', 'string')]
    """
    import pandas as pd

    if db.type == "csv":
        return _frame_columns(pd.read_csv(db.uri, nrows=SAMPLE_ROWS))
    if db.type == "parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(db.uri)
        meta = (schema.pandas_metadata or {}).get("index_columns") or []
        return [(f.name, _arrow_type(f.type)) for f in schema if f.name not in meta]
    if db.type == "excel":
        return _frame_columns(pd.read_excel(db.uri, sheet_name=0, nrows=SAMPLE_ROWS))
    if db.type == "sql":
        return _sql_columns(db)
    raise DataSourceError(f"unknown database type {db.type!r}")


def source_signature(db: DatabaseConfig) -> tuple[int, int] | None:
    """What changes when a file source changes (mtime in ns, size); None when there is no file
    to watch (an SQL server: read again each time) or it is missing.

    Examples
    --------
    >>> source_signature(DatabaseConfig("db", "/no/such/file.csv", "csv")) is None
    True
    """
    if db.type == "sql":
        if not db.uri.startswith("sqlite:///") or db.uri == "sqlite:///:memory:":
            return None
        path = Path(db.uri[len("sqlite:///") :])
    else:
        path = Path(db.uri)
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _hidden(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def column_report(databases: Sequence[DatabaseConfig]) -> list[dict[str, Any]]:
    """The ``databases`` of this node's column report: per label, its columns' names and types,
    without the ``hide_columns`` of each database. An unreadable source is left out (logged).

    Examples
    --------
    >>> column_report([DatabaseConfig("gone", "/no/such/file.csv", "csv")])
    []
    """
    out: list[dict[str, Any]] = []
    for db in databases:
        if len(db.label) > MAX_LABEL:
            log.warning("column report: label %.40r… is too long to report", db.label)
            continue
        try:
            columns = read_columns(db)
        except Exception as exc:  # any reader error: the source is not described, the node goes on
            log.warning("column report: database '%s' not readable: %s", db.label, exc)
            continue
        kept = []
        seen: set[str] = set()
        for name, typ in columns:
            if _hidden(name, db.hide_columns) or name in seen:
                continue
            if not name.strip() or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
                log.warning("column report: a column name of '%s' cannot be reported", db.label)
                continue
            seen.add(name)
            kept.append({"name": name, "type": typ})
        if len(kept) > MAX_COLUMNS:
            log.warning(
                "column report: '%s' has %d columns; the first %d are reported",
                db.label,
                len(kept),
                MAX_COLUMNS,
            )
            kept = kept[:MAX_COLUMNS]
        out.append({"label": db.label, "columns": kept})
    return out
