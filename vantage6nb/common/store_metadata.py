"""Algorithm metadata in vantage6's algorithm-store format: functions, typed arguments, visualizations.

The model follows the store's ``POST /algorithm`` body (vantage6-algorithm-store 4.x): an
algorithm has ``functions``; a function has a ``name``, ``display_name``, ``description``, a
``type`` (``central`` or ``federated``; vantage6 5's ``step_type`` is read too), ``standalone``,
``databases``, ``arguments`` and ``ui_visualizations`` (``table`` or ``line``, with a ``schema``).
An argument has a store type (:data:`ARGUMENT_TYPES`), ``has_default_value`` with a
``default_value`` (a string in the store: JSON text for lists, booleans and JSON), optional
``allowed_values`` and a condition (``conditional_on``, ``conditional_operator``,
``conditional_value``) under which a form shows it.

Entry points are the functions a researcher starts a task with: a central function, or a
federated one when the algorithm has no central function; the store's ``standalone`` flag,
where a document gives it, decides instead. Nothing here does I/O: :func:`algorithm_from_store` takes the parsed
JSON (or its text) and :func:`algorithm_to_store` gives the JSON-ready dict.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ARGUMENT_TYPES",
    "CONDITIONAL_OPERATORS",
    "FUNCTION_TYPES",
    "VISUALIZATION_TYPES",
    "AlgorithmMetadata",
    "Argument",
    "Database",
    "Function",
    "MetadataError",
    "Visualization",
    "algorithm_from_store",
    "algorithm_to_store",
    "check_value",
    "format_default",
    "parse_default",
]

ARGUMENT_TYPES = (
    "column",
    "column_list",
    "string",
    "string_list",
    "integer",
    "integer_list",
    "float",
    "float_list",
    "boolean",
    "json",
    "organization",
    "organization_list",
)
LIST_TYPES = frozenset(t for t in ARGUMENT_TYPES if t.endswith("_list"))
COLUMN_TYPES = frozenset({"column", "column_list"})
FUNCTION_TYPES = ("central", "federated")
CONDITIONAL_OPERATORS = ("==", "!=", ">", "<", ">=", "<=")
VISUALIZATION_TYPES = ("table", "line")


class MetadataError(ValueError):
    """A store document that does not follow the store's format (names the field and the fix)."""


@dataclass(frozen=True)
class Argument:
    """One argument of a function, with its store type, default and display condition.

    ``default`` is the Python value (``has_default`` tells an absent default from a None one).

    Examples
    --------
    >>> arg = Argument("bins", "integer", has_default=True, default=None,
    ...                conditional_on="group", conditional_operator="!=")
    >>> arg.required, arg.shown({"group": None}), arg.shown({"group": "sex"})
    (False, False, True)
    """

    name: str
    type: str = "string"
    display_name: str = ""
    description: str = ""
    has_default: bool = False
    default: Any = None
    allowed_values: tuple[Any, ...] = ()
    conditional_on: str | None = None
    conditional_operator: str | None = None
    conditional_value: str | None = None
    is_frontend_only: bool = False

    def __post_init__(self) -> None:
        if self.type not in ARGUMENT_TYPES:
            raise MetadataError(
                f"Argument '{self.name}' has type '{self.type}'; use one of: "
                f"{', '.join(ARGUMENT_TYPES)}."
            )
        if self.conditional_operator not in (None, *CONDITIONAL_OPERATORS):
            raise MetadataError(
                f"Argument '{self.name}' has conditional_operator '{self.conditional_operator}'; "
                f"use one of: {' '.join(CONDITIONAL_OPERATORS)}."
            )
        if self.conditional_on and not self.has_default:
            raise MetadataError(
                f"Argument '{self.name}' is conditional on '{self.conditional_on}' but has no "
                "default: an argument without a default must always be given (vantage6's rule)."
            )

    @property
    def required(self) -> bool:
        """True when the argument has no default and must be given."""
        return not self.has_default

    @property
    def label(self) -> str:
        """The display name, else the name."""
        return self.display_name or self.name

    def shown(self, values: Mapping[str, Any], arguments: Sequence[Argument] = ()) -> bool:
        """Whether its condition holds for the other arguments' ``values`` (no condition: True).

        ``arguments`` (the function's) gives the type of the argument it depends on, to read
        ``conditional_value``; without it the value is compared as JSON text or a plain string.
        """
        if not self.conditional_on:
            return True
        other = next((a for a in arguments if a.name == self.conditional_on), None)
        actual = values.get(self.conditional_on)
        expected: Any = None
        if self.conditional_value is not None:
            kind = other.type if other is not None else "json"
            try:
                expected = parse_default(kind, self.conditional_value)
            except MetadataError:
                expected = self.conditional_value
        return _compare(actual, self.conditional_operator or "==", expected)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "==":
        return bool(actual == expected)
    if op == "!=":
        return bool(actual != expected)
    try:
        return bool(
            {
                ">": actual > expected,
                "<": actual < expected,
                ">=": actual >= expected,
                "<=": actual <= expected,
            }[op]
        )
    except TypeError:  # None or text against a number: the condition does not hold
        return False


