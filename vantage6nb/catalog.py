"""The algorithm catalog: which methods an algorithm offers, their typed parameters, its result table.

No ipywidgets and no pandas here: the TaskBuilder (``vantage6nb.widgets``) renders these
declarations as forms, and the checks before a task is sent (``vantage6nb.client._validate``)
read them. Every algorithm carries its functions in vantage6's algorithm-store format
(:mod:`vantage6nb.common.store_metadata`): the shipped ones declare it in their modules
(``STORE_METADATA``), any algorithm package can do the same or ship a ``store.json``, a store
document can be read with :func:`algorithm_from_store`, and an algorithm without one is
declared from its functions' signatures.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .algorithms import IMAGES
from .common import store_metadata as sm
from .common.errors import NotFound, ValidationError

__all__ = [
    "Algorithm",
    "Method",
    "Parameter",
    "algorithm_from_module",
    "algorithm_from_store",
    "find_algorithm",
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
    # the store's view: its argument type, display name and the condition for showing it
    type: str = ""
    display_name: str = ""
    conditional_on: str | None = None
    conditional_operator: str | None = None
    conditional_value: str | None = None

    @property
    def label(self) -> str:
        """The display name, else the name."""
        return self.display_name or self.name

    @property
    def store_type(self) -> str:
        """The store's argument type (``column``, ``integer_list`` ...), from ``kind`` if not set."""
        return self.type or _STORE_TYPE_OF_KIND.get(self.kind, "json")

    def parse(self, value: Any) -> Any:
        """Turn what a form holds into the value sent to the algorithm.

        Examples
        --------
        >>> Parameter("columns", "list[str]", optional=True).parse("bill_length_mm, year")
        ['bill_length_mm', 'year']
        >>> Parameter("n", "int").parse("3")
        3
        """
        blank = isinstance(value, str) and value.strip() == ""
        if value is None or blank or (isinstance(value, list | tuple) and not value):
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
    # an entry point is what a researcher starts a task with (the store's ``standalone``)
    entry_point: bool = True
    display_name: str = ""
    any_arguments: bool = False  # takes keyword arguments beyond those declared

    @property
    def label(self) -> str:
        """The display name, else the name."""
        return self.display_name or self.name


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
    metadata: sm.AlgorithmMetadata | None = field(default=None, compare=False)

    @property
    def entry_points(self) -> tuple[Method, ...]:
        """The methods a researcher starts a task with (no federated parts of a central one)."""
        return tuple(m for m in self.methods if m.entry_point)

    @property
    def store(self) -> sm.AlgorithmMetadata:
        """Its functions in vantage6's algorithm-store format (from the methods when undeclared)."""
        return self.metadata if self.metadata is not None else metadata_from_methods(self)

    def to_store(self) -> dict[str, Any]:
        """The algorithm as a vantage6 store's ``POST /algorithm`` body.

        Examples
        --------
        >>> get_algorithm("v6nb/crosstab").to_store()["functions"][0]["arguments"][0]["type"]
        'column'
        """
        return sm.algorithm_to_store(self.store)

    def method(self, name: str) -> Method:
        """The method called ``name``; raises NotFound listing those that exist."""
        for m in self.methods:
            if m.name == name:
                return m
        have = ", ".join(m.name for m in self.methods)
        raise NotFound(f"Algorithm '{self.name}' has no method '{name}'; choose one of: {have}.")


_REGISTRY: dict[str, Algorithm] = {}

# form kinds <-> store argument types
_STORE_TYPE_OF_KIND = {
    "str": "string",
    "int": "integer",
    "float": "float",
    "bool": "boolean",
    "list[str]": "string_list",
    "list[int]": "integer_list",
    "list[float]": "float_list",
    "choice": "string",
    "json": "json",
}
_KIND_OF_STORE_TYPE = {
    "column": "str",
    "column_list": "list[str]",
    "string": "str",
    "string_list": "list[str]",
    "integer": "int",
    "integer_list": "list[int]",
    "float": "float",
    "float_list": "list[float]",
    "boolean": "bool",
    "json": "json",
    "organization": "int",
    "organization_list": "list[int]",
}


