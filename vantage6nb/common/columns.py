"""Column reports: the names and types of a node's databases (never values), and their checks."""

from __future__ import annotations

from typing import Any

from .errors import ValidationError

__all__ = [
    "COLUMN_TYPES",
    "FRAME_COLUMNS",
    "MAX_COLUMNS",
    "MAX_DATABASES",
    "MAX_LABEL",
    "MAX_NAME",
    "check_report",
]

# The one vocabulary of column types (node, server, client, widgets); docs/api.md maps sources to it.
COLUMN_TYPES = ("integer", "float", "boolean", "string", "datetime", "category", "unknown")
# The columns of ``client.columns()``, in order.
FRAME_COLUMNS = ("organization_id", "organization", "database", "column", "type")
MAX_DATABASES = 64  # database labels in one report
MAX_COLUMNS = 2000  # columns of one database
MAX_LABEL = 128  # characters of a database label
MAX_NAME = 255  # characters of a column name


def _name_problem(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return "expected a string"
    if not value.strip():
        return "must not be empty"
    if len(value) > limit:
        return f"at most {limit} characters"
    if any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        return "must not contain control characters"
    return None


def check_report(body: Any) -> list[dict[str, Any]]:
    """The ``databases`` of a column report, checked; a :class:`ValidationError` names each problem.

    A report is ``{"databases": [{"label": str, "columns": [{"name": str, "type": str}]}]}``:
    at most :data:`MAX_DATABASES` labels (unique), :data:`MAX_COLUMNS` columns each (names unique
    within a database), types from :data:`COLUMN_TYPES`, and nothing else (no values, no counts).

    Examples
    --------
    >>> check_report({"databases": [{"label": "default", "columns": [{"name": "age", "type": "integer"}]}]})
    [{'label': 'default', 'columns': [{'name': 'age', 'type': 'integer'}]}]
    >>> try:
    ...     check_report({"databases": [{"label": "x", "columns": [{"name": "a", "type": "int"}]}]})
    ... except ValidationError as exc:
    ...     print(exc.errors)
    {'databases[0].columns[0].type': 'one of integer, float, boolean, string, datetime, category, unknown'}
    """
    if not isinstance(body, dict) or set(body) != {"databases"}:
        raise ValidationError(
            "A column report is an object with one key, 'databases'.",
            errors={"databases": "required (and nothing else)"},
        )
    dbs = body["databases"]
    if not isinstance(dbs, list):
        raise ValidationError(
            "'databases' must be a list.", errors={"databases": "expected a list"}
        )
    if len(dbs) > MAX_DATABASES:
        raise ValidationError(
            f"A column report holds at most {MAX_DATABASES} databases.",
            errors={"databases": f"at most {MAX_DATABASES}"},
        )
    errors: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    labels: set[str] = set()
    for i, db in enumerate(dbs):
        where = f"databases[{i}]"
        if not isinstance(db, dict) or set(db) != {"label", "columns"}:
            errors[where] = "expected {label, columns} and nothing else"
            continue
        if problem := _name_problem(db["label"], MAX_LABEL):
            errors[f"{where}.label"] = problem
            continue
        if db["label"] in labels:
            errors[f"{where}.label"] = "duplicate label"
            continue
        labels.add(db["label"])
        cols = db["columns"]
        if not isinstance(cols, list):
            errors[f"{where}.columns"] = "expected a list"
            continue
        if len(cols) > MAX_COLUMNS:
            errors[f"{where}.columns"] = f"at most {MAX_COLUMNS}"
            continue
        seen: set[str] = set()
        checked: list[dict[str, str]] = []
        for j, col in enumerate(cols):
            at = f"{where}.columns[{j}]"
            if not isinstance(col, dict) or set(col) != {"name", "type"}:
                errors[at] = "expected {name, type} and nothing else"
            elif problem := _name_problem(col["name"], MAX_NAME):
                errors[f"{at}.name"] = problem
            elif col["name"] in seen:
                errors[f"{at}.name"] = "duplicate column name"
            elif col["type"] not in COLUMN_TYPES:
                errors[f"{at}.type"] = f"one of {', '.join(COLUMN_TYPES)}"
            else:
                seen.add(col["name"])
                checked.append({"name": col["name"], "type": col["type"]})
            if len(errors) >= 20:  # enough to fix; a huge bad report gets a bounded answer
                break
        out.append({"label": db["label"], "columns": checked})
        if len(errors) >= 20:
            break
    if errors:
        raise ValidationError(
            "Invalid column report: fix the fields listed in 'errors'.", errors=errors
        )
    return out
