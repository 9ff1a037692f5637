"""docs/privacy.md states every disclosure key with its default and every rule; configuration.md lists the keys."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from vantage6nb.common.disclosure import RULES, DisclosurePolicy

DOCS = Path(__file__).resolve().parents[1] / "docs"
PRIVACY = (DOCS / "privacy.md").read_text(encoding="utf-8")
CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")


def _spelled(value: Any) -> str:
    """A default as the docs' tables write it: a word as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _expected() -> dict[str, str]:
    """Every policy key (``dominance`` as ``dominance.n`` and ``dominance.k``) -> its default."""
    out: dict[str, str] = {}
    for key, value in DisclosurePolicy().to_mapping().items():
        if key == "dominance":
            out.update({f"dominance.{k}": _spelled(v) for k, v in value.items()})
        else:
            out[key] = _spelled(value)
    return out


def _table(text: str) -> dict[str, str]:
    """``| `key` | `default` | ...`` rows of a markdown text: key -> default (the first row wins)."""
    rows: dict[str, str] = {}
    for m in re.finditer(r"^\| `(?P<key>[^`]+)` \| `(?P<default>[^`]*)` \|", text, re.M):
        rows.setdefault(m["key"], m["default"])
    return rows


@pytest.mark.parametrize(("key", "default"), sorted(_expected().items()))
def test_privacy_md_gives_every_key_with_its_default(key: str, default: str) -> None:
    rows = _table(PRIVACY)
    assert key in rows, f"docs/privacy.md: no table row for disclosure key `{key}`"
    assert rows[key] == default, (
        f"docs/privacy.md says `{key}` defaults to {rows[key]}, not {default}"
    )


@pytest.mark.parametrize("key", sorted(DisclosurePolicy().to_mapping()))
def test_privacy_md_has_a_section_for_every_key(key: str) -> None:
    assert re.search(rf"^### .*`{re.escape(key)}`", PRIVACY, re.M), (
        f"docs/privacy.md: no section heading names `{key}`; say what it does and why its default"
    )


@pytest.mark.parametrize("rule", RULES)
def test_privacy_md_names_every_rule(rule: str) -> None:
    assert re.search(rf"^\| `{rule}` \|", PRIVACY, re.M), (
        f"docs/privacy.md: rule `{rule}` is missing from the Rules table"
    )


def test_configuration_md_lists_every_key() -> None:
    section = CONFIGURATION.split("### Disclosure policy keys", 1)
    assert len(section) == 2, "docs/configuration.md has no 'Disclosure policy keys' subsection"
    rows = _table(section[1])
    for key, value in DisclosurePolicy().to_mapping().items():
        assert key in rows, f"docs/configuration.md: disclosure key `{key}` not listed"
        if key != "dominance":
            assert rows[key] == _spelled(value), (key, rows[key])