@dataclass(frozen=True)
class Database:
    """A database a function reads, by its (example) label."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class Visualization:
    """A result visualization: ``table`` (``columns``, ``location``) or ``line`` (``x``, ``y``)."""

    name: str
    type: str = "table"
    description: str = ""
    schema: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in VISUALIZATION_TYPES:
            raise MetadataError(
                f"Visualization '{self.name}' has type '{self.type}'; use one of: "
                f"{', '.join(VISUALIZATION_TYPES)}."
            )
        if self.type == "line" and not {"x", "y"} <= set(self.schema):
            raise MetadataError(
                f"Line visualization '{self.name}' needs 'x' and 'y' in its schema."
            )


@dataclass(frozen=True)
class Function:
    """One function of an algorithm (a method a task can name).

    ``standalone`` is the store's flag (None: not said); ``any_arguments`` (our extension, not
    sent to a store) says the function takes keyword arguments beyond those declared.
    """

    name: str
    type: str = "federated"
    display_name: str = ""
    description: str = ""
    standalone: bool | None = None
    databases: tuple[Database, ...] = ()
    arguments: tuple[Argument, ...] = ()
    visualizations: tuple[Visualization, ...] = ()
    any_arguments: bool = False

    def __post_init__(self) -> None:
        if self.type not in FUNCTION_TYPES:
            raise MetadataError(
                f"Function '{self.name}' has type '{self.type}'; use 'central' or 'federated'."
            )
        names = [a.name for a in self.arguments]
        if len(names) != len(set(names)):
            raise MetadataError(f"Function '{self.name}' declares an argument twice.")
        for a in self.arguments:
            if a.conditional_on and a.conditional_on not in names:
                raise MetadataError(
                    f"Argument '{a.name}' of '{self.name}' is conditional on "
                    f"'{a.conditional_on}', which is not one of its arguments."
                )
            if a.conditional_on == a.name:
                raise MetadataError(f"Argument '{a.name}' is conditional on itself.")

    @property
    def label(self) -> str:
        """The display name, else the name."""
        return self.display_name or self.name

    def argument(self, name: str) -> Argument | None:
        """The argument called ``name``, or None."""
        return next((a for a in self.arguments if a.name == name), None)


@dataclass(frozen=True)
class AlgorithmMetadata:
    """An algorithm as the store describes it: its image and functions.

    Examples
    --------
    >>> meta = AlgorithmMetadata("summary", "v6nb/summary", functions=(
    ...     Function("summary", "central"), Function("summary_partial", "federated")))
    >>> [f.name for f in meta.entry_points]
    ['summary']
    """

    name: str
    image: str = ""
    description: str = ""
    partitioning: str = "horizontal"
    vantage6_version: str = "4"
    code_url: str = ""
    documentation_url: str = ""
    functions: tuple[Function, ...] = ()

    def function(self, name: str) -> Function | None:
        """The function called ``name``, or None."""
        return next((f for f in self.functions if f.name == name), None)

    def is_entry_point(self, function: Function) -> bool:
        """The store's ``standalone`` where given; else central functions, and a federated one
        only when the algorithm has no central function."""
        if function.standalone is not None:
            return function.standalone
        if function.type == "central":
            return True
        return not any(f.type == "central" for f in self.functions)

    @property
    def entry_points(self) -> tuple[Function, ...]:
        """The functions a researcher starts a task with, in declaration order."""
        return tuple(f for f in self.functions if self.is_entry_point(f))


# -- values ---------------------------------------------------------------------------------------
def parse_default(type_: str, text: Any) -> Any:
    """A store ``default_value`` (text, or already a value) as the Python value of ``type_``.

    Examples
    --------
    >>> parse_default("integer", "3"), parse_default("boolean", "false")
    (3, False)
    >>> parse_default("column_list", '["age", "sex"]'), parse_default("string", "gaussian")
    (['age', 'sex'], 'gaussian')
    """
    if text is None or not isinstance(text, str):
        return text
    try:
        if type_ in ("string", "column"):
            return text
        if type_ in ("integer", "organization"):
            return int(text)
        if type_ == "float":
            return float(text)
        if type_ == "boolean":
            if text.strip().lower() not in ("true", "false", "1", "0"):
                raise ValueError("use true, false, 1 or 0")
            return text.strip().lower() in ("true", "1")
        value = json.loads(text)
    except ValueError as exc:
        raise MetadataError(f"Default {text!r} is not a valid {type_}: {exc}.") from exc
    if type_ in LIST_TYPES and not isinstance(value, list):
        raise MetadataError(f"Default {text!r} of a {type_} must be a JSON array.")
    return value


def format_default(type_: str, value: Any) -> str | None:
    """The store's text for a default value (None stays None).

    Examples
    --------
    >>> format_default("boolean", True), format_default("string_list", ["a"])
    ('true', '["a"]')
    """
    if value is None:
        return None
    if type_ in ("string", "column"):
        return str(value)
    if type_ == "boolean":
        return "true" if value else "false"
    if type_ in ("integer", "organization", "float"):
        return str(value)
    return json.dumps(value)


def _type_name(value: Any) -> str:
    return "a list" if isinstance(value, list | tuple) else type(value).__name__


def check_value(argument: Argument, value: Any) -> str | None:
    """Why ``value`` does not fit the argument's type (None: it fits).

    A single string is accepted for ``column_list`` and ``string_list`` (the algorithms read it
    as a list of one); None fits an argument whose default is None.

    Examples
    --------
    >>> check_value(Argument("n", "integer"), "3")
    "expected an integer, got str '3'"
    >>> check_value(Argument("cols", "column_list"), ["a", "b"]) is None
    True
    """
    t = argument.type
    if value is None:
        if argument.has_default and argument.default is None:
            return None
        return "expected a value, got None"

    def is_int(v: Any) -> bool:  # numpy integers too (they come out of DataFrames)
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    def is_float(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v)

    scalar = {
        "column": (lambda v: isinstance(v, str) and v != "", "a column name (text)"),
        "string": (lambda v: isinstance(v, str), "text"),
        "integer": (is_int, "an integer"),
        "organization": (is_int, "an organization id (an integer)"),
        "float": (is_float, "a number"),
        "boolean": (lambda v: isinstance(v, bool), "True or False"),
    }
    if t in scalar:
        ok, what = scalar[t]
        if not ok(value):
            return f"expected {what}, got {_type_name(value)} {value!r}"
    elif t in LIST_TYPES:
        item = t[: -len("_list")]
        plural = {
            "column": "column names",
            "string": "texts",
            "integer": "integers",
            "float": "numbers",
            "organization": "organization ids",
        }[item]
        if isinstance(value, str) and item in ("column", "string"):
            return None if value or item == "string" else "expected a column name, got ''"
        if not isinstance(value, list | tuple):
            return f"expected a list of {plural}, got {_type_name(value)} {value!r}"
        ok, _what = scalar[item]
        bad = [v for v in value if not ok(v)]
        if bad:
            return f"expected a list of {plural}, got {bad[0]!r} in it"
    if argument.allowed_values and t not in LIST_TYPES and value not in argument.allowed_values:
        return "expected one of " + ", ".join(repr(v) for v in argument.allowed_values)
    return None


# -- reading and writing the store's JSON ---------------------------------------------------------
def _function_type(raw: Mapping[str, Any]) -> str:
    given = raw.get("type") or raw.get("type_")
    if given is not None:
        return str(given)  # the Function checks it is central or federated
    # vantage6 5: step_type central_compute, federated_compute, preprocessing, data_extraction ...
    return "central" if "central" in str(raw.get("step_type") or "").lower() else "federated"


def _allowed(raw: Any) -> tuple[Any, ...]:
    # the store answers [{"value": ...}], its input takes plain values
    return tuple(v["value"] if isinstance(v, Mapping) else v for v in raw or ())


def _read_arguments(raw: Iterable[Mapping[str, Any]]) -> tuple[Argument, ...]:
    items = list(raw or ())
    by_id = {a.get("id"): a.get("name") for a in items if a.get("id") is not None}
    out = []
    for a in items:
        if not a.get("name"):
            raise MetadataError("Every argument needs a 'name'.")
        type_ = str(a.get("type") or a.get("type_") or "string")
        has_default = bool(a.get("has_default_value", "default_value" in a))
        on = a.get("conditional_on") or by_id.get(a.get("conditional_on_id"))
        out.append(
            Argument(
                name=str(a["name"]),
                type=type_,
                display_name=str(a.get("display_name") or ""),
                description=str(a.get("description") or ""),
                has_default=has_default,
                default=parse_default(type_, a.get("default_value")) if has_default else None,
                allowed_values=_allowed(a.get("allowed_values")),
                conditional_on=on or None,
                conditional_operator=a.get("conditional_operator") if on else None,
                conditional_value=(
                    None if a.get("conditional_value") is None else str(a["conditional_value"])
                )
                if on
                else None,
                is_frontend_only=bool(a.get("is_frontend_only", False)),
            )
        )
    return tuple(out)


def _read_function(raw: Mapping[str, Any]) -> Function:
    if not raw.get("name"):
        raise MetadataError("Every function needs a 'name'.")
    vis = raw.get("ui_visualizations", raw.get("visualizations")) or ()
    standalone = raw.get("standalone")
    return Function(
        name=str(raw["name"]),
        type=_function_type(raw),
        display_name=str(raw.get("display_name") or ""),
        description=str(raw.get("description") or ""),
        standalone=None if standalone is None else bool(standalone),
        databases=tuple(
            Database(str(d["name"]), str(d.get("description") or ""))
            for d in raw.get("databases") or ()
        ),
        arguments=_read_arguments(raw.get("arguments") or ()),
        visualizations=tuple(
            Visualization(
                name=str(v.get("name") or v.get("type") or "table"),
                type=str(v.get("type") or v.get("type_") or "table"),
                description=str(v.get("description") or ""),
                schema=dict(v.get("schema") or {}),
            )
            for v in vis
        ),
        any_arguments=bool(raw.get("any_arguments", False)),
    )


def algorithm_from_store(data: Mapping[str, Any] | str, *, image: str = "") -> AlgorithmMetadata:
    """Read an algorithm in the store's JSON (the POST body or the store's answer; dict or text).

    Examples
    --------
    >>> meta = algorithm_from_store({"name": "avg", "image": "me/avg", "functions": [
    ...     {"name": "avg", "type": "central", "arguments": [
    ...         {"name": "column", "type": "column"}]}]})
    >>> meta.entry_points[0].arguments[0].type
    'column'
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise MetadataError(f"The store document is not JSON: {exc}.") from exc
    if not isinstance(data, Mapping):
        raise MetadataError("A store document is a JSON object with 'functions'.")
    functions = data.get("functions")
    if not isinstance(functions, list | tuple):
        raise MetadataError("A store document needs 'functions': a list of functions.")
    return AlgorithmMetadata(
        name=str(data.get("name") or image or data.get("image") or ""),
        image=str(image or data.get("image") or ""),
        description=str(data.get("description") or ""),
        partitioning=str(data.get("partitioning") or "horizontal"),
        vantage6_version=str(data.get("vantage6_version") or "4"),
        code_url=str(data.get("code_url") or ""),
        documentation_url=str(data.get("documentation_url") or ""),
        functions=tuple(_read_function(f) for f in functions),
    )


