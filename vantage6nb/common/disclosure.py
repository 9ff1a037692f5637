"""The disclosure policy a node applies to what it releases, and the refusals it writes.

The vocabulary lives here once: the typed-result marker and type tags, the rule names, the policy
(node.yaml ``disclosure``) with its defaults, and the one format of a refusal's reason, which the
node writes (:meth:`Refusal.reason`) and the client reads back (:func:`parse_reason`). The check
itself is :func:`vantage6nb.common.release.check_output`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import contract
from .errors import ConfigurationError

__all__ = [
    "ENTRY_POINT",
    "FEDERATED",
    "FUNCTIONS_LABEL",
    "RESULT_MARKER",
    "ROLES",
    "RULES",
    "TYPES",
    "TYPE_KEY",
    "DisclosurePolicy",
    "Refusal",
    "describe_suppressed",
    "parse_reason",
    "unwrap_result",
]

#: The first key of a typed output: ``{"v6nb.result": 1, "value": ...}``.
RESULT_MARKER = "v6nb.result"
#: The key that makes a JSON object a typed value.
TYPE_KEY = "@type"
#: The typed values a result may hold.
TYPES = ("count", "count_table", "estimates", "moments", "refusal", "suppressed")

#: The roles an algorithm declares for its functions (``vantage6nb.algorithm.federated`` ...).
FEDERATED = "federated"  # a per-node part: runs only as a subtask of an entry point
ENTRY_POINT = "entry_point"  # what a researcher calls; it pools the (checked) parts
ROLES = (ENTRY_POINT, FEDERATED)
#: The image label holding ``{"functions": {name: role}}``.
FUNCTIONS_LABEL = "org.vantage6nb.functions"

#: Every rule a decision or a refusal can name.
RULES = (
    "denied_column",
    "direct_part",
    "dominance",
    "estimates",
    "evidence",
    "extremes",
    "levels_density",
    "malformed",
    "max_levels",
    "min_count",
    "missing",
    "not_allowed_column",
    "p_percent",
    "untyped",
    "untyped_number",
    "zeros",
)

_CHOICES = {
    "small_cells": ("refuse", "suppress"),
    "zeros": ("release", "refuse"),
    "missing": ("release", "suppress"),
    "extremes": ("deny", "round", "allow"),
}


@dataclass(frozen=True)
class DisclosurePolicy:
    """What a node releases. Defaults are conservative; ``docs/privacy.md`` says why for each.

    Examples
    --------
    >>> policy = DisclosurePolicy.from_mapping({"min_count": 10, "dominance": {"k": 0.8}})
    >>> policy.min_count, policy.dominance_n, policy.dominance_k, policy.extremes
    (10, 2, 0.8, 'deny')
    """

    enabled: bool = True
    min_count: int = 5
    max_levels: int = 40
    levels_density: float = 0.33
    small_cells: str = "refuse"
    zeros: str = "release"
    missing: str = "release"
    dominance_n: int = 2
    dominance_k: float = 0.9
    p_percent: float = 0.1
    extremes: str = "deny"
    extremes_digits: int = 2
    glm_ratio: float = 0.33
    allowed_columns: tuple[str, ...] = ()
    denied_columns: tuple[str, ...] = ()
    untyped_images: tuple[str, ...] = ()
    direct_parts: tuple[str, ...] = ()
    algorithm_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> DisclosurePolicy:
        """The policy from node.yaml's ``disclosure`` mapping (missing keys: their defaults).

        Raises :class:`ConfigurationError` naming the key that is wrong and what it takes.
        """
        raw = dict(raw or {})
        if not isinstance(raw, dict):
            raise _bad("disclosure", "a mapping of policy keys")
        known = {f.name for f in fields(cls)} - {"dominance_n", "dominance_k"} | {"dominance"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown disclosure setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.",
                errors={f"disclosure.{k}": "unknown" for k in unknown},
            )
        values: dict[str, Any] = {}
        defaults = cls()
        if "dominance" in raw:
            dom = raw.pop("dominance")
            if not isinstance(dom, Mapping) or set(dom) - {"n", "k"}:
                raise _bad("dominance", "a mapping {n: int, k: fraction}")
            values["dominance_n"] = _int(dom.get("n", defaults.dominance_n), "dominance.n", 1)
            values["dominance_k"] = _fraction(dom.get("k", defaults.dominance_k), "dominance.k")
        for key, value in raw.items():
            default = getattr(defaults, key)
            if key in _CHOICES:
                if value not in _CHOICES[key]:
                    raise _bad(key, " or ".join(_CHOICES[key]))
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise _bad(key, "true or false")
            elif isinstance(default, int):
                value = _int(value, key, 1)
            elif isinstance(default, float):
                value = _fraction(value, key)
            elif isinstance(default, tuple):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise _bad(key, "a list of strings")
                value = tuple(value)
            elif key == "algorithm_env":
                if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and k and isinstance(v, str | int | float)
                    for k, v in value.items()
                ):
                    raise _bad(key, "a mapping of variable names to values")
                taken = sorted(k for k in value if _reserved(k))
                if taken:
                    raise _bad(
                        key, f"variables other than the algorithm contract's ({', '.join(taken)})"
                    )
                value = {k: str(v) for k, v in value.items()}
            values[key] = value
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        """The policy as node.yaml spells it (what ``v6nb node policy`` prints).

        Examples
        --------
        >>> DisclosurePolicy().to_mapping()["dominance"]
        {'n': 2, 'k': 0.9}
        """
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key == "dominance_n":
                out["dominance"] = {"n": self.dominance_n, "k": self.dominance_k}
            elif key == "dominance_k":
                continue
            else:
                out[key] = list(value) if isinstance(value, tuple) else value
        out["algorithm_env"] = dict(self.algorithm_env)
        return out


def _reserved(name: str) -> bool:
    """Whether an environment variable is the algorithm contract's (the node sets those)."""
    return (
        name in contract.CONTRACT_VARIABLES
        or name == contract.ENCODED_MARKER
        or name.endswith(("_DATABASE_URI", "_DATABASE_TYPE"))
        or "_DB_PARAM_" in name
    )


