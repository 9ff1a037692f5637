"""Federated analyses as one-liners that return pandas: pooled summary statistics and crosstabs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from .algorithms.crosstab import crosstab_frame
from .algorithms.summary import SUMMARY_COLUMNS, summary_frame
from .client._frames import with_provenance
from .common.errors import TaskError

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client, Task

__all__ = ["SUMMARY_COLUMNS", "crosstab", "summary"]

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
        ``df.attrs`` holds task_id, image, organizations and created.

    Examples
    --------
    >>> from vantage6nb import analysis
    >>> analysis.summary(client, columns=["bill_length_mm", "body_mass_g"])  # doctest: +SKIP
                    count  missing         mean         std     min     max
    bill_length_mm    342        2    43.921930    5.459584    32.1    59.6
    body_mass_g       342        2  4201.754386  801.954536  2700.0  6300.0
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
    df = summary_frame(_central_result(task, "columns"))
    return _provenance(df, task, names)


def crosstab(
    client: Client,
    row: str,
    col: str,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    *,
    database: str = "default",
    timeout: float | None = 120,
) -> pd.DataFrame:
    """The pooled contingency table of two categorical columns, as ``pandas.crosstab`` gives it.

    Parameters
    ----------
    client : Client
        A logged-in client.
    row, col : str
        The column whose values label the rows, and the one whose values label the columns.
    collaboration, organizations, database, timeout
        As for :func:`summary`.

    Returns
    -------
    pandas.DataFrame
        Index: the ``row`` values (named ``row``), columns: the ``col`` values (named ``col``),
        integer counts (0 for pairs never seen); ``df.attrs`` holds the provenance.

    Examples
    --------
    >>> analysis.crosstab(client, "species", "island")  # doctest: +SKIP
    island     Biscoe  Dream  Torgersen
    species
    Adelie         44     56         52
    Chinstrap       0     68          0
    Gentoo        124      0          0
    """
    task, names = _run_central(
        client,
        collaboration,
        organizations,
        image=CROSSTAB_IMAGE,
        method="crosstab",
        kwargs={"row": row, "col": col},
        database=database,
        timeout=timeout,
        name=f"crosstab {row} x {col}",
    )
    df = crosstab_frame(_central_result(task, "table"), {"row": row, "col": col})
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
    task.wait(timeout=timeout)
    names = client.organization_names(org_ids)
    return task, [names.get(i, str(i)) for i in org_ids]


def _central_result(task: Task, key: str) -> dict[str, Any]:
    result = task.result()
    if not isinstance(result, dict) or key not in result:
        raise TaskError(
            f"Task {task.id} ({task.image}) returned an unexpected result "
            f"(no '{key}'): {str(result)[:200]}. Is the image a different version of the algorithm?"
        )
    return result


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
