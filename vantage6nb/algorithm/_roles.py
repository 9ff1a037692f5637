"""Function roles: ``@federated`` parts and ``@entry_point`` methods, and the table a node reads."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar, overload

from ..common.disclosure import ENTRY_POINT, FEDERATED, FUNCTIONS_LABEL, ROLES

__all__ = [
    "ENTRY_POINT",
    "FEDERATED",
    "FUNCTIONS_LABEL",
    "ROLES",
    "ROLE_ATTRIBUTE",
    "describe",
    "describe_command",
    "entry_point",
    "federated",
]

F = TypeVar("F", bound=Callable[..., Any])

ROLE_ATTRIBUTE = "__v6nb_role__"


def _mark(func: Any, role: str) -> Any:
    if not callable(func):
        raise TypeError(f"@{role} decorates a function, not {type(func).__name__}")
    have = getattr(func, ROLE_ATTRIBUTE, None)
    if have is not None and have != role:
        name = getattr(func, "__name__", repr(func))
        raise ValueError(f"'{name}' is already @{have}; a function has one role, drop one of them")
    setattr(func, ROLE_ATTRIBUTE, role)
    return func


@overload
def federated(func: F) -> F: ...
@overload
def federated() -> Callable[[F], F]: ...


def federated(func: Any = None) -> Any:
    """Mark a function as a federated part: run at each node by the algorithm's own entry point.

    The node refuses a task that calls a part directly (not as a subtask of a run of the same
    image) unless its policy's ``disclosure.direct_parts`` names the image. Stacks with ``@data``
    and ``@algorithm_client`` in either order.

    Examples
    --------
    >>> from vantage6nb.algorithm import data
    >>> @federated
    ... @data(1)
    ... def partial(df, column):
    ...     return {"n": int(df[column].count())}
    >>> partial.__v6nb_role__
    'federated'
    """
    return _mark(func, FEDERATED) if func is not None else (lambda f: _mark(f, FEDERATED))


@overload
def entry_point(func: F) -> F: ...
@overload
def entry_point() -> Callable[[F], F]: ...


def entry_point(func: Any = None) -> Any:
    """Mark a function as an entry point: the method a researcher's task calls.

    Examples
    --------
    >>> from vantage6nb.algorithm import algorithm_client
    >>> @entry_point
    ... @algorithm_client
    ... def central(client, column):
    ...     return client.organization.list()
    >>> central.__v6nb_role__
    'entry_point'
    """
    return _mark(func, ENTRY_POINT) if func is not None else (lambda f: _mark(f, ENTRY_POINT))


def describe(module: str | ModuleType) -> dict[str, str]:
    """``{function name: role}`` for every public callable of ``module`` that has a role.

    Every public name counts, imported ones too: the wrapper can call any of them
    (:func:`~vantage6nb.algorithm.dispatch`), so the node must know each one's role.

    Examples
    --------
    >>> describe("vantage6nb.algorithms.summary")  # doctest: +SKIP
    {'summary': 'entry_point', 'summary_partial': 'federated'}
    """
    mod = importlib.import_module(module) if isinstance(module, str) else module
    table = {}
    for name in sorted(dir(mod)):
        if name.startswith("_"):
            continue
        obj = getattr(mod, name, None)
        role = getattr(obj, ROLE_ATTRIBUTE, None) if callable(obj) else None
        if isinstance(role, str) and role in ROLES:
            table[name] = role
    return table


def describe_command(argv: Sequence[str], *, environ: dict[str, str] | None = None) -> int:
    """``python -m vantage6nb.algorithm --describe [module]``: print ``{"functions": {...}}``.

    ``module`` defaults to ``PKG_NAME`` (set in every algorithm image), so
    ``docker run --rm --network none <image> --describe`` works too. The module is imported only:
    no data, no network. What it prints while importing goes to stderr, so stdout is the JSON alone.
    Returns 0, 1 when the module cannot be imported, 2 on a usage error.

    Examples
    --------
    >>> describe_command(["vantage6nb.algorithm"])
    {"functions": {}}
    0
    """
    env = os.environ if environ is None else environ
    args = list(argv)
    module = args[0] if len(args) == 1 else (env.get("PKG_NAME") if not args else None)
    if not module:
        print(
            "usage: python -m vantage6nb.algorithm --describe <module> (or set PKG_NAME)",
            file=sys.stderr,
        )
        return 2
    try:
        with contextlib.redirect_stdout(sys.stderr):
            table = describe(module)
    except Exception as exc:  # an import error in the algorithm: say which module, and why
        print(
            f"vantage6nb.algorithm --describe: cannot import '{module}': "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps({"functions": table}, sort_keys=True))
    return 0