def _bad(key: str, expected: str) -> ConfigurationError:
    return ConfigurationError(
        f"disclosure.{key} in node.yaml must be {expected}; fix it and start the node again.",
        errors={f"disclosure.{key}": f"expected {expected}"},
    )


def _int(value: Any, key: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(key, f"a whole number of at least {low}")
    return value


def _fraction(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _bad(key, "a number from 0 to 1")
    return float(value)


# -- refusals --------------------------------------------------------------------------------------
_REASON = re.compile(
    r"^refused by (?:this node's disclosure policy|the disclosure policy of organization "
    r"(?P<org>\d+)) \(rule (?P<rule>[a-z_]+)(?:, threshold (?P<threshold>[0-9.eE+-]+))?\): "
    r"(?P<what>.*)$",
    re.DOTALL,
)


@dataclass
class Refusal:
    """Why a node released nothing. ``what`` is safe to show (no value, no count); ``local``
    holds the details kept on the node (its log and audit log), never uploaded.

    Examples
    --------
    >>> r = Refusal("min_count", 5, "a cell of species x island is below this node's minimum of 5 records")
    >>> parse_reason(r.reason()) == r
    True
    """

    rule: str
    threshold: float | int | None
    what: str
    organization: str | None = None  # the organization (id) whose node refused, when passed on
    local: str = field(default="", compare=False)

    def reason(self) -> str:
        """The run's reason, in the one format :func:`parse_reason` reads."""
        who = (
            f"the disclosure policy of organization {self.organization}"
            if self.organization
            else "this node's disclosure policy"
        )
        limit = "" if self.threshold is None else f", threshold {_number(self.threshold)}"
        return f"refused by {who} (rule {self.rule}{limit}): {self.what}"


def parse_reason(reason: str | None) -> Refusal | None:
    """The :class:`Refusal` a run's reason describes, or None for any other reason.

    Examples
    --------
    >>> parse_reason("refused by this node's disclosure policy (rule untyped): image x ...").rule
    'untyped'
    >>> parse_reason("crashed (exit code 1)") is None
    True
    """
    match = _REASON.match(reason or "")
    if match is None:
        return None
    raw = match.group("threshold")
    threshold: float | int | None = None
    if raw is not None:
        number = float(raw)
        threshold = int(number) if number.is_integer() and "." not in raw else number
    return Refusal(match.group("rule"), threshold, match.group("what"), match.group("org"))


def unwrap_result(result: Any) -> Any:
    """The value of a typed result (``{"v6nb.result": 1, "value": v}`` -> ``v``); any other
    result as it is.

    Examples
    --------
    >>> unwrap_result({"v6nb.result": 1, "value": {"@type": "count", "n": 7}})
    {'@type': 'count', 'n': 7}
    >>> unwrap_result({"n": 7})
    {'n': 7}
    """
    if (
        isinstance(result, dict)
        and RESULT_MARKER in result
        and set(result) == {RESULT_MARKER, "value"}
    ):
        return result["value"]
    return result


def describe_suppressed(value: Mapping[str, Any]) -> str:
    """A sentence for a ``suppressed`` value (what the researcher's table shows for it).

    Examples
    --------
    >>> describe_suppressed({"rule": "min_count", "threshold": 5, "organizations": [2]})
    "suppressed by organization 2's disclosure policy (rule min_count, threshold 5)"
    """
    rule = value.get("rule") or "unknown"
    threshold = value.get("threshold")
    orgs = [str(o) for o in value.get("organizations") or []]
    who = (
        f"organization {', '.join(orgs)}'s disclosure policy"
        if len(orgs) == 1
        else f"the disclosure policies of organizations {', '.join(orgs)}"
        if orgs
        else "a node's disclosure policy"
    )
    limit = "" if threshold is None else f", threshold {_number(threshold)}"
    return f"suppressed by {who} (rule {rule}{limit})"


def _number(value: float | int) -> str:
    return str(int(value)) if isinstance(value, int) or float(value).is_integer() else str(value)
