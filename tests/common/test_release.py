"""The node's output check: one test per policy rule (each fails when its rule is removed)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from vantage6nb.common.disclosure import (
    RULES,
    DisclosurePolicy,
    Refusal,
    describe_suppressed,
    parse_reason,
)
from vantage6nb.common.errors import ConfigurationError
from vantage6nb.common.release import check_output, check_request, is_typed

ASKED = json.dumps({"method": "crosstab_partial", "kwargs": {"row": "species", "col": "island"}})


def typed(value: Any) -> bytes:
    return json.dumps({"v6nb.result": 1, "value": value}).encode()


def released(value: Any, policy: DisclosurePolicy | None = None, **kw: Any) -> Any:
    release = check_output(typed(value), policy or DisclosurePolicy(), image="v6nb/x", **kw)
    assert release.refusal is None, release.refusal
    assert release.data is not None
    return json.loads(release.data)["value"]


def refused(value: Any, policy: DisclosurePolicy | None = None, **kw: Any) -> Refusal:
    kw.setdefault("asked", ASKED.encode())
    release = check_output(typed(value), policy or DisclosurePolicy(), image="v6nb/x", **kw)
    assert release.data is None and release.refusal is not None
    return release.refusal


def table(*cells: list[Any], names: tuple[str, ...] = ("species", "island")) -> dict[str, Any]:
    return {"@type": "count_table", "names": list(names), "cells": [list(c) for c in cells]}


def moments(count: int = 20, **kw: Any) -> dict[str, Any]:
    base = {
        "@type": "moments",
        "column": "x",
        "count": count,
        "missing": 0,
        "mean": 2.0,
        "m2": 4.0,
        "min": 1.26,
        "max": 3.75,
        "evidence": {"abs_sum": 40.0, "top": [3.75, 3.5]},
    }
    return {**base, **kw}


def assert_no_number(text: str, *numbers: int) -> None:
    """A refusal's text holds no protected count (the threshold is not protected)."""
    for n in numbers:
        assert not re.search(rf"\b{n}\b", text), (n, text)


# -- min_count -------------------------------------------------------------------------------------
def test_min_count_refuses_a_small_cell_without_saying_its_count() -> None:
    refusal = refused(table(["A", "x", 12], ["A", "y", 2], ["B", "x", 9]))
    assert refusal.rule == "min_count" and refusal.threshold == 5
    assert "species x island" in refusal.what
    assert_no_number(refusal.reason(), 2, 12, 9)
    assert "'A'" not in refusal.reason() and "y" not in refusal.what.split()


def test_min_count_passes_cells_at_the_threshold() -> None:
    out = released(table(["A", "x", 5], ["B", "x", 7]))
    assert out["cells"] == [["A", "x", 5], ["B", "x", 7]]


def test_small_cells_suppress_mode_nulls_the_cell_and_drops_the_total() -> None:
    value = {**table(["A", "x", 12], ["A", "y", 2]), "total": 14}
    out = released(value, DisclosurePolicy(small_cells="suppress"))
    assert out["cells"] == [["A", "x", 12], ["A", "y", None]]
    assert "total" not in out  # the total minus the others would give the suppressed cell back


def test_total_is_kept_when_nothing_is_suppressed() -> None:
    out = released({**table(["A", "x", 12], ["A", "y", 7]), "total": 19})
    assert out["total"] == 19


def test_min_count_suppresses_a_small_count_and_moments() -> None:
    out = released({"rows": {"@type": "count", "n": 3}, "x": moments(count=4)})
    assert out["rows"] == {"@type": "suppressed", "rule": "min_count", "threshold": 5}
    assert out["x"]["@type"] == "suppressed" and out["x"]["rule"] == "min_count"
    assert released({"@type": "count", "n": 0}) == {"@type": "count", "n": 0}
    assert released({"@type": "count", "n": 5}) == {"@type": "count", "n": 5}


# -- levels ----------------------------------------------------------------------------------------
def test_max_levels_refuses_a_continuous_column() -> None:
    cells = [[f"{i / 10:.1f}", "A", 5] for i in range(60)]
    refusal = refused(table(*cells), DisclosurePolicy(levels_density=1.0))
    assert refusal.rule == "max_levels" and refusal.threshold == 40
    assert "species" in refusal.what


def test_levels_density_refuses_a_column_with_nearly_one_level_per_record() -> None:
    cells = [[f"id{i}", "A", 5] for i in range(30)]  # 30 levels, 150 records: 0.2 per record
    assert released(table(*cells), DisclosurePolicy(levels_density=0.33))
    refusal = refused(table(*cells), DisclosurePolicy(levels_density=0.1))
    assert refusal.rule == "levels_density"


