"""The client's own warnings in a notebook: a readable card instead of Python's file:line header."""

from __future__ import annotations

import sys
import warnings
from typing import Any, TextIO

__all__ = ["install", "in_kernel"]

_original: Any = None  # warnings.showwarning before install()


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (an IPython shell with a kernel).

    Examples
    --------
    >>> in_kernel()
    False
    """
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - no usable shell
        return False
    return getattr(shell, "kernel", None) is not None


def install() -> None:
    """Show :class:`NodeOfflineWarning` and :class:`UnverifiedResultWarning` as cards in a kernel.

    Only how they are *shown* changes: filters still apply (``simplefilter("ignore", ...)``
    silences them, ``"error"`` raises), ``catch_warnings(record=True)`` still records them, and
    every other warning goes to the previous ``warnings.showwarning``. Idempotent; a no-op
    outside a kernel.
    """
    global _original
    if _original is not None or not in_kernel():
        return
    _original = warnings.showwarning
    warnings.showwarning = _show


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    from ._outcome import NodeOfflineWarning, UnverifiedResultWarning

    if file is None and issubclass(category, (NodeOfflineWarning, UnverifiedResultWarning)):
        try:
            from IPython.display import HTML, display

            from ._html import note_html

            display(HTML(note_html(str(message), category.__name__)))
            return
        except Exception:  # noqa: BLE001 - fall back to the plain warning
            pass
    _original(message, category, filename, lineno, file, line)