def parameter_from_argument(arg: sm.Argument) -> Parameter:
    """The form parameter of a store argument (``allowed_values`` make a choice).

    Examples
    --------
    >>> parameter_from_argument(sm.Argument("row", "column")).kind
    'str'
    """
    kind = "choice" if arg.allowed_values else _KIND_OF_STORE_TYPE[arg.type]
    return Parameter(
        name=arg.name,
        kind=kind,
        default=arg.default,
        required=arg.required,
        optional=arg.has_default and arg.default is None,
        choices=tuple(arg.allowed_values),
        help=arg.description,
        type=arg.type,
        display_name=arg.display_name,
        conditional_on=arg.conditional_on,
        conditional_operator=arg.conditional_operator,
        conditional_value=arg.conditional_value,
    )


def argument_from_parameter(param: Parameter) -> sm.Argument:
    """The store argument of a form parameter."""
    return sm.Argument(
        name=param.name,
        type=param.store_type,
        display_name=param.display_name,
        description=param.help,
        has_default=not param.required,
        default=None if param.required else param.default,
        allowed_values=tuple(param.choices),
        conditional_on=param.conditional_on,
        conditional_operator=param.conditional_operator,
        conditional_value=param.conditional_value,
    )


def _method_from_function_metadata(meta: sm.AlgorithmMetadata, func: sm.Function) -> Method:
    central = func.type == "central"
    takes_orgs = central and any(
        a.name == "organizations" and a.type == "organization_list" for a in func.arguments
    )
    params = tuple(
        parameter_from_argument(a)
        for a in func.arguments
        if not (takes_orgs and a.name == "organizations") and not a.is_frontend_only
    )
    return Method(
        name=func.name,
        parameters=params,
        doc=func.description,
        central=central,
        takes_organizations=takes_orgs,
        entry_point=meta.is_entry_point(func),
        display_name=func.display_name,
        any_arguments=func.any_arguments,
    )


def algorithm_from_store(
    data: Mapping[str, Any] | str | sm.AlgorithmMetadata,
    *,
    image: str | None = None,
    name: str | None = None,
    kind: str = "",
    to_frame: Callable[[list[Any], dict[str, Any]], Any] | None = None,
) -> Algorithm:
    """Declare an algorithm from its vantage6 algorithm-store document (dict, JSON text or model).

    The default method is its first entry point.

    Examples
    --------
    >>> algo = algorithm_from_store({"name": "avg", "image": "me/avg", "functions": [
    ...     {"name": "avg", "type": "central", "arguments": [{"name": "column", "type": "column"}]},
    ...     {"name": "avg_partial", "type": "federated"}]})
    >>> algo.default_method, [m.name for m in algo.entry_points]
    ('avg', ['avg'])
    """
    meta = data if isinstance(data, sm.AlgorithmMetadata) else sm.algorithm_from_store(data)
    image = image or meta.image
    if not image:
        raise ValidationError(
            "The store document names no image: pass image='registry/name'.",
            errors={"image": "required"},
        )
    if meta.image != image:
        meta = dataclasses.replace(meta, image=image)
    methods = tuple(_method_from_function_metadata(meta, f) for f in meta.functions)
    entry = [m.name for m in methods if m.entry_point]
    databases = tuple(dict.fromkeys(d.name for f in meta.entry_points for d in f.databases)) or (
        "default",
    )
    return Algorithm(
        image=image,
        name=name or meta.name or image,
        methods=methods,
        default_method=entry[0] if entry else (methods[0].name if methods else None),
        databases=databases,
        kind=kind,
        to_frame=to_frame,
        metadata=meta,
    )


def metadata_from_methods(algorithm: Algorithm) -> sm.AlgorithmMetadata:
    """Store metadata for an algorithm declared from signatures (every method's arguments typed)."""
    functions = []
    for m in algorithm.methods:
        args = [argument_from_parameter(p) for p in m.parameters]
        if m.takes_organizations:
            args.append(
                sm.Argument("organizations", "organization_list", has_default=True, default=None)
            )
        functions.append(
            sm.Function(
                name=m.name,
                type="central" if m.central else "federated",
                display_name=m.display_name,
                description=m.doc,
                standalone=m.entry_point,
                databases=tuple(sm.Database(d) for d in algorithm.databases),
                arguments=tuple(args),
                any_arguments=m.any_arguments,
            )
        )
    return sm.AlgorithmMetadata(
        name=algorithm.name, image=algorithm.image, functions=tuple(functions)
    )


