"""The researcher-facing error hierarchy: the same classes as :mod:`vantage6nb.common.errors`.

A notebook can ``except vantage6nb.errors.NotFound`` (or ``vantage6nb.errors.TaskTimeout``) and get
exactly the class the server named in its JSON error body.
"""

from __future__ import annotations

from .common.errors import *  # noqa: F403 - one hierarchy, re-exported whole
from .common.errors import __all__  # noqa: F401
