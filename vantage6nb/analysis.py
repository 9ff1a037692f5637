"""Federated analyses as one-liners that return pandas: pooled summary statistics and crosstabs."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._analysis_models import cox, glm, plot_coefficients
from ._analysis_tests import chi2, correlation, kaplan_meier, plot_result, table1, ttest
from .algorithm.results import is_suppressed, is_typed_value, unwrap
from .algorithms.crosstab import crosstab_frame
from .algorithms.summary import SUMMARY_COLUMNS, summary_frame
from .client._frames import with_provenance
from .common.errors import DisclosureRefused, TaskError, TaskFailed

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, Task

__all__ = [
    "SUMMARY_COLUMNS",
    "DataWarning",
    "DisclosureWarning",
    "chi2",
    "correlation",
    "cox",
    "crosstab",
    "glm",
    "kaplan_meier",
    "plot_coefficients",
    "plot_result",
    "summary",
    "table1",
    "ttest",
]


class DisclosureWarning(UserWarning):
    """Part of a result was withheld by a node's disclosure policy; the table shows it as missing
    (NaN or ``<NA>``) and ``df.attrs["suppressed"]`` says where.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DisclosureWarning)  # a notebook that knows
    """


class DataWarning(UserWarning):
    """The nodes' data differ in a way the analysis handled exactly: a column's type harmonised
    between them (booleans counted as 0 and 1 next to integers, the labels ``1``, ``"1"`` and
    ``1.0`` counted as one category), or a node without rows. ``df.attrs["notes"]`` lists it.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", DataWarning)  # a pipeline that wants identical types
    """


SUMMARY_IMAGE = "v6nb/summary"
CROSSTAB_IMAGE = "v6nb/crosstab"


def summary(
    client: Client,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    columns: Sequence[str] | str | None = None,
    *,
    database: str = "default",
    timeout: float | None = 120,
) -> pd.DataFrame:
    """Summary statistics of numeric columns, pooled over organizations, as pandas would give them.

    One central task runs at your own organization (or the first one chosen); it sends the partial
    part to every organization and pools their aggregates. No record leaves a data station.

    Parameters
    ----------
    client : Client
        A logged-in client.
    collaboration : int or str, optional
        Id or name; None: the only collaboration of your organization.
    organizations : sequence of int or str, optional
        Ids or names; None: every organization of the collaboration.
    columns : str or sequence of str, optional
        Columns to summarise; None: every numeric column.
    database : str
        The database label each node reads.
    timeout : float, optional
        Seconds to wait for the result.

    Returns
    -------
    pandas.DataFrame
        Indexed by column name, with columns count, missing, mean, std (ddof=1), min, max;
        ``df.attrs`` holds task_id, image, organizations and created. A column a node's
        disclosure policy withheld is a row of NaN, named in ``df.attrs["suppressed"]``; min
        and max are NaN where the nodes withhold extremes, and exact Python ints (dtype object)
        where an integer extreme is beyond float64 (at or above 2**53).

    Warns
    -----
    DisclosureWarning
        When a node withheld part of the result, naming the organizations and rules.
    DataWarning
        When a column's type differed between the nodes and was harmonised exactly (booleans as
        0 and 1 next to integers, numbers stored as text), or a node has no rows; the notes are
        in ``df.attrs["notes"]`` (docs/analyses.md, "Types across stations").

    Raises
    ------
    DisclosureRefused
        When a node refused its part, or every column was withheld.
    TaskFailed
        When a column's type differs between the nodes in a way that cannot be pooled exactly
        (text or decimal commas at one, numbers at another), or a named column is not numeric:
        the message names the organization, the column, both types and what to do.

    Examples
    --------
    >>> from vantage6nb import analysis
    >>> analysis.summary(client, columns=["bill_length_mm", "body_mass_g"])  # doctest: +SKIP
                    count  missing         mean         std  min  max
    bill_length_mm    342        2    43.921930    5.459584  NaN  NaN
    body_mass_g       342        2  4201.754386  801.954536  NaN  NaN

    (min and max are NaN under the default policy: each is one record's value.)
    """
    if isinstance(columns, str):
        columns = [columns]
    task, names = _run_central(
        client,
        collaboration,
        organizations,
        image=SUMMARY_IMAGE,
        method="summary",
        kwargs={"columns": list(columns) if columns is not None else None},
        database=database,
        timeout=timeout,
        name="summary",
    )
    result = _central_result(task, "columns")
    df = summary_frame(result)
    withheld = [
        (f"column '{name}'", v) for name, v in result["columns"].items() if is_suppressed(v)
    ]
    everything = bool(result["columns"]) and len(withheld) == len(result["columns"])
    if is_suppressed(result.get("rows")):
        withheld.append(("the number of rows", result["rows"]))
    _disclose(client, task, withheld, everything=everything)
    _notes(task, df)
    return _provenance(df, task, names)


def crosstab(
    client: Client,
    row: str,
    col: str,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    *,
    dropna: bool = False,
    database: str = "default",
    timeout: float | None = 120,
) -> pd.DataFrame:
    """The pooled contingency table of two categorical columns, as ``pandas.crosstab`` gives it.

    A missing value is a category of its own (labelled NaN, last), counted and checked by the
    nodes' disclosure policies like any other, as ``pandas.crosstab(..., dropna=False)`` counts
    it. When a node refuses the table for a small cell and missing values were counted, the
    table is asked again without them (``dropna=True``, pandas' default), with a
    :class:`DataWarning` saying so.

    Parameters
    ----------
    client : Client
        A logged-in client.
    row, col : str
        The column whose values label the rows, and the one whose values label the columns.
    dropna : bool
        True leaves out the records with a missing value in ``row`` or ``col``.
    collaboration, organizations, database, timeout
        As for :func:`summary`.

    Returns
    -------
    pandas.DataFrame
        Index: the ``row`` values (named ``row``), columns: the ``col`` values (named ``col``),
        integer counts (0 for pairs never seen); ``df.attrs`` holds the provenance. A cell a
        node withheld is ``<NA>`` (the counts are then ``Int64``), listed in
        ``df.attrs["suppressed"]``; ``df.attrs["missing"]`` names the axes with a missing
        category (``"row"``, ``"col"``) and ``df.attrs["dropna"]`` whether they were left out.

    Warns
    -----
    DisclosureWarning
        When a node withheld cells, naming the organizations and rules.
    DataWarning
        When a column's type differed between the nodes (one value is one category whatever
        its type: ``1``, ``"1"`` and ``1.0``; ``True`` and ``1``), or a node has no rows; the
        notes are in ``df.attrs["notes"]``.

    Raises
    ------
    DisclosureRefused
        When a node refused its part (a small cell where the policy refuses them, too many
        levels), or every cell was withheld.

    Examples
    --------
    >>> analysis.crosstab(client, "species", "island")  # doctest: +SKIP
    island     Biscoe  Dream  Torgersen
    species
    Adelie         44     56         52
    Chinstrap       0     68          0
    Gentoo        124      0          0
    """

    def run(leave_out: bool) -> tuple[Task, list[str]]:
        # dropna is sent only when set: an older image (which always left missing out) still runs
        return _run_central(
            client,
            collaboration,
            organizations,
            image=CROSSTAB_IMAGE,
            method="crosstab",
            kwargs={"row": row, "col": col, **({"dropna": True} if leave_out else {})},
            database=database,
            timeout=timeout,
            name=f"crosstab {row} x {col}",
        )

    fallback = ""
    try:
        task, names = run(dropna)
    except DisclosureRefused as exc:
        if dropna or exc.rule != "min_count":
            raise
        # the missing category may be the small cell: the table without it (nothing was
        # released of the refused one), said in a warning and the notes
        task, names = run(True)
        dropna = True
        who = exc.organization or "a node"
        limit = "" if exc.threshold is None else f", threshold {exc.threshold}"
        fallback = (
            f"missing values of {row} and {col} are left out: counted as a category of their "
            f"own they made a cell the disclosure policy of {who} refuses (rule "
            f"{exc.rule}{limit}), so the table was asked again without them (dropna=True); it "
            "counts only the records with both values."
        )
    result = _central_result(task, "table")
    df = crosstab_frame(result, {"row": row, "col": col})
    df.attrs["dropna"] = dropna
    if fallback:
        df.attrs["notes"] = [*df.attrs.get("notes", []), fallback]
    table = result["table"]
    withheld = [
        (f"cells of {row} x {col}", v) for v in result.get("suppressed") or [] if is_suppressed(v)
    ]
    if is_suppressed(table):
        withheld.append((f"the table {row} x {col}", table))
    cells = table.get("cells") or [] if is_typed_value(table, "count_table") else []
    everything = is_suppressed(table) or (bool(cells) and all(c[-1] is None for c in cells))
    if is_suppressed(result.get("rows")):
        withheld.append(("the number of rows", result["rows"]))
    _disclose(client, task, withheld, everything=everything)
    _notes(task, df)
    return _provenance(df, task, names)


def _run_central(
    client: Client,
    collaboration: int | str | None,
    organizations: Sequence[int | str] | None,
    *,
    image: str,
    method: str,
    kwargs: dict[str, Any],
    database: str,
    timeout: float | None,
    name: str,
) -> tuple[Task, list[str]]:
    # resolved once here; task.create takes the collaboration as it is
    collab = client.collaboration(collaboration)
    org_ids = client.organization_ids(organizations, collaboration=collab)
    own = client.whoami.get("organization_id")
    members = [int(i) for i in collab.get("organization_ids") or []]
    central = own if own in members else org_ids[0]
    task = client.task.create(
        collaboration=collab,
        organizations=[central],
        image=image,
        method=method,
        kwargs={**kwargs, "organizations": org_ids},
        databases=[database],
        name=name,
    )
    parts = [i for i in org_ids if i != central]  # the central's own node: create warned already
    if parts:
        task._warn_offline(parts)  # at once, naming each organization whose node is offline
    try:
        task.wait(timeout=timeout)
    except TaskFailed as exc:
        if isinstance(exc, DisclosureRefused) or (found := _data_error(exc)) is None:
            raise
        # the central refused the data as they are (a column's type differs between the nodes,
        # a column is not numeric): its own words, not a traceback
        raise TaskFailed(
            f"Task {task.id} ({image}): {found}", errors={"task_id": task.id, **exc.errors}
        ) from exc
    names = client.organization_names(org_ids)
    return task, [names.get(i, str(i)) for i in org_ids]


# the last line of a central's traceback when it refused the data: "...ValidationError: <message>"
_ERRORS_SUFFIX = re.compile(r" \((?:\w+: [^;()]*(?:; )?)+\)$")
_DATA_ERROR = re.compile(r"^\s*\|?\s*(?:[A-Za-z_][\w.]*\.)?ValidationError: (.+)$", re.MULTILINE)


def _data_error(exc: TaskFailed) -> str | None:
    """The message of the ValidationError a central run ended with (from its log tail), if any."""
    found = _DATA_ERROR.findall(str(exc))
    # without the "(columns: x; organization: ...)" the error's str() ends with: errors has them
    return _ERRORS_SUFFIX.sub("", found[-1].strip()) if found else None


def _notes(task: Task, df: pd.DataFrame) -> None:
    """Warn about what the analysis harmonised between the nodes (``df.attrs["notes"]``)."""
    notes = df.attrs.get("notes") or []
    if notes:
        warnings.warn(
            f"Task {task.id} ({task.image}): " + " ".join(notes),
            DataWarning,
            stacklevel=3,
        )


def _central_result(task: Task, key: str) -> dict[str, Any]:
    result = unwrap(task.result())
    if not isinstance(result, dict) or key not in result:
        raise TaskError(
            f"Task {task.id} ({task.image}) returned an unexpected result "
            f"(no '{key}'): {str(result)[:200]}. Is the image a different version of the algorithm?"
        )
    return result


def _disclose(
    client: Client,
    task: Task,
    withheld: list[tuple[str, Mapping[str, Any]]],
    *,
    everything: bool,
) -> None:
    """Warn about what the nodes withheld, by organization name and rule; refuse when it is all."""
    if not withheld:
        return
    ids = list(dict.fromkeys(int(o) for _, v in withheld for o in v.get("organizations") or []))
    known = client.organization_names(ids) if ids else {}
    orgs = [known.get(i, f"organization {i}") for i in ids]
    who = " and ".join(orgs) if orgs else "a node"
    parts = []
    for what, value in withheld:
        threshold = value.get("threshold")
        limit = "" if threshold is None else f", threshold {threshold}"
        at = [known.get(int(o), f"organization {o}") for o in value.get("organizations") or []]
        parts.append(
            f"{what} (rule {value.get('rule')}{limit}" + (f", at {', '.join(at)})" if at else ")")
        )
    if everything:
        first = withheld[0][1]
        raise DisclosureRefused(
            f"Task {task.id} ({task.image}): the disclosure policy of {who} withheld the whole "
            f"result: {'; '.join(parts)}. Ask for coarser groups or more records, or ask the "
            "data owner about its disclosure policy.",
            organization=orgs[0] if orgs else None,
            rule=str(first.get("rule") or ""),
            threshold=first.get("threshold"),
            what="; ".join(parts),
        )
    warnings.warn(
        f"Task {task.id} ({task.image}): the disclosure policy of {who} withheld part of the "
        f"result: {'; '.join(parts)}. It shows as missing; df.attrs['suppressed'] says where.",
        DisclosureWarning,
        stacklevel=3,
    )


def _provenance(df: pd.DataFrame, task: Task, organizations: list[str]) -> pd.DataFrame:
    created = task.created_at
    return with_provenance(
        df,
        task_id=task.id,
        image=task.image,
        organizations=organizations,
        created=created.to_pydatetime() if created is not None else None,
        method=task.method,
        collaboration_id=task.collaboration_id,
    )
