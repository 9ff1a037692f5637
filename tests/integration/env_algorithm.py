"""A test algorithm (process runtime): the values of the environment variables it is asked about."""

from __future__ import annotations

from vantage6nb.algorithm import get_env


def environment(names: list[str]) -> dict[str, str | None]:
    """``{name: value}`` as the algorithm sees them (decoded), None for a variable not set."""
    return {name: get_env(name) for name in names}
