"""``client.columns()``: the column names and types nodes report, per organization and database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..common.columns import COLUMN_TYPES, FRAME_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from ._directory import Directory
    from ._http import Transport

__all__ = ["COLUMN_TYPES", "FRAME_COLUMNS", "column_frame", "columns"]


def column_frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    """``GET /api/column`` items as the frame :func:`columns` returns (one row per column).

    Rows are sorted by organization, then database label; within a database the columns keep
    the source's order. No items: an empty frame with the same columns.

    Examples
    --------
    >>> item = {"organization_id": 2, "organization": "Leiden", "database": "default",
    ...         "columns": [{"name": "age", "type": "integer"}, {"name": "sex", "type": "string"}]}
    >>> column_frame([item])
       organization_id organization database column     type
    0                2       Leiden  default    age  integer
    1                2       Leiden  default    sex   string
    >>> list(column_frame([]).columns) == list(FRAME_COLUMNS)
    True
    """
    import pandas as pd

    ordered = sorted(items, key=lambda i: (str(i.get("organization", "")), str(i["database"])))
    rows = [
        (
            int(item["organization_id"]),
            str(item.get("organization", "")),
            str(item["database"]),
            str(col["name"]),
            str(col["type"]) if col.get("type") in COLUMN_TYPES else "unknown",
        )
        for item in ordered
        for col in item.get("columns") or []
    ]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    return frame.astype({"organization_id": "int64"})


def columns(
    transport: Transport,
    directory: Directory,
    collaboration: int | str | None = None,
    *,
    database: str | None = None,
) -> pd.DataFrame:
    """What :meth:`vantage6nb.Client.columns` returns (see there)."""
    cid = directory.collaboration(collaboration)["id"]
    params: dict[str, Any] = {"collaboration_id": cid}
    if database is not None:
        params["database"] = database
    body = transport.request("GET", "/column", params=params)
    return column_frame(list(body.get("data") or []))