def declared_metadata(module: types.ModuleType) -> Mapping[str, Any] | None:
    """A module's store declaration: its ``STORE_METADATA`` dict, or a ``store.json`` beside it."""
    declared = getattr(module, "STORE_METADATA", None)
    if isinstance(declared, Mapping):
        return declared
    if not hasattr(module, "__path__"):  # store.json belongs to a package, not a module in it
        return None
    try:
        ref = importlib.resources.files(module.__name__).joinpath("store.json")
        if ref.is_file():
            return json.loads(ref.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError, OSError, TypeError):
        return None
    return None


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
    """Declare an algorithm from its Python module: its store declaration, else its functions.

    A module (or package) that declares its functions in vantage6's store format
    (``STORE_METADATA``, or a package's ``store.json``) is read from that declaration, unless
    ``methods`` is given. Otherwise there is one method per public function: ``methods`` picks
    them (default: the module's ``__all__``, else every public function defined in it), typed
    from their signatures; the central ones (taking the algorithm client) are the entry points,
    or every method when none is central. ``image`` defaults to the module name.

    Examples
    --------
    >>> algo = algorithm_from_module("json", methods=["dumps"], image="example/json")
    >>> algo.methods[0].name
    'dumps'
    """
    mod = importlib.import_module(module) if isinstance(module, str) else module
    declared_doc = declared_metadata(mod) if methods is None else None
    if declared_doc is not None:
        return algorithm_from_store(
            declared_doc,
            image=image or str(declared_doc.get("image") or "") or mod.__name__,
            name=name,
            kind=kind,
            to_frame=to_frame,
        )
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
    roles = {n: getattr(getattr(mod, n), "__v6nb_role__", None) for n in names}
    if any(roles.values()):  # the kit's @entry_point / @federated say it
        declared = [
            dataclasses.replace(m, entry_point=roles[m.name] != "federated") for m in declared
        ]
    elif any(m.central for m in declared):
        declared = [dataclasses.replace(m, entry_point=m.central) for m in declared]
    return Algorithm(
        image=image or mod.__name__,
        name=name or (image or mod.__name__),
        methods=tuple(declared),
        default_method=default_method
        or next(
            (m.name for m in declared if m.entry_point), declared[0].name if declared else None
        ),
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


# The shipped algorithms the catalog offers: image -> (name, kind, the name of the function of its
# module that turns its results into a DataFrame). The module comes from IMAGES; its functions
# from the module's STORE_METADATA.
_SHIPPED = {
    "v6nb/summary": ("summary statistics", "summary", "summary_frame"),
    "v6nb/crosstab": ("crosstab", "crosstab", "crosstab_frame"),
    "v6nb/glm": ("generalized linear model", "glm", "glm_frame"),
    "v6nb/cox": ("Cox model", "cox", "glm_frame"),
    # the statistics pack
    "v6nb/table1": ("table 1", "table1", "table1_frame"),
    "v6nb/ttest": ("t-test", "ttest", "ttest_frame"),
    "v6nb/correlation": ("correlation", "correlation", "correlation_frame"),
    "v6nb/survival": ("Kaplan-Meier", "kaplan_meier", "survival_frame"),
}


def _register_shipped() -> None:
    """Declare the shipped algorithms from their modules' store declarations (once)."""
    for image, (name, kind, frame) in _SHIPPED.items():
        if image not in _REGISTRY:
            module = importlib.import_module(IMAGES[image])
            register_algorithm(
                algorithm_from_module(
                    module, image=image, name=name, kind=kind, to_frame=getattr(module, frame)
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


def find_algorithm(image: str) -> Algorithm | None:
    """The declaration for ``image`` (registry, tag and digest ignored), or None when undeclared.

    Looks in the registry, then at the shipped image modules (``v6nb/diagnostics`` too, which
    the TaskBuilder does not offer).

    Examples
    --------
    >>> find_algorithm("127.0.0.1:5000/v6nb/summary:latest").image
    'v6nb/summary'
    >>> find_algorithm("someone/else") is None
    True
    """
    from .common.images import parse_image

    algos = known_algorithms()
    if image in algos:
        return algos[image]
    try:
        ref = parse_image(image)
    except Exception:  # not an image reference: nothing is declared for it
        return None
    for key in (ref.repository, ref.name):
        if key in algos:
            return algos[key]
    for key in (ref.repository, ref.name):
        if key in IMAGES:
            if key not in _UNLISTED:
                module = importlib.import_module(IMAGES[key])
                if declared_metadata(module) is None:
                    return None
                _UNLISTED[key] = algorithm_from_module(module, image=key)
            return _UNLISTED[key]
    return None


# shipped images with a declaration that the TaskBuilder does not offer (diagnostics)
_UNLISTED: dict[str, Algorithm] = {}
