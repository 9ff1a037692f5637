"""The algorithm entry point: read the contract's environment, dispatch the method, write the output."""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from ..common import contract

__all__ = ["wrap_algorithm"]


def wrap_algorithm(module: str | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Run the method named in ``INPUT_FILE`` from ``module`` and write its JSON result to ``OUTPUT_FILE``.

    ``module`` defaults to the ``PKG_NAME`` environment variable (the vantage6 image convention).
    Returns the process exit code: 0 on success, 1 when the algorithm raised (traceback on stderr).

    Examples
    --------
    In a Dockerfile: ``CMD ["python", "-m", "vantage6nb.algorithm", "my_package"]``.
    """
    env = os.environ if environ is None else environ
    module = module or env.get("PKG_NAME")
    if not module:
        print("vantage6nb.algorithm: no algorithm module given (argument or PKG_NAME)", file=sys.stderr)
        return 2
    input_file = contract.read_environment(env, contract.INPUT_FILE)
    output_file = contract.read_environment(env, contract.OUTPUT_FILE)
    if not input_file or not output_file:
        print("vantage6nb.algorithm: INPUT_FILE and OUTPUT_FILE must be set", file=sys.stderr)
        return 2
    try:
        with open(input_file, "rb") as fh:
            request = contract.parse_input(fh.read())
        mod = importlib.import_module(module)
        func = getattr(mod, request["method"], None)
        if func is None or not callable(func) or request["method"].startswith("_"):
            raise AttributeError(f"algorithm module '{module}' has no method '{request['method']}'")
        result: Any = func(*request["args"], **request["kwargs"])
        payload = json.dumps(result, default=_json_default, allow_nan=True)
    except Exception:  # the algorithm's own failure: its traceback is the run's log
        traceback.print_exc()
        return 1
    tmp = f"{output_file}.partial"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(payload)
    os.replace(tmp, output_file)
    return 0


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, pandas objects: convert without importing either
    for attr in ("to_dict", "tolist", "item"):
        if hasattr(obj, attr):
            return getattr(obj, attr)()
    raise TypeError(f"result of type {type(obj).__name__} is not JSON serialisable")
