"""The algorithm catalog: which methods an algorithm offers, their typed parameters, its result table.

No ipywidgets and no pandas here: the TaskBuilder (``vantage6nb.widgets``) renders these
declarations as forms, and the shipped algorithms (``vantage6nb.algorithms``) are declared from
their own modules, with the result-to-frame function each of them exports.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .algorithms import IMAGES
from .common.errors import NotFound, ValidationError

__all__ = [
    "Algorithm",
    "Method",
    "Parameter",
    "algorithm_from_module",
    "get_algorithm",
    "known_algorithms",
    "method_from_function",
    "register_algorithm",
]

# Parameter kinds a form knows how to render; anything else is entered as JSON text.
KINDS = ("str", "int", "float", "bool", "list[str]", "list[int]", "list[float]", "choice", "json")

# Parameters the algorithm kit fills in itself (data frames, the proxy client): never on a form.
_INJECTED_NAMES = frozenset({"df", "data", "dfs", "client", "algorithm_client"})


@dataclass(frozen=True)
class Parameter:
    """One argument of an algorithm method, as a form shows it.

    ``kind`` is one of ``str, int, float, bool, list[str], list[int], list[float], choice, json``;
    ``choices`` is set for ``choice``; ``required`` parameters have no default.
    """

    name: str
    kind: str = "str"
    default: Any = None
    required: bool = False
    optional: bool = False  # None is an accepted value
    choices: tuple[Any, ...] = ()
    help: str = ""

    def parse(self, value: Any) -> Any:
        """Turn what a form holds into the value sent to the algorithm.

        Examples
        --------
        >>> Parameter("columns", "list[str]", optional=True).parse("bill_length_mm, year")
        ['bill_length_mm', 'year']
        >>> Parameter("n", "int").parse("3")
        3
        """
        if value is None or (isinstance(value, str) and value.strip() == ""):
            if self.required:
                raise ValidationError(
                    f"Parameter '{self.name}' is required: fill it in.",
                    errors={self.name: "required"},
                )
            return None if self.optional or self.default is None else self.default
        try:
            if self.kind.startswith("list["):
                item = {"list[str]": str, "list[int]": int, "list[float]": float}[self.kind]
                items = value if isinstance(value, list | tuple) else str(value).split(",")
                return [item(str(v).strip()) for v in items if str(v).strip()]
            if self.kind == "int":
                return int(value)
            if self.kind == "float":
                return float(value)
            if self.kind == "bool":
                return bool(value)
            if self.kind == "json" and isinstance(value, str):
                import json

                return json.loads(value)
        except (ValueError, TypeError) as exc:
            raise ValidationError(
                f"Parameter '{self.name}' must be {self.kind}: {exc}.",
                errors={self.name: f"expected {self.kind}"},
            ) from exc
        return value


@dataclass(frozen=True)
class Method:
    """One callable method of an algorithm: its name, parameters and first docstring line."""

    name: str
    parameters: tuple[Parameter, ...] = ()
    doc: str = ""
    # central: runs at one organization and creates subtasks (it takes the algorithm client);
    # its ``organizations`` argument is filled from the organizations picked in the form
    central: bool = False
    takes_organizations: bool = False


@dataclass(frozen=True)
class Algorithm:
    """An algorithm a researcher can run: its image, methods and how to turn results into a table.

    ``to_frame(results, kwargs)`` converts the list of per-organization results of a task created
    with this algorithm into a DataFrame; ``kind`` names a plot style (``"summary"``, ``"crosstab"``).
    """

    image: str
    name: str
    methods: tuple[Method, ...]
    default_method: str | None = None
    databases: tuple[str, ...] = ("default",)
    kind: str = ""
    to_frame: Callable[[list[Any], dict[str, Any]], Any] | None = field(default=None, compare=False)

    def method(self, name: str) -> Method:
        """The method called ``name``; raises NotFound listing those that exist."""
        for m in self.methods:
            if m.name == name:
                return m
        have = ", ".join(m.name for m in self.methods)
        raise NotFound(f"Algorithm '{self.name}' has no method '{name}'; choose one of: {have}.")


_REGISTRY: dict[str, Algorithm] = {}


def _kind_of(annotation: Any) -> tuple[str, bool, tuple[Any, ...]]:
    """Map a type annotation to (kind, optional, choices)."""
    if isinstance(annotation, str):
        text = annotation.replace(" ", "")
        optional = "None" in text
        text = text.replace("|None", "").replace("None|", "")
        if text.startswith("Optional["):
            text, optional = text[len("Optional[") : -1], True
        simple = {"str": "str", "int": "int", "float": "float", "bool": "bool"}
        for key in ("list[str]", "list[int]", "list[float]"):
            if text.lower() in (key, key.replace("list", "List"), key.replace("list", "Sequence")):
                return key, optional, ()
        return simple.get(text, "json"), optional, ()
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [_kind_of(a) for a in args if a is not type(None)]
        kinds = [k for k, _, _ in rest]
        lists = [k for k in kinds if k.startswith("list[")]
        if lists:  # `Sequence[str] | str`: a comma-separated list covers both
            kind, choices = lists[0], ()
        elif len(set(kinds)) == 1:
            kind, choices = kinds[0], rest[0][2]
        else:
            kind, choices = "json", ()
        return kind, len(rest) < len(args), choices
    if origin is typing.Literal:
        return "choice", False, tuple(args)
    if origin in (list, tuple, Sequence) and args and args[0] in (str, int, float):
        return f"list[{args[0].__name__}]", False, ()
    if annotation in (str, int, float, bool):
        return annotation.__name__, False, ()
    return ("str", False, ()) if annotation is inspect.Parameter.empty else ("json", False, ())


def _is_injected(param: inspect.Parameter) -> bool:
    text = str(param.annotation)
    return param.name in _INJECTED_NAMES or "DataFrame" in text or "AlgorithmClient" in text


def method_from_function(func: Callable[..., Any], name: str | None = None) -> Method:
    """Declare a method from a function's signature, annotations and docstring.

    Data frames and the algorithm client (filled in by the kit) are left out, and so is an
    ``organizations`` argument (the form's organization picker fills it); a parameter without an
    annotation takes the type of its default, or ``str``. A function taking the algorithm client is
    a central method: it runs at one organization and creates subtasks.

    Examples
    --------
    >>> def partial(df, columns: list[str] | None = None, ddof: int = 1): ...
    >>> [p.name for p in method_from_function(partial).parameters]
    ['columns', 'ddof']
    """
    sig = inspect.signature(func)
    try:
        hints = typing.get_type_hints(inspect.unwrap(func))
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = {}
    params = []
    central = takes_orgs = False
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if _is_injected(p):
            central = (
                central
                or p.name in ("client", "algorithm_client")
                or "AlgorithmClient" in str(hints.get(p.name, p.annotation))
            )
            continue
        if p.name == "organizations":
            takes_orgs = True
            continue
        annotation = hints.get(p.name, p.annotation)
        has_default = p.default is not inspect.Parameter.empty
        if annotation is inspect.Parameter.empty and has_default and p.default is not None:
            annotation = type(p.default)
        kind, optional, choices = _kind_of(annotation)
        params.append(
            Parameter(
                name=p.name,
                kind=kind,
                default=p.default if has_default else None,
                required=not has_default,
                optional=optional or (has_default and p.default is None),
                choices=choices,
            )
        )
    doc = (inspect.getdoc(func) or "").strip().splitlines()
    return Method(
        name=name or func.__name__,
        parameters=tuple(params),
        doc=doc[0] if doc else "",
        central=central,
        takes_organizations=takes_orgs,
    )


def algorithm_from_module(
    module: str | types.ModuleType,
    *,
    image: str | None = None,
    name: str | None = None,
    methods: Sequence[str] | None = None,
    default_method: str | None = None,
    kind: str = "",
    to_frame: Callable[[list[Any], dict[str, Any]], Any] | None = None,
) -> Algorithm:
    """Declare an algorithm from its Python module: one method per public function.

    ``methods`` picks the functions (default: the module's ``__all__``, else every public function
    defined in it). ``image`` defaults to the module name.

    Examples
    --------
    >>> algo = algorithm_from_module("json", methods=["dumps"], image="example/json")
    >>> algo.methods[0].name
    'dumps'
    """
    mod = importlib.import_module(module) if isinstance(module, str) else module
    if methods is None:
        names = list(getattr(mod, "__all__", []))
        if not names:
            names = [
                n
                for n, obj in vars(mod).items()
                if not n.startswith("_")
                and inspect.isfunction(obj)
                and getattr(obj, "__module__", None) == mod.__name__
            ]
    else:
        names = list(methods)
    declared = []
    for n in names:
        func = getattr(mod, n, None)
        if not callable(func):
            raise NotFound(f"Module '{mod.__name__}' has no function '{n}'.")
        declared.append(method_from_function(func, n))
    return Algorithm(
        image=image or mod.__name__,
        name=name or (image or mod.__name__),
        methods=tuple(declared),
        default_method=default_method or (declared[0].name if declared else None),
        kind=kind,
        to_frame=to_frame,
    )


def register_algorithm(algorithm: Algorithm) -> Algorithm:
    """Add (or replace) an algorithm in the registry the TaskBuilder offers; returns it.

    Examples
    --------
    >>> algo = register_algorithm(Algorithm("me/hello", "hello", (Method("hello"),)))
    >>> get_algorithm("me/hello").name
    'hello'
    >>> _ = _REGISTRY.pop("me/hello")
    """
    _REGISTRY[algorithm.image] = algorithm
    return algorithm


# The shipped algorithms the catalog offers: image -> (name, methods, kind, the name of the function
# of its module that turns its results into a DataFrame). The module comes from IMAGES.
_SHIPPED = {
    "v6nb/summary": (
        "summary statistics",
        ("summary", "summary_partial"),
        "summary",
        "summary_frame",
    ),
    "v6nb/crosstab": ("crosstab", ("crosstab", "crosstab_partial"), "crosstab", "crosstab_frame"),
    "v6nb/glm": (
        "generalized linear model",
        ("glm", "glm_describe", "glm_iteration"),
        "glm",
        "glm_frame",
    ),
    "v6nb/cox": ("Cox model", ("cox", "cox_describe", "cox_iteration"), "cox", "glm_frame"),
    # the statistics pack
    "v6nb/table1": (
        "table 1",
        ("table1", "table1_partial", "table1_bins_partial"),
        "table1",
        "table1_frame",
    ),
    "v6nb/ttest": ("t-test", ("ttest", "ttest_partial"), "ttest", "ttest_frame"),
    "v6nb/correlation": (
        "correlation",
        ("correlation", "correlation_partial"),
        "correlation",
        "correlation_frame",
    ),
    "v6nb/survival": (
        "Kaplan-Meier",
        ("kaplan_meier", "kaplan_meier_partial"),
        "kaplan_meier",
        "survival_frame",
    ),
}


def _register_shipped() -> None:
    """Declare the shipped algorithms from their modules' signatures (once)."""
    for image, (name, methods, kind, frame) in _SHIPPED.items():
        if image not in _REGISTRY:
            module = importlib.import_module(IMAGES[image])
            register_algorithm(
                algorithm_from_module(
                    module,
                    image=image,
                    name=name,
                    methods=methods,
                    kind=kind,
                    to_frame=getattr(module, frame),
                )
            )


def known_algorithms() -> dict[str, Algorithm]:
    """Every registered algorithm by image, the shipped ones first.

    Examples
    --------
    >>> list(known_algorithms())[:2]
    ['v6nb/summary', 'v6nb/crosstab']
    """
    _register_shipped()
    shipped = {k: v for k, v in _REGISTRY.items() if k.startswith("v6nb/")}
    return {**shipped, **{k: v for k, v in _REGISTRY.items() if k not in shipped}}


def get_algorithm(image: str) -> Algorithm:
    """The registered algorithm for ``image``; raises NotFound naming the known images."""
    algos = known_algorithms()
    if image not in algos:
        raise NotFound(
            f"No algorithm declared for image '{image}'. Known: {', '.join(algos) or 'none'}; "
            "declare it with vantage6nb.widgets.register_algorithm(algorithm_from_module(...))."
        )
    return algos[image]
