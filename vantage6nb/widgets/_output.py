"""ErrorOutput: callback errors shown inside a widget's Output area instead of as a traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import ipywidgets as widgets

from ..common.errors import V6Error

__all__ = ["ErrorOutput", "describe_error"]

log = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """A one-line, human message for an exception: our typed errors carry one already.

    Examples
    --------
    >>> from vantage6nb.common.errors import NotFound
    >>> describe_error(NotFound("Task 3 does not exist."))
    'Task 3 does not exist.'
    >>> describe_error(ValueError("bad"))
    'ValueError: bad'
    """
    if isinstance(exc, V6Error):
        return str(exc) or type(exc).__name__
    name = type(exc).__name__
    text = str(exc)
    if "ConnectionError" in name or "ConnectTimeout" in name:
        return (
            f"Cannot reach the server ({text[:200]}). Check the URL and that the server is running."
        )
    return f"{name}: {text}" if text else name


class ErrorOutput:
    """An ``ipywidgets.Output`` that collects errors raised in widget callbacks.

    Errors are written as stderr output items (rendered red in JupyterLab) and kept in
    :attr:`messages`, so they can be checked without a kernel.

    Examples
    --------
    >>> out = ErrorOutput()
    >>> with out.catch("logging in"):
    ...     raise ValueError("no such user")
    >>> out.messages
    ['Error while logging in: ValueError: no such user']
    """

    def __init__(self) -> None:
        self.widget = widgets.Output(layout={"max_height": "12em", "overflow": "auto"})
        self.widget.add_class("v6nb-errors")
        self.messages: list[str] = []

    @contextmanager
    def catch(self, action: str) -> Iterator[None]:
        """Run the block; an exception is shown (and logged), not raised."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - shown to the user instead of a traceback
            log.debug("error while %s", action, exc_info=True)
            self.show_message(f"Error while {action}: {describe_error(exc)}")

    def show_message(self, message: str) -> None:
        """Show one message in the output area."""
        self.messages.append(message)
        self.widget.append_stderr(message + "\n")

    def clear(self) -> None:
        """Forget earlier messages."""
        self.messages.clear()
        self.widget.outputs = ()
