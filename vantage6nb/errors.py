"""The researcher-facing error hierarchy: the same classes as :mod:`vantage6nb.common.errors`.

A notebook can ``except vantage6nb.errors.NotFound`` (or ``vantage6nb.errors.TaskTimeout``) and get
exactly the class the server named in its JSON error body.

Imported in IPython or Jupyter, it shows these errors as a short block instead of a traceback
through the library's frames: the error's summary (for a failed task, one line per organization
with its reason and what to do), the line of yours that raised it, and the details (the nodes'
logs) folded behind a toggle. ``%tb`` still prints the full traceback, ``%xmode Verbose`` brings
tracebacks back for good; plain Python is left as it is.
"""

from __future__ import annotations

import sys
import traceback
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from .common.errors import *  # noqa: F403 - one hierarchy, re-exported whole
from .common.errors import (
    V6Error,
    __all__,  # noqa: F401
    error_html,
)

# the shells showing our errors (so installing twice, or over another package's handler, is safe)
_SHELLS: weakref.WeakSet[Any] = weakref.WeakSet()
_OURS = tuple(
    str(Path(__file__).resolve().parents[1] / pkg)
    for pkg in ("vantage6nb", "server_app", "node_app")
)


def _install_ipython_display(shell: Any = None) -> bool:
    """Show :class:`V6Error` as a short block in ``shell`` (the running IPython's by default).

    Does nothing outside IPython (IPython is never imported for it) and when another handler of
    custom exceptions is installed. Returns whether the display is installed.
    """
    if shell is None:
        ipython = sys.modules.get("IPython")
        if ipython is None:  # not in IPython: plain Python tracebacks stay as they are
            return False
        try:
            shell = ipython.get_ipython()
        except Exception:  # a half-imported or unusual IPython: leave it alone
            return False
        if shell is None:
            return False
    if shell in _SHELLS:
        return True
    if getattr(shell, "custom_exceptions", ()):  # someone else's: not ours to replace
        return False
    shell.set_custom_exc((V6Error,), _show)
    _SHELLS.add(shell)
    return True


def _show(
    shell: Any,
    etype: type[BaseException],
    value: BaseException,
    tb: TracebackType | None,
    tb_offset: int | None = None,
) -> None:
    """IPython's handler for our errors: display the block (text and HTML); no traceback."""
    # what %tb and %debug read, as IPython's own display sets it
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = value
    if getattr(shell.InteractiveTB, "mode", "") == "Verbose" or not isinstance(value, V6Error):
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)  # %xmode Verbose: all of it
        return
    where = _where(tb)
    text = _text(value, where)
    from IPython.display import display

    display({"text/plain": text, "text/html": error_html(value, where=where)}, raw=True)
    if hasattr(shell, "_last_traceback"):  # ipykernel: what the execute reply reports
        shell._last_traceback = text.splitlines()


def _text(exc: V6Error, where: str) -> str:
    """The block as text (a terminal IPython, or a frontend without HTML)."""
    lines = [f"{type(exc).__name__}: {exc.summary}"]
    if where:
        lines.append(where)
    more = ["full traceback: %tb"]
    if exc.details:
        more.insert(0, f"{getattr(exc, 'details_title', 'details')}: sys.last_value.details")
    lines.append("(" + "; ".join(more) + ")")
    return "\n".join(lines)


def _where(tb: TracebackType | None) -> str:
    """The last line outside vantage6nb's own code that led to the error (the researcher's)."""
    frames = [
        f
        for f in traceback.extract_tb(tb)
        if not f.filename.startswith(_OURS) and "site-packages" not in f.filename
    ]
    if not frames:
        return ""
    frame = frames[-1]
    line = (frame.line or "").strip()
    cell = frame.filename.startswith("<ipython-input") or "ipykernel_" in frame.filename
    place = f"line {frame.lineno}" if cell else f"{frame.filename}:{frame.lineno}"
    return f"at {place}: {line}" if line else f"at {place}"


_install_ipython_display()
