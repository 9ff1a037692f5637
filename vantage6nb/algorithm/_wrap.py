"""The algorithm entry point: read the contract's environment, dispatch the method, write the output."""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ..common import contract
from ..common.disclosure import RESULT_MARKER
from ..common.errors import REJECTED, ConfigurationError, DisclosureRefused, ValidationError
from .results import TypedResult, refusal

__all__ = ["dispatch", "refusal_result", "result_to_json", "wrap_algorithm", "write_output"]


def wrap_algorithm(module: str | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Run the method named in ``INPUT_FILE`` from ``module`` and write its JSON result to ``OUTPUT_FILE``.

    ``module`` defaults to the ``PKG_NAME`` environment variable (the vantage6 image convention).
    Returns the process exit code: 0 on success, 1 when the algorithm raised (traceback on stderr).
    A :class:`~vantage6nb.common.errors.ValidationError` (the method refused its input) ends the
    log with ``rejected: <its message>``, which the node makes the run's reason (``failed``, not
    ``crashed``).
    A method that raises :class:`~vantage6nb.common.errors.DisclosureRefused` (an entry point whose
    part a node refused) writes a typed ``refusal`` instead and returns 0: the node then ends the
    run refused, with a reason it renders itself from the refusal's fields.

    Examples
    --------
    In a Dockerfile: ``CMD ["python", "-m", "vantage6nb.algorithm", "my_package"]``.
    """
    if environ is None:  # what vantage6's decorators read must be plain, as its wrapper leaves it
        contract.decode_environment(os.environ)
    env = os.environ if environ is None else environ
    module = module or env.get("PKG_NAME")
    if not module:
        print(
            "vantage6nb.algorithm: no algorithm module given (argument or PKG_NAME)",
            file=sys.stderr,
        )
        return 2
    input_file = contract.read_environment(env, contract.INPUT_FILE)
    output_file = contract.read_environment(env, contract.OUTPUT_FILE)
    if not input_file or not output_file:
        print("vantage6nb.algorithm: INPUT_FILE and OUTPUT_FILE must be set", file=sys.stderr)
        return 2
    try:
        with open(input_file, "rb") as fh:
            request = contract.parse_input(fh.read())
        try:
            result = dispatch(module, request)
        except DisclosureRefused as exc:
            print(f"vantage6nb.algorithm: passing on a refusal: {exc.msg}", file=sys.stderr)
            result = refusal_result(exc)
        payload = result_to_json(result)
    except (ValidationError, ConfigurationError) as exc:  # refused its input: "rejected"
        traceback.print_exc()
        print(REJECTED + " ".join(exc.msg.split()), file=sys.stderr)  # last line: the reason
        return 1
    except Exception:  # the algorithm's own failure: its traceback is the run's log
        traceback.print_exc()
        return 1
    write_output(output_file, payload)
    return 0


def write_output(output_file: str, payload: str) -> None:
    """Write ``payload`` to ``output_file`` under a temporary name, then rename it into place.

    The rename is the moment the run has an output: the node takes ``OUTPUT_FILE`` as complete
    once it exists, and a node restarted after that returns it instead of running the algorithm
    again (docs/operations.md, "Exactly once"). Nothing may run after it that matters.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "output.json")
    >>> write_output(out, "{}"); open(out).read(), os.listdir(os.path.dirname(out))
    ('{}', ['output.json'])
    """
    tmp = f"{output_file}.partial"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(payload)
        os.replace(tmp, output_file)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def dispatch(module: str | ModuleType, request: Mapping[str, Any]) -> Any:
    """Call ``request["method"]`` of ``module`` with the request's ``args`` and ``kwargs``.

    Methods whose name starts with ``_`` are private and cannot be called.

    Examples
    --------
    >>> dispatch("math", {"method": "hypot", "args": [3, 4], "kwargs": {}})
    5.0
    """
    mod = importlib.import_module(module) if isinstance(module, str) else module
    method = request["method"]
    func = getattr(mod, method, None)
    if func is None or not callable(func) or method.startswith("_"):
        raise AttributeError(f"algorithm module '{mod.__name__}' has no method '{method}'")
    return func(*(request.get("args") or []), **(request.get("kwargs") or {}))


def result_to_json(result: Any) -> str:
    """Serialise an algorithm's result the way the node ships it (numpy and pandas values allowed).

    A :class:`~vantage6nb.algorithm.results.TypedResult` is written with the marker key first,
    which is how the node tells a typed output from plain JSON.

    Examples
    --------
    >>> result_to_json({"n": 3})
    '{"n": 3}'
    >>> from vantage6nb.algorithm.results import count, typed
    >>> result_to_json(typed({"rows": count(3)}))
    '{"v6nb.result": 1, "value": {"rows": {"@type": "count", "n": 3}}}'
    """
    if isinstance(result, TypedResult):
        result = {RESULT_MARKER: 1, "value": result.value}
    return json.dumps(result, default=_json_default, allow_nan=True)


def refusal_result(exc: DisclosureRefused) -> TypedResult:
    """The typed ``refusal`` an entry point writes when a part of it was refused.

    Examples
    --------
    >>> exc = DisclosureRefused("no", organization="2", rule="min_count", threshold=5)
    >>> refusal_result(exc).value["organization_id"], refusal_result(exc).value["rule"]
    (2, 'min_count')
    """
    org = exc.organization
    org_id = int(org) if isinstance(org, int) or (isinstance(org, str) and org.isdigit()) else None
    columns = exc.errors.get("columns") or []
    if isinstance(columns, str):
        columns = [columns]
    return TypedResult(
        refusal(
            rule=exc.rule or "unknown",
            threshold=exc.threshold,
            organization_id=org_id,
            columns=[c for c in columns if isinstance(c, str)],
        )
    )


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, pandas objects: convert without importing either
    if isinstance(obj, TypedResult):
        raise TypeError("typed(...) is the whole result of a method, not a value inside one")
    for attr in ("to_dict", "tolist", "item"):
        if hasattr(obj, attr):
            return getattr(obj, attr)()
    raise TypeError(f"result of type {type(obj).__name__} is not JSON serialisable")
