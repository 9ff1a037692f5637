"""Algorithm declarations: types from signatures, argument parsing, the registry, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Literal

import pytest

import vantage6nb.widgets as w
from vantage6nb import catalog
from vantage6nb.catalog import method_from_function
from vantage6nb.common.errors import NotFound, ValidationError


def _partial(
    df,
    columns: Sequence[str] | str | None = None,
    ddof: int = 1,
    scale: float = 1.0,
    robust: bool = False,
    how: Literal["mean", "median"] = "mean",
    extra: dict | None = None,
    label="x",
):
    """Do it."""


def _central(client, row: str, organizations: list[int] | None = None):
    """Central."""


def test_parameters_follow_annotations_and_defaults():
    m = method_from_function(_partial)
    kinds = {p.name: (p.kind, p.required, p.optional) for p in m.parameters}
    assert kinds == {
        "columns": ("list[str]", False, True),
        "ddof": ("int", False, False),
        "scale": ("float", False, False),
        "robust": ("bool", False, False),
        "how": ("choice", False, False),
        "extra": ("json", False, True),
        "label": ("str", False, False),
    }
    assert m.doc == "Do it." and not m.central
    assert dict((p.name, p.choices) for p in m.parameters)["how"] == ("mean", "median")


def test_central_method_hides_client_and_organizations():
    m = method_from_function(_central)
    assert m.central and m.takes_organizations
    assert [(p.name, p.required) for p in m.parameters] == [("row", True)]


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("list[str]", " a, b ,,c ", ["a", "b", "c"]),
        ("list[int]", "1,2", [1, 2]),
        ("int", "7", 7),
        ("float", "2.5", 2.5),
        ("json", '{"a": [1]}', {"a": [1]}),
        ("str", "species", "species"),
    ],
)
def test_parse(kind, text, expected):
    assert w.Parameter("p", kind).parse(text) == expected


def test_parse_blank_and_bad_values():
    assert w.Parameter("p", "list[str]", optional=True).parse("") is None
    assert w.Parameter("p", "int", default=3).parse("") == 3
    with pytest.raises(ValidationError) as err:
        w.Parameter("row", "str", required=True).parse("  ")
    assert err.value.errors == {"row": "required"}
    with pytest.raises(ValidationError, match="must be int"):
        w.Parameter("n", "int").parse("three")


def test_shipped_algorithms_are_declared_from_their_modules():
    algos = w.known_algorithms()
    summary, crosstab = algos["v6nb/summary"], algos["v6nb/crosstab"]
    assert [m.name for m in summary.methods] == ["summary", "summary_partial"]
    assert summary.default_method == "summary" and summary.method("summary").central
    assert [p.name for p in crosstab.method("crosstab").parameters] == ["row", "col", "dropna"]
    assert not crosstab.method("crosstab_partial").central
    with pytest.raises(NotFound, match="choose one of: crosstab, crosstab_partial"):
        crosstab.method("nope")


def test_register_and_get():
    algo = w.algorithm_from_module(
        "tests.widgets.test_catalog", image="test/catalog", methods=["_partial"]
    )
    assert w.register_algorithm(algo) is algo
    assert w.get_algorithm("test/catalog").methods[0].name == "_partial"
    with pytest.raises(NotFound, match="register_algorithm"):
        w.get_algorithm("nobody/nothing")


@pytest.mark.parametrize("module", [w, catalog])
def test_all_is_sorted_and_honest(module):
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError):
        w.NoSuchWidget  # noqa: B018


def test_widgets_offer_the_catalog_itself():
    assert w.register_algorithm is catalog.register_algorithm
    assert w.Algorithm is catalog.Algorithm


def test_shipped_algorithms_turn_results_into_frames_with_their_own_function():
    from vantage6nb.algorithms import crosstab, summary

    algos = w.known_algorithms()
    assert algos["v6nb/summary"].to_frame is summary.summary_frame
    assert algos["v6nb/crosstab"].to_frame is crosstab.crosstab_frame


def test_import_does_not_load_ipywidgets():
    code = (
        "import sys, vantage6nb.widgets as w; w.known_algorithms(); "
        "print('ipywidgets' in sys.modules, 'pandas' in sys.modules); w.Login; "
        "print('ipywidgets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


def test_the_catalog_needs_no_widgets():
    code = (
        "import sys, vantage6nb.catalog as c; c.known_algorithms(); "
        "print(sorted(m for m in ('ipywidgets', 'pandas', 'vantage6nb.widgets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
