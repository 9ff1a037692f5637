"""Check a task against its algorithm's store metadata and the reported columns before it is sent."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..common import store_metadata as sm
from ..common.errors import V6Error, ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from ._session import Session

__all__ = [
    "TaskCheckFailed",
    "before_send",
    "check_arguments",
    "check_columns",
    "check_method",
    "check_task",
]


class TaskCheckFailed(ValidationError):
    """A task refused before it was sent: its message names each bad value, a close match and
    the valid choices; :attr:`errors` maps each bad argument (or ``method``) to its reason."""

    def __str__(self) -> str:  # the message already says it all; errors are for programs
        return self.msg


def _close(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not found:  # a case slip ("Species") is close whatever its length
        found = [c for c in choices if c.lower() == word.lower()][:1]
    return found[0] if found else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    match = _close(word, choices)
    return f"; did you mean '{match}'?" if match else "."


def _listing(names: Iterable[str], limit: int = 25) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _where(meta: sm.AlgorithmMetadata) -> str:
    return f"'{meta.name}' ({meta.image})" if meta.name and meta.name != meta.image else meta.image


def check_method(meta: sm.AlgorithmMetadata, method: str) -> sm.Function:
    """The function ``method`` names; raises ValidationError with a close match and the choices.

    Any declared function may be named (the node's policy decides about federated parts); the
    choices offered are the entry points.

    Examples
    --------
    >>> meta = sm.AlgorithmMetadata("avg", "me/avg", functions=(sm.Function("avg", "central"),))
    >>> check_method(meta, "avgg")
    Traceback (most recent call last):
    ...
    vantage6nb.client._validate.TaskCheckFailed: Algorithm 'avg' (me/avg) has no method 'avgg'; did you mean 'avg'? Choose one of: avg.
    """
    found = meta.function(method)
    if found is not None:
        return found
    entry = [f.name for f in meta.entry_points]
    others = [f.name for f in meta.functions if f.name not in entry]
    hint = _did_you_mean(method, [f.name for f in meta.functions])
    text = (
        f"Algorithm {_where(meta)} has no method '{method}'{hint} Choose one of: {_listing(entry)}."
    )
    if others:
        text += f" (Its federated parts, which those run for you: {_listing(others)}.)"
    raise TaskCheckFailed(
        text, errors={"method": method, "choices": entry, "suggestion": _close(method, entry)}
    )


def check_arguments(
    function: sm.Function, kwargs: Mapping[str, Any], *, positional: int = 0
) -> list[tuple[str, str]]:
    """Problems with the keyword arguments: ``(argument, readable reason)`` pairs (empty: fine).

    Unknown names (with a close match and the valid names), missing required arguments (the
    first ``positional`` are given by position) and values that do not fit the store type.

    Examples
    --------
    >>> f = sm.Function("avg", "central", arguments=(sm.Argument("column", "column"),
    ...     sm.Argument("ddof", "integer", has_default=True, default=1)))
    >>> check_arguments(f, {"colum": "age", "ddof": "1"})  # doctest: +NORMALIZE_WHITESPACE
    [('colum', "'avg' has no argument 'colum'; did you mean 'column'? Its arguments: column, ddof."),
     ('ddof', "argument 'ddof' (integer): expected an integer, got str '1'.")]
    """
    names = [a.name for a in function.arguments]
    problems: list[tuple[str, str]] = []
    for key in kwargs:
        if function.argument(key) is None and not function.any_arguments:
            problems.append(
                (
                    key,
                    f"'{function.name}' has no argument '{key}'{_did_you_mean(key, names)} "
                    f"Its arguments: {_listing(names) or 'none'}.",
                )
            )
    # a required argument a typo'd name stands for is not reported twice
    meant = {_close(k, names) for k in kwargs if function.argument(k) is None}
    for i, arg in enumerate(function.arguments):
        if arg.required and arg.name not in kwargs and i >= positional and arg.name not in meant:
            problems.append(
                (arg.name, f"argument '{arg.name}' ({arg.type}) is required: give a value.")
            )
        elif arg.name in kwargs:
            reason = sm.check_value(arg, kwargs[arg.name])
            if reason:
                problems.append((arg.name, f"argument '{arg.name}' ({arg.type}): {reason}."))
    return problems


def _column_values(function: sm.Function, kwargs: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for arg in function.arguments:
        value = kwargs.get(arg.name)
        if arg.type not in sm.COLUMN_TYPES or value is None:
            continue
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            out += [(arg.name, v) for v in items if isinstance(v, str) and v]
    return out


def check_columns(
    function: sm.Function,
    kwargs: Mapping[str, Any],
    columns: pd.DataFrame | None,
    *,
    organizations: Sequence[int] | None = None,
    databases: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """Problems with the column names in ``kwargs`` against what the nodes reported.

    ``columns`` is :meth:`Client.columns`'s frame (``organization_id, organization, database,
    column, type``). Only organizations in ``organizations`` (None: all) and the ``databases``
    labels (None: all) count; organizations that reported nothing are not judged. A column
    missing everywhere is named with a close match and the valid columns; one missing at some
    organizations names those.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"organization_id": [1, 1], "organization": ["Leiden"] * 2,
    ...     "database": ["default"] * 2, "column": ["age", "sex"], "type": ["integer", "string"]})
    >>> f = sm.Function("avg", "central", arguments=(sm.Argument("column", "column"),))
    >>> check_columns(f, {"column": "agee"}, frame)
    [('column', "column 'agee' (argument 'column') is not in the data; did you mean 'age'? Columns: age, sex.")]
    """
    wanted = _column_values(function, kwargs)
    if columns is None or len(columns) == 0 or not wanted:
        return []
    rows = columns
    if databases:
        rows = rows[rows["database"].isin(list(databases))]
    if organizations is not None:
        rows = rows[rows["organization_id"].isin([int(o) for o in organizations])]
    if len(rows) == 0:
        return []
    names = dict(
        zip(rows["organization_id"].astype(int), rows["organization"].astype(str), strict=True)
    )
    have = {
        int(org): set(group["column"]) for org, group in rows.groupby("organization_id", sort=False)
    }
    every = list(dict.fromkeys(rows["column"]))
    problems = []
    for arg, col in dict.fromkeys(wanted):
        missing = sorted(org for org, cols in have.items() if col not in cols)
        if not missing:
            continue
        if len(missing) == len(have):
            problems.append(
                (
                    arg,
                    f"column '{col}' (argument '{arg}') is not in the data"
                    f"{_did_you_mean(col, every)} Columns: {_listing(every)}.",
                )
            )
        else:
            at = ", ".join(names.get(o, str(o)) for o in missing)
            present = ", ".join(names.get(o, str(o)) for o in have if o not in missing)
            hint = _did_you_mean(col, sorted(set().union(*(have[o] for o in missing))))
            problems.append(
                (
                    arg,
                    f"column '{col}' (argument '{arg}') is missing at {at} (it is at {present}){hint}",
                )
            )
    return problems


def check_task(
    meta: sm.AlgorithmMetadata,
    method: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    *,
    columns: pd.DataFrame | None = None,
    organizations: Sequence[int] | None = None,
    databases: Sequence[str] | None = None,
) -> None:
    """Raise one ValidationError naming every problem of a task before it is sent.

    ``organizations`` are the organizations whose data the task reads (for a central method:
    its ``organizations`` argument, or None for the whole collaboration).

    Examples
    --------
    >>> meta = sm.AlgorithmMetadata("avg", "me/avg", functions=(sm.Function("avg", "central",
    ...     arguments=(sm.Argument("column", "column"),)),))
    >>> check_task(meta, "avg", [], {"column": "age"})
    >>> check_task(meta, "avg", [], {"column": 3})
    Traceback (most recent call last):
    ...
    vantage6nb.client._validate.TaskCheckFailed: Not sent: the task for me/avg (method 'avg') has a problem: argument 'column' (column): expected a column name (text), got int 3.
    """
    function = check_method(meta, method)
    kw = dict(kwargs or {})
    problems = check_arguments(function, kw, positional=len(args or ()))
    problems += check_columns(
        function, kw, columns, organizations=organizations, databases=databases
    )
    if not problems:
        return
    head = f"Not sent: the task for {meta.image} (method '{method}')"
    if len(problems) == 1:
        text = f"{head} has a problem: {problems[0][1]}"
    else:
        text = f"{head} has {len(problems)} problems:\n" + "\n".join(
            f"- {reason}" for _, reason in problems
        )
    errors: dict[str, Any] = {}
    for name, reason in problems:
        errors.setdefault(name, reason)
    raise TaskCheckFailed(text, errors=errors)


def _labels(databases: Any) -> list[str] | None:
    if databases is None:
        return None
    items = [databases] if isinstance(databases, str | Mapping) else list(databases)
    out = []
    for d in items:
        label = d.get("label") if isinstance(d, Mapping) else d
        if isinstance(label, str):
            out.append(label)
    return out or None


def before_send(
    session: Session,
    collaboration: Mapping[str, Any],
    organization_ids: Sequence[int],
    image: str,
    method: str,
    args: Any,
    kwargs: Any,
    databases: Any,
) -> None:
    """The check ``client.task.create`` makes: nothing for images without store metadata.

    Columns are read from the server (``GET /column``) only when the method has column
    arguments that were given; a server or node that reports none skips that check.
    """
    from ..catalog import find_algorithm

    algo = find_algorithm(image)
    if algo is None or algo.metadata is None:
        return
    if not isinstance(kwargs, Mapping) or not isinstance(args, list | tuple | type(None)):
        return  # create() explains those itself
    meta = algo.metadata
    function = check_method(meta, method)
    frame = None
    if _column_values(function, kwargs):
        from ._columns import columns as read_columns

        try:
            frame = read_columns(
                session.transport, session.directory, int(collaboration["id"]), database=None
            )
        except V6Error:  # an older server without the endpoint: no column check
            frame = None
    orgs: Sequence[int] | None = list(organization_ids)
    if function.type == "central":
        picked = kwargs.get("organizations")
        orgs = (
            [int(o) for o in picked]
            if isinstance(picked, list | tuple) and all(isinstance(o, int) for o in picked)
            else None
        )
    check_task(
        meta,
        method,
        args,
        kwargs,
        columns=frame,
        organizations=orgs,
        databases=_labels(databases),
    )
