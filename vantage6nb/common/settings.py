"""Declared settings, layered: defaults -> YAML file -> ``V6NB_*`` environment -> explicit overrides.

Server and node each declare their settings once with :class:`Setting`; ``docs/configuration.md``
documents every one (a test keeps that true). Reading the YAML file is the caller's job: this module
does no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

__all__ = ["Setting", "env_name", "resolve_settings"]


@dataclass(frozen=True)
class Setting:
    """One configuration key.

    ``type`` is one of ``str``, ``int``, ``float``, ``bool``, ``list`` or ``dict``; lists and dicts
    given through the environment are JSON.
    """

    name: str
    default: Any
    help: str
    type: type = str


def env_name(prefix: str, name: str) -> str:
    """``env_name("server", "port")`` -> ``"V6NB_SERVER_PORT"``."""
    return f"V6NB_{prefix}_{name}".upper().replace("-", "_").replace(".", "_")


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    if value is None:
        return None
    t = setting.type
    try:
        if t is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if t in (list, dict):
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, t):
                raise ValueError(value)
            return value
        if t is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return t(value)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"Setting '{setting.name}' from {source} must be a {t.__name__}, got {value!r}.",
            errors={setting.name: f"expected {t.__name__}"},
        ) from exc


def resolve_settings(
    settings: Sequence[Setting],
    *,
    prefix: str,
    file_values: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Resolve every declared setting; unknown keys in the file or overrides are an error when strict."""
    known = {s.name: s for s in settings}
    for source, values in (("the configuration file", file_values), ("overrides", overrides)):
        unknown = sorted(set(values or {}) - set(known))
        if unknown and strict:
            raise ConfigurationError(
                f"Unknown setting(s) in {source}: {', '.join(unknown)}. "
                "See docs/configuration.md for the keys that exist.",
                errors={k: "unknown setting" for k in unknown},
            )
    out: dict[str, Any] = {}
    env = environ or {}
    for s in settings:
        value, source = s.default, "the defaults"
        if file_values and s.name in file_values:
            value, source = file_values[s.name], "the configuration file"
        name = env_name(prefix, s.name)
        if name in env:
            value, source = env[name], f"environment variable {name}"
        if overrides and s.name in overrides:
            value, source = overrides[s.name], "overrides"
        out[s.name] = _coerce(s, value, source)
    return out
