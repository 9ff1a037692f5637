"""Checks before a task is sent, against store metadata and literal column frames (no server)."""

from __future__ import annotations

import pandas as pd
import pytest

from vantage6nb import catalog
from vantage6nb.client._validate import (
    TaskCheckFailed,
    check_arguments,
    check_columns,
    check_method,
    check_task,
)
from vantage6nb.common import store_metadata as sm
from vantage6nb.common.errors import ValidationError

SUMMARY = catalog.get_algorithm("v6nb/summary").store
CROSSTAB = catalog.get_algorithm("v6nb/crosstab").store
GLM = catalog.get_algorithm("v6nb/glm").store


def frame(rows: list[tuple[int, str, str, str]]) -> pd.DataFrame:
    """Client.columns()'s frame from (organization_id, organization, database, column) rows."""
    return pd.DataFrame(
        [(o, n, d, c, "float") for o, n, d, c in rows],
        columns=["organization_id", "organization", "database", "column", "type"],
    )


PENGUINS = frame(
    [
        (org, name, "default", col)
        for org, name in ((1, "Leiden"), (2, "Utrecht"), (3, "Maastricht"))
        for col in ("species", "island", "bill_length_mm", "body_mass_g")
    ]
)


def test_a_typo_in_the_method_suggests_the_entry_point():
    with pytest.raises(TaskCheckFailed) as err:
        check_method(SUMMARY, "sumary")
    text = str(err.value)
    assert "no method 'sumary'; did you mean 'summary'?" in text
    assert "Choose one of: summary." in text and "summary_partial" in text
    assert err.value.errors["suggestion"] == "summary" and isinstance(err.value, ValidationError)
    assert check_method(SUMMARY, "summary_partial").type == "federated"  # a part may be named


def test_unknown_keyword_with_close_match_and_valid_names():
    problems = check_arguments(SUMMARY.function("summary"), {"colums": ["a"]})
    assert problems == [
        (
            "colums",
            "'summary' has no argument 'colums'; did you mean 'columns'? "
            "Its arguments: columns, organizations.",
        )
    ]


def test_missing_required_and_wrong_types():
    problems = dict(check_arguments(GLM.function("glm"), {"outcome": 3, "max_iter": "ten"}))
    assert problems["outcome"].endswith("expected a column name (text), got int 3.")
    assert "'predictors' (column_list) is required" in problems["predictors"]
    assert problems["max_iter"].endswith("expected an integer, got str 'ten'.")
    assert "family" not in problems  # defaults need not be given
    assert check_arguments(GLM.function("glm"), {"outcome": "y", "predictors": ["x"]}) == []
    bad = dict(
        check_arguments(
            GLM.function("glm"), {"outcome": "y", "predictors": ["x"], "family": "gamma"}
        )
    )
    assert "expected one of 'gaussian', 'binomial', 'poisson'" in bad["family"]


def test_positional_arguments_count_for_required_ones():
    assert check_arguments(CROSSTAB.function("crosstab"), {}, positional=2) == []


def test_a_typo_in_a_column_names_the_close_match_and_the_columns():
    problems = check_columns(
        CROSSTAB.function("crosstab"), {"row": "specie", "col": "island"}, PENGUINS
    )
    assert problems == [
        (
            "row",
            "column 'specie' (argument 'row') is not in the data; did you mean 'species'? "
            "Columns: species, island, bill_length_mm, body_mass_g.",
        )
    ]


def test_a_column_missing_at_some_organizations_names_them():
    data = PENGUINS[~((PENGUINS["organization"] == "Utrecht") & (PENGUINS["column"] == "island"))]
    [(arg, text)] = check_columns(
        CROSSTAB.function("crosstab"), {"row": "species", "col": "island"}, data
    )
    assert arg == "col" and "missing at Utrecht (it is at Leiden, Maastricht)" in text


def test_only_the_task_organizations_and_databases_count():
    data = pd.concat(
        [
            PENGUINS,
            frame([(4, "Elsewhere", "default", "other")]),
            frame([(1, "Leiden", "extra", "only_here")]),
        ]
    )
    fn = SUMMARY.function("summary")
    # Elsewhere is not part of the task: its missing columns do not matter
    assert (
        check_columns(
            fn, {"columns": ["species"]}, data, organizations=[1, 2, 3], databases=["default"]
        )
        == []
    )
    [(_, text)] = check_columns(fn, {"columns": ["only_here"]}, data, databases=["default"])
    assert "not in the data" in text
    assert check_columns(fn, {"columns": ["only_here"]}, data, databases=["extra"]) == []


def test_no_reported_columns_skips_the_column_check():
    empty = frame([])
    assert check_columns(SUMMARY.function("summary"), {"columns": ["nope"]}, empty) == []
    assert check_columns(SUMMARY.function("summary"), {"columns": ["nope"]}, None) == []
    # organizations that report nothing are not judged
    assert (
        check_columns(
            SUMMARY.function("summary"), {"columns": ["species"]}, PENGUINS, organizations=[9]
        )
        == []
    )


def test_check_task_collects_every_problem_in_one_readable_error():
    with pytest.raises(TaskCheckFailed) as err:
        check_task(
            GLM,
            "glm",
            [],
            {"outcom": "y", "predictors": ["bill_lenght_mm"], "max_iter": 2.5},
            columns=PENGUINS,
        )
    text = str(err.value)
    assert text.startswith("Not sent: the task for v6nb/glm (method 'glm') has 3 problems:\n")
    assert "- 'glm' has no argument 'outcom'; did you mean 'outcome'?" in text
    assert "- argument 'max_iter' (integer): expected an integer, got float 2.5." in text
    assert (
        "- column 'bill_lenght_mm' (argument 'predictors') is not in the data; did you mean "
        "'bill_length_mm'?" in text
    )
    assert set(err.value.errors) == {"outcom", "max_iter", "predictors"}
    assert "(outcom:" not in text  # no machine details appended to the sentence


def test_any_arguments_and_none_defaults_pass():
    diag = catalog.find_algorithm("v6nb/diagnostics").store
    check_task(diag, "echo", [1], {"anything": object()})
    check_task(SUMMARY, "summary", [], {"columns": None, "organizations": [1, 2]})
    meta = sm.AlgorithmMetadata("x", "me/x", functions=(sm.Function("f"),))
    with pytest.raises(TaskCheckFailed, match="'f' has no argument 'a'. Its arguments: none."):
        check_task(meta, "f", [], {"a": 1})
