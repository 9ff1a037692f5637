"""The vantage6nb version, in the shared core, so the server and nodes need not import the library.

It is the ``version`` of ``pyproject.toml``, written here as a constant as
``vantage6nb/_version.py`` has it (no installed metadata needed; a test keeps the three equal).

Examples
--------
>>> from vantage6nb.common.version import __version__
>>> __version__.count(".")
2
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
