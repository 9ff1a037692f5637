"""Where an algorithm's databases, environment and client come from: the node's environment, or a local run."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..common import contract
from ..common.errors import ConfigurationError

__all__ = [
    "MIN_CELL_COUNT",
    "DatabaseSource",
    "LocalContext",
    "current_local",
    "database_sources",
    "get_env",
    "local_context",
    "min_cell_count",
    "requested_labels",
]

MIN_CELL_COUNT = "V6NB_MIN_CELL_COUNT"


@dataclass(frozen=True)
class DatabaseSource:
    """One database requested for a run: a label, its URI (or an in-memory frame) and its type."""

    label: str
    uri: str
    type: str
    query: str | None = None
    frame: Any = None  # a pandas DataFrame handed over directly (local runs)


@dataclass
class LocalContext:
    """What an in-process run sees instead of the node's environment (see ``testing.LocalNetwork``)."""

    databases: list[DatabaseSource]
    client: Any
    environ: Mapping[str, str] = field(default_factory=dict)


_CURRENT: contextvars.ContextVar[LocalContext | None] = contextvars.ContextVar(
    "vantage6nb_algorithm_local", default=None
)


def current_local() -> LocalContext | None:
    """The local run in progress in this thread, or None when running under a node."""
    return _CURRENT.get()


@contextmanager
def local_context(ctx: LocalContext) -> Iterator[LocalContext]:
    """Make ``ctx`` the source of databases, environment and client for the code inside."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def get_env(name: str, default: str | None = None) -> str | None:
    """Read a contract variable, decoded (vantage6 encodes values), or from the local run's environment.

    Examples
    --------
    >>> get_env("SURELY_NOT_SET_ANYWHERE", "fallback")
    'fallback'
    """
    ctx = _CURRENT.get()
    if ctx is not None:
        return ctx.environ.get(name, default)
    try:
        return contract.read_environment(os.environ, name, default)
    except ValueError:  # set by hand next to an encoded contract: take it as it is
        return os.environ[name]


def database_sources() -> list[DatabaseSource]:
    """The databases the researcher requested for this run, in the requested order."""
    ctx = _CURRENT.get()
    if ctx is not None:
        return list(ctx.databases)
    labels = [
        x.strip() for x in (get_env(contract.USER_REQUESTED_DATABASE_LABELS) or "").split(",")
    ]
    out = []
    for label in filter(None, labels):
        uri_name, type_name = contract.database_env_names(label)
        uri = get_env(uri_name)
        if uri is None:
            raise ConfigurationError(
                f"Database '{label}' was requested but the node set no {uri_name}: "
                "check that the node configuration has a database with this label.",
                errors={"databases": label},
            )
        typ = (get_env(type_name) or _type_from_uri(uri)).lower()
        # the node passes database parameters the vantage6 way: <LABEL>_DB_PARAM_<KEY>
        query = get_env(f"{label.upper()}_DB_PARAM_QUERY") or get_env(
            f"{label.upper()}_DATABASE_QUERY"
        )
        out.append(DatabaseSource(label=label, uri=uri, type=typ, query=query))
    return out


def requested_labels() -> list[str]:
    """Labels of the databases this run was given, in order (what subtasks inherit by default)."""
    ctx = _CURRENT.get()
    if ctx is not None:
        return [s.label for s in ctx.databases]
    raw = get_env(contract.USER_REQUESTED_DATABASE_LABELS) or ""
    return [x.strip() for x in raw.split(",") if x.strip()]


def _type_from_uri(uri: str) -> str:
    lower = uri.lower()
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith((".xlsx", ".xls")):
        return "excel"
    if "://" in lower:
        return "sql"
    return "csv"


def min_cell_count() -> int:
    """The small-cell threshold in the run's environment (``V6NB_MIN_CELL_COUNT``); 0 when unset.

    Legacy, for vantage6-style algorithms that return plain JSON and check their own counts (an
    operator can set the variable through the policy's ``disclosure.algorithm_env``). Algorithms
    that return typed values (:mod:`vantage6nb.algorithm.results`) need no self-check: the node
    checks every value against its disclosure policy before anything leaves it.

    Examples
    --------
    >>> min_cell_count() >= 0
    True
    """
    raw = get_env(MIN_CELL_COUNT)
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(
            f"{MIN_CELL_COUNT} must be a whole number, got {raw!r}: fix the node configuration.",
            errors={MIN_CELL_COUNT: "expected int"},
        ) from exc
    return max(value, 0)
