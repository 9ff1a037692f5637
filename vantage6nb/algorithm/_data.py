"""The ``@data`` decorator: hand an algorithm function its requested databases as pandas DataFrames."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar, overload

from ..common.contract import DATABASE_TYPES
from ..common.errors import ConfigurationError
from ._context import DatabaseSource, database_sources

__all__ = ["data", "load_database"]

F = TypeVar("F", bound=Callable[..., Any])

_INTEGER = re.compile(r"[+-]?[0-9]+")


def load_database(
    uri: str, type: str = "csv", *, query: str | None = None, sheet_name: str | int | None = None
) -> Any:
    """Load one database as a pandas DataFrame.

    As pandas reads it, with one exception: an integer column with a missing value whose
    integers reach 2**53 (which float64, pandas' type for it, would round) comes back as
    nullable ``Int64``, exactly.

    Parameters
    ----------
    uri
        A file path (csv, parquet, excel) or an SQLAlchemy URL (sql).
    type
        One of ``csv``, ``parquet``, ``excel``, ``sql``.
    query
        For ``sql``: an SQL query or a table name. Without one, a database holding exactly one
        table is read whole.
    sheet_name
        For ``excel``: the sheet to read (default the first).

    Examples
    --------
    >>> df = load_database("vantage6nb/demo/data/penguins.csv", "csv")  # doctest: +SKIP
    >>> df = load_database("sqlite:///data.db", "sql", query="SELECT * FROM patients")  # doctest: +SKIP
    """
    import pandas as pd

    typ = (type or "").lower()
    if typ not in DATABASE_TYPES:
        raise ConfigurationError(
            f"Unknown database type {type!r}; use one of {', '.join(DATABASE_TYPES)}.",
            errors={"type": "unknown"},
        )
    if typ == "sql":
        return _exact_integers(_load_sql(uri, query), lambda cols: _load_sql(uri, query, cols))
    if not os.path.exists(uri):
        raise ConfigurationError(
            f"Data file {uri!r} does not exist: check the database uri in the node configuration.",
            errors={"uri": "not found"},
        )
    if typ == "csv":
        return _exact_integers(pd.read_csv(uri), lambda cols: _csv_integers(uri, cols))
    if typ == "parquet":
        return _exact_integers(
            pd.read_parquet(uri),
            lambda cols: pd.read_parquet(uri, columns=cols, dtype_backend="numpy_nullable"),
        )
    return pd.read_excel(uri, sheet_name=0 if sheet_name is None else sheet_name)


def _exact_integers(df: Any, reread: Callable[[list[Any]], Any]) -> Any:
    """``df`` with integer columns that pandas read as float64 (because a value is missing) and
    whose integers a float64 cannot hold (at or above 2**53) read again exactly, as ``Int64``.

    pandas reads an integer column with a missing value as float64, which rounds such integers
    silently; only those columns are read again, so other data loads as it always did.
    """
    import numpy as np

    risky = []
    for name in df.columns:
        col = df[name]
        if col.dtype != np.float64:
            continue
        values = col.to_numpy()
        values = values[~np.isnan(values)]
        if values.size and np.abs(values).max() >= 2.0**53 and np.all(np.floor(values) == values):
            risky.append(name)
    if not risky:
        return df
    exact = reread(risky)
    for name in risky:
        col = exact[name] if name in exact.columns else None
        if col is not None and str(col.dtype) in ("Int64", "UInt64") and len(col) == len(df):
            df[name] = col.set_axis(df.index)
    return df


def _csv_integers(uri: str, columns: list[Any]) -> Any:
    """Columns of a CSV read as text and turned into ``Int64`` where every value is an integer."""
    import pandas as pd

    text = pd.read_csv(uri, usecols=columns, dtype=str)
    out = {}
    for name in columns:
        values = text[name]
        present = values.dropna()
        if not present.map(lambda v: bool(_INTEGER.fullmatch(v.strip()))).all():
            continue
        numbers = [None if pd.isna(v) else int(v) for v in values]
        if all(n is None or -(2**63) <= n < 2**63 for n in numbers):
            out[name] = pd.array(numbers, dtype="Int64")
    return pd.DataFrame(out)


_SQLITE_FILE = re.compile(r"^sqlite(?:\+pysqlite)?:///(.+)$")


def _only_table(where: str, tables: list[str]) -> str:
    """The one table of a database read without a query; else say to give one."""
    if len(tables) != 1:
        raise ConfigurationError(
            f"SQL database {where!r} has {len(tables)} tables; say which to read with a "
            "query (the node's database 'query' setting or a query=... argument).",
            errors={"query": "required"},
        )
    return tables[0]


def _load_sqlite(path: str, query: str | None, columns: list[Any] | None) -> Any:
    """An SQLite file read with the standard library (read-only), for images without SQLAlchemy."""
    import sqlite3

    import pandas as pd

    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigurationError(
            f"Cannot open SQLite database {path!r}: {exc}", errors={"uri": "invalid"}
        ) from exc
    try:
        if not query:
            names = conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            query = _only_table(path, [r[0] for r in names])
        exact: dict[str, Any] = {"dtype_backend": "numpy_nullable"} if columns else {}
        if query.split() == [query]:  # a bare table name
            quoted = ", ".join('"' + str(c).replace('"', '""') + '"' for c in columns or []) or "*"
            query = f'SELECT {quoted} FROM "{query.replace(chr(34), chr(34) * 2)}"'
        df = pd.read_sql_query(query, conn, **exact)
        return df[columns] if columns else df
    finally:
        conn.close()


def _load_sql(uri: str, query: str | None, columns: list[Any] | None = None) -> Any:
    import pandas as pd

    try:
        import sqlalchemy as sa
    except ImportError:
        sqlite = _SQLITE_FILE.match(uri)
        if sqlite:  # algorithm images need not carry SQLAlchemy to read an SQLite file
            return _load_sqlite(sqlite.group(1), query, columns)
        raise ConfigurationError(
            f"Reading the SQL database {uri.split('://')[0]}://… needs SQLAlchemy and its driver "
            "in the algorithm's environment (pip install sqlalchemy); only SQLite files are read "
            "without it.",
            errors={"uri": "sqlalchemy missing"},
        ) from None

    try:
        engine = sa.create_engine(uri)
    except Exception as exc:  # bad URL or missing driver
        raise ConfigurationError(
            f"Cannot open SQL database {uri!r}: {exc}", errors={"uri": "invalid"}
        ) from exc
    try:
        if not query:
            query = _only_table(uri, sa.inspect(engine).get_table_names())
        # ``columns``: read those again with nullable dtypes (integers exact despite a NULL)
        exact: dict[str, Any] = {"dtype_backend": "numpy_nullable"} if columns else {}
        with engine.connect() as conn:
            if query.split() == [query]:  # a bare table name
                df = pd.read_sql_table(query, conn, columns=columns, **exact)
            else:
                df = pd.read_sql_query(sa.text(query), conn, **exact)
        return df[columns] if columns else df
    finally:
        engine.dispose()


def _load_source(src: DatabaseSource, query: str | None) -> Any:
    if src.frame is not None:
        return src.frame.copy()
    return load_database(src.uri, src.type, query=query or src.query)


@overload
def data(n: F) -> F: ...
@overload
def data(n: int = 1) -> Callable[[F], F]: ...


def data(n: int | Callable[..., Any] = 1) -> Any:
    """Decorate an algorithm function so it receives its first ``n`` requested databases as DataFrames.

    The frames are passed as the leading positional arguments, in the order the researcher listed
    the databases. For ``sql`` databases the query comes from a ``query=...`` keyword argument of
    the call (taken out before the function is called) or from the node's ``<LABEL>_DB_PARAM_QUERY``.
    Put ``@data`` above ``@algorithm_client`` to receive ``(client, df, ...)``.

    Examples
    --------
    >>> @data(1)
    ... def column_means(df, columns=None):
    ...     return df[columns or df.select_dtypes("number").columns].mean().to_dict()
    """
    if callable(n):  # used bare: @data
        return data(1)(n)
    if not isinstance(n, int) or n < 1:
        raise ValueError("@data(n) needs a whole number of databases of at least 1")

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            sources = database_sources()
            if len(sources) < n:
                got = ", ".join(s.label for s in sources) or "none"
                raise ConfigurationError(
                    f"'{func.__name__}' needs {n} database(s) but the task requested {len(sources)} "
                    f"({got}): create the task with databases=[...] listing at least {n} label(s).",
                    errors={"databases": f"need {n}, got {len(sources)}"},
                )
            query = None
            if any(s.type == "sql" for s in sources[:n]):
                query = kwargs.pop("query", None)
            frames = [_load_source(s, query) for s in sources[:n]]
            return func(*frames, *args, **kwargs)

        wrapper.__v6nb_data__ = n  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