# -- zeros and missing -----------------------------------------------------------------------------
def test_zeros_refuse_mode_refuses_a_table_with_empty_cells() -> None:
    value = table(["A", "x", 12], ["B", "y", 9])  # (A, y) and (B, x) are empty
    assert released(value)["cells"]
    assert refused(value, DisclosurePolicy(zeros="refuse")).rule == "zeros"
    zero = released({"@type": "count", "n": 0}, DisclosurePolicy(zeros="refuse"))
    assert zero == released({"@type": "count", "n": 2})  # a zero looks like any small count


def test_missing_values_never_refuse_the_column_and_suppress_mode_hides_a_small_missing() -> None:
    out = released({"x": moments(missing=1)})
    assert out["x"]["@type"] == "moments" and out["x"]["missing"] == 1
    out = released({"x": moments(missing=1)}, DisclosurePolicy(missing="suppress"))
    assert out["x"]["@type"] == "moments" and out["x"]["missing"] is None
    assert out["x"]["mean"] == 2.0


# -- dominance and p-percent -----------------------------------------------------------------------
def test_dominance_suppresses_a_mean_two_records_dominate() -> None:
    value = {"x": moments(evidence={"abs_sum": 100.0, "top": [80.0, 15.0]})}
    assert released(value)["x"] == {"@type": "suppressed", "rule": "dominance", "threshold": 0.9}
    relaxed = DisclosurePolicy(dominance_k=1.0, p_percent=0.0)
    assert released(value, relaxed)["x"]["@type"] == "moments"


def test_p_percent_suppresses_when_the_rest_pins_the_largest_within_p() -> None:
    # without the two largest, 1.0 is left: the largest (60) is known to within 1/60 < 10 %
    value = {"x": moments(evidence={"abs_sum": 81.0, "top": [60.0, 20.0]})}
    policy = DisclosurePolicy(dominance_k=1.0)
    assert released(value, policy)["x"]["rule"] == "p_percent"
    assert (
        released(value, DisclosurePolicy(dominance_k=1.0, p_percent=0.0))["x"]["@type"] == "moments"
    )


def test_evidence_is_never_released_and_required_of_a_part() -> None:
    out = released({"x": moments()})
    assert "evidence" not in out["x"]
    no_evidence = {k: v for k, v in moments().items() if k != "evidence"}
    assert released({"x": no_evidence})["x"]["rule"] == "evidence"
    assert released({"x": no_evidence}, entry_point=True)["x"]["@type"] == "moments"


# -- extremes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "low", "high"), [("deny", None, None), ("round", 1.3, 3.8), ("allow", 1.26, 3.75)]
)
def test_extremes_follow_the_policy(mode: str, low: float | None, high: float | None) -> None:
    out = released({"x": moments()}, DisclosurePolicy(extremes=mode))["x"]
    assert (out["min"], out["max"]) == (low, high)


# -- columns ---------------------------------------------------------------------------------------
def test_denied_and_allowed_columns() -> None:
    policy = DisclosurePolicy(denied_columns=("x",))
    assert released({"x": moments()}, policy)["x"]["rule"] == "denied_column"
    assert refused(table(["A", "x", 9]), DisclosurePolicy(denied_columns=("island",))).rule == (
        "denied_column"
    )
    allowed = DisclosurePolicy(allowed_columns=("y",))
    assert released({"x": moments()}, allowed)["x"]["rule"] == "not_allowed_column"
    assert released({"x": moments(column="y")}, allowed)["x"]["@type"] == "moments"
    asked = b'{"kwargs": {"columns": ["ssn", "age"]}}'
    assert check_request(asked, DisclosurePolicy(denied_columns=("ssn",))).rule == "denied_column"
    assert check_request(asked, DisclosurePolicy()) is None


# -- estimates -------------------------------------------------------------------------------------
def test_estimates_need_records_per_parameter() -> None:
    value = {"@type": "estimates", "values": {"beta": [0.1, 0.2]}, "n": 30, "parameters": 5}
    assert released(value)["values"] == {"beta": [0.1, 0.2]}
    assert released({**value, "parameters": 11})["rule"] == "estimates"
    assert released({**value, "n": 4})["rule"] == "min_count"


# -- untyped ---------------------------------------------------------------------------------------
def test_untyped_output_is_refused_unless_the_image_is_trusted() -> None:
    data = b'{"rows": 1, "mean": 42.5}'
    release = check_output(data, DisclosurePolicy(), image="evil/leaky:1")
    assert release.data is None and release.refusal.rule == "untyped"
    assert "disclosure.untyped_images" in release.refusal.what
    trusted = DisclosurePolicy(untyped_images=("evil/*",))
    assert check_output(data, trusted, image="evil/leaky:1").data == data


def test_a_bare_number_in_a_typed_result_refuses_it() -> None:
    refusal = refused({"columns": {"x": moments()}, "rows": 1})
    assert refusal.rule == "untyped_number"
    assert "$.rows" in refusal.local and "rows" not in refusal.reason()