def _write_argument(a: Argument) -> dict[str, Any]:
    out: dict[str, Any] = {"name": a.name, "type": a.type}
    if a.display_name:
        out["display_name"] = a.display_name
    if a.description:
        out["description"] = a.description
    if a.has_default:
        out["has_default_value"] = True
        out["default_value"] = format_default(a.type, a.default)
    if a.allowed_values:
        out["allowed_values"] = list(a.allowed_values)
    if a.conditional_on:
        out["conditional_on"] = a.conditional_on
        out["conditional_operator"] = a.conditional_operator or "=="
        out["conditional_value"] = a.conditional_value
    if a.is_frontend_only:
        out["is_frontend_only"] = True
    return out


def algorithm_to_store(meta: AlgorithmMetadata, *, extensions: bool = False) -> dict[str, Any]:
    """The algorithm as the store's ``POST /algorithm`` body (``json.dumps`` it to send it).

    ``standalone`` is written for every function (True for entry points). ``extensions`` keeps
    our ``any_arguments`` flag, which a store would refuse.

    Examples
    --------
    >>> meta = AlgorithmMetadata("avg", "me/avg", functions=(Function("avg", "central"),))
    >>> algorithm_to_store(meta)["functions"][0]
    {'name': 'avg', 'type': 'central', 'standalone': True}
    """
    functions = []
    for f in meta.functions:
        out: dict[str, Any] = {"name": f.name, "type": f.type}
        if f.display_name:
            out["display_name"] = f.display_name
        if f.description:
            out["description"] = f.description
        out["standalone"] = meta.is_entry_point(f)
        if f.databases:
            out["databases"] = [
                {"name": d.name, **({"description": d.description} if d.description else {})}
                for d in f.databases
            ]
        if f.arguments:
            out["arguments"] = [_write_argument(a) for a in f.arguments]
        if f.visualizations:
            out["ui_visualizations"] = [
                {
                    "name": v.name,
                    "type": v.type,
                    **({"description": v.description} if v.description else {}),
                    "schema": dict(v.schema),
                }
                for v in f.visualizations
            ]
        if extensions and f.any_arguments:
            out["any_arguments"] = True
        functions.append(out)
    doc: dict[str, Any] = {
        "name": meta.name,
        "image": meta.image,
        "partitioning": meta.partitioning,
        "vantage6_version": meta.vantage6_version,
        "code_url": meta.code_url,
        "functions": functions,
    }
    if meta.description:
        doc["description"] = meta.description
    if meta.documentation_url:
        doc["documentation_url"] = meta.documentation_url
    return doc
