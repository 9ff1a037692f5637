"""Algorithms built on vantage6's ``vantage6-algorithm-tools``: tell them apart, run them through its wrapper."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys

from ..common import contract

__all__ = ["VANTAGE6_TOOLS", "built_on_vantage6", "run_vantage6_wrapper"]

#: The distribution vantage6 algorithms depend on.
VANTAGE6_TOOLS = "vantage6-algorithm-tools"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_MENTIONS_TOOLS = re.compile(r"vantage6[-_.]+algorithm[-_.]+tools", re.IGNORECASE)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def built_on_vantage6(module: str) -> bool:
    """True when ``module``'s installed distribution requires ``vantage6-algorithm-tools``.

    A module that is not part of an installed distribution (a loose file on ``sys.path``) is not
    "built on" the tools, even if it imports them: it runs through our wrapper, which decodes the
    environment for it the same way.

    Only the distributions that require the tools are asked which top-level packages they hold
    (reading every distribution's file list, as ``packages_distributions()`` does, costs
    50-150 ms per cold start; the requirements alone a few).

    Examples
    --------
    >>> built_on_vantage6("json")
    False
    """
    top = module.split(".", 1)[0]
    try:
        for dist in importlib.metadata.distributions():
            # a plain text search first: parsing every distribution's metadata costs more
            text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
            if not _MENTIONS_TOOLS.search(text):
                continue
            if any(_is_tools(req) for req in dist.requires or []) and top in _top_levels(dist):
                return True
    except Exception:  # a broken installation's metadata: not ours to judge
        return False
    return False


def _is_tools(requirement: str) -> bool:
    m = _NAME.match(requirement)
    return bool(m) and _normalise(m.group(1)) == VANTAGE6_TOOLS


def _top_levels(dist: importlib.metadata.Distribution) -> set[str]:
    """The top-level import names ``dist`` provides, as ``packages_distributions()`` reads them."""
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return set(declared)
    names = set()
    for f in dist.files or []:
        parts = f.parts
        if len(parts) > 1:
            names.add(parts[0])
        elif f.suffix == ".py":
            names.add(f.stem)
    return {n for n in names if "." not in n}


def run_vantage6_wrapper(module: str) -> int:
    """Run ``module`` through vantage6's own ``wrap_algorithm`` (which reads ``PKG_NAME``).

    The environment is decoded in place first (vantage6's wrapper does so too; decoding twice
    is harmless). Returns 0, or the exit code vantage6's wrapper exits with.
    """
    if importlib.util.find_spec("vantage6") is None:
        print(
            f"vantage6nb.algorithm: {module} is built on {VANTAGE6_TOOLS}, which this interpreter "
            f"lacks: install it (pip install {VANTAGE6_TOOLS}) or give the image its own "
            "interpreter (process_algorithms: {module, python} in node.yaml)",
            file=sys.stderr,
        )
        return 2
    contract.decode_environment(os.environ)
    os.environ["PKG_NAME"] = module
    from vantage6.algorithm.tools.wrap import wrap_algorithm  # type: ignore[import-not-found]

    try:
        wrap_algorithm()
    except SystemExit as exc:  # vantage6's wrapper exits 1 after printing why
        code = exc.code
        return code if isinstance(code, int) else 1
    return 0