def test_malformed_and_unknown_types_are_refused() -> None:
    assert refused({"@type": "histogram", "bins": []}).rule == "malformed"
    assert refused({"@type": "count", "n": "many"}).rule == "malformed"
    bad = check_output(b'{"v6nb.result": 1, "value": ', DisclosurePolicy(), image="x")
    assert bad.refusal.rule == "malformed"


def test_disabled_policy_releases_unchecked() -> None:
    data = typed({"rows": {"@type": "count", "n": 1}})
    release = check_output(data, DisclosurePolicy(enabled=False), image="x")
    assert release.data == data and release.decisions[0]["rule"] == "disabled"


# -- passed-on refusals and suppressed values ------------------------------------------------------
def test_an_entry_point_passes_a_part_refusal_on_and_the_node_renders_it() -> None:
    value = {
        "@type": "refusal",
        "organization_id": 3,
        "rule": "min_count",
        "threshold": 5,
        "columns": ["species", "secret value 42"],
    }
    refusal = refused(value)
    assert (refusal.organization, refusal.rule, refusal.threshold) == ("3", "min_count", 5)
    assert "species" in refusal.what and "secret" not in refusal.reason()


def test_suppressed_values_pass_through_normalised() -> None:
    value = {
        "@type": "suppressed",
        "rule": "min_count",
        "threshold": 5,
        "organizations": [2, 3],
        "note": "free text an algorithm should not ship",
    }
    out = released(value)
    assert out == {
        "@type": "suppressed",
        "rule": "min_count",
        "threshold": 5,
        "organizations": [2, 3],
    }
    assert "organizations 2, 3" in describe_suppressed(out)


# -- the policy and the reason format --------------------------------------------------------------
def test_reason_round_trip_and_other_reasons() -> None:
    for refusal in (
        Refusal("min_count", 5, "a cell of a x b is below this node's minimum of 5 records"),
        Refusal("levels_density", 0.33, "a column has too many levels", "7"),
        Refusal("untyped", None, "image 'x' returned an untyped result"),
    ):
        assert parse_reason(refusal.reason()) == refusal
    assert parse_reason("crashed (exit code 1)") is None and parse_reason(None) is None


def test_policy_from_mapping_validates_every_key() -> None:
    policy = DisclosurePolicy.from_mapping(
        {
            "min_count": 10,
            "dominance": {"n": 3},
            "untyped_images": ["a/*"],
            "algorithm_env": {"K": 3},
        }
    )
    assert (policy.min_count, policy.dominance_n, policy.dominance_k) == (10, 3, 0.9)
    assert policy.algorithm_env == {"K": "3"}
    assert DisclosurePolicy.from_mapping(policy.to_mapping()) == policy
    for bad in (
        {"min_cell_count": 5},
        {"min_count": 0},
        {"min_count": "5"},
        {"extremes": "sometimes"},
        {"dominance": {"k": 2}},
        {"untyped_images": "v6nb/*"},
        {"p_percent": -1},
    ):
        with pytest.raises(ConfigurationError) as exc:
            DisclosurePolicy.from_mapping(bad)
        assert "disclosure" in str(exc.value)


def test_every_rule_is_declared() -> None:
    produced = {
        "min_count",
        "max_levels",
        "levels_density",
        "zeros",
        "missing",
        "dominance",
        "p_percent",
        "extremes",
        "evidence",
        "estimates",
        "denied_column",
        "not_allowed_column",
        "untyped",
        "untyped_number",
        "malformed",
        "direct_part",
    }
    assert produced <= set(RULES)


def test_is_typed_reads_the_prefix_only() -> None:
    assert is_typed(b'\n {"v6nb.result": 1')
    assert not is_typed(b'{"value": 1, "v6nb.result": 1}')


def test_suppress_mode_also_suppresses_the_counts_beside_the_table() -> None:
    value = {"table": table(["A", "x", 12], ["A", "y", 2]), "rows": {"@type": "count", "n": 14}}
    out = released(value, DisclosurePolicy(small_cells="suppress"))
    assert out["table"]["cells"][1] == ["A", "y", None]
    assert out["rows"]["@type"] == "suppressed"  # 14 - 12 would give the suppressed cell back
    assert released({**value, "table": table(["A", "x", 12])})["rows"]["n"] == 14


def test_a_pooled_table_and_moments_pass_on_what_was_suppressed_where_computed() -> None:
    out = released(table(["A", "x", 12], ["A", "y", None]), entry_point=True)
    assert out["cells"][1] == ["A", "y", None]
    pooled = {k: v for k, v in moments(missing=None).items() if k != "evidence"}
    assert released({"x": pooled}, entry_point=True)["x"]["missing"] is None
