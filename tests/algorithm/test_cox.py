"""The shipped Cox model, run in a LocalNetwork on skewed splits with missing values, equals lifelines on the pooled data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

lifelines = pytest.importorskip("lifelines")

from vantage6nb.algorithm._roles import describe  # noqa: E402
from vantage6nb.algorithm.testing import LocalNetwork  # noqa: E402
from vantage6nb.algorithms.cox import efron  # noqa: E402
from vantage6nb.algorithms.glm import glm_frame  # noqa: E402
from vantage6nb.common.errors import DisclosureRefused, ValidationError  # noqa: E402

COX = "vantage6nb.algorithms.cox"
SIZES = (3, 50, 20_000)
REL = 1e-6
# a policy that releases event times as table labels (their small counts suppressed), so a node
# with few events per time still takes part; every other rule as by default
SUPPRESS = {"small_cells": "suppress"}
CONVERGED = {"precision": 1e-12, "r_precision": 1e-14}


def make_node(n: int, rng: np.random.Generator, *, unit: float = 1.0) -> pd.DataFrame:
    """Months to event (ties: whole months, or ``unit`` months), censoring, ~5% missing."""
    df = pd.DataFrame(
        {
            "age": rng.normal(60, 10, n),
            "marker": rng.gamma(2.0, 50.0, n),
            "stage": rng.choice(["I", "II", "III"], n, p=[0.4, 0.4, 0.2]),
        }
    )
    eta = 0.04 * (df["age"] - 60) - 0.004 * df["marker"] + 0.6 * (df["stage"] == "III")
    t = rng.exponential(24.0 / np.exp(eta))
    c = rng.uniform(0, 48, n)
    df["months"] = np.minimum(np.ceil(np.minimum(t, c) / unit) * unit, 48.0)
    df["died"] = (t <= c).astype(int)
    for col in ("age", "marker", "stage"):
        df.loc[rng.uniform(size=n) < 0.05, col] = np.nan
    return df


def lifelines_fit(pooled: pd.DataFrame, predictors: list[str]):
    data = pooled[["months", "died", *predictors]].dropna()
    data = pd.get_dummies(data, columns=[p for p in predictors if p == "stage"], dtype=float)
    data = data.drop(columns=[c for c in data.columns if c == "stage_I"])
    data = data.rename(columns={"stage_II": "stage[T.II]", "stage_III": "stage[T.III]"})
    # lifelines' default stop (log-likelihood changing by < 1e-9 relative) can leave its estimates
    # ~1e-5 from the maximum on heavily tied data (4 event times); fitted to convergence, it
    # and the federated fit agree to 1e-9
    return lifelines.CoxPHFitter().fit(data, "months", "died", fit_options=CONVERGED)


def assert_matches(table: pd.DataFrame, cph) -> None:
    s = cph.summary
    assert set(table.index) == set(s.index)
    for term in table.index:
        got, want = table.loc[term], s.loc[term]
        assert got["coef"] == pytest.approx(want["coef"], rel=REL), term
        assert got["exp_coef"] == pytest.approx(want["exp(coef)"], rel=REL), term
        assert got["std_err"] == pytest.approx(want["se(coef)"], rel=REL), term
        assert got["z"] == pytest.approx(want["z"], rel=REL), term
        # in the far tail p amplifies rounding (d log p = -z dz): compare log p
        assert _logp(got["p_value"]) == pytest.approx(_logp(want["p"]), rel=REL, abs=1e-9), term
        assert got["ci_low"] == pytest.approx(want["coef lower 95%"], rel=REL), term
        assert got["hr_high"] == pytest.approx(want["exp(coef) upper 95%"], rel=REL), term
    assert table.attrs["log_likelihood"] == pytest.approx(cph.log_likelihood_, rel=1e-9)
    assert table.attrs["nobs"] == cph._n_examples
    assert table.attrs["converged"] is True and 1 <= table.attrs["iterations"] < 50
    assert table.attrs["ties"] == "efron"


@pytest.fixture(scope="module")
def nodes() -> list[pd.DataFrame]:
    rng = np.random.default_rng(3)
    return [make_node(n, rng) for n in SIZES]


def test_cox_equals_lifelines_on_all_nodes(nodes):
    """Every node released (no policy): the 3-row node's records are in the risk sets too."""
    net = LocalNetwork(COX, nodes, policy=False)
    predictors = ["age", "marker", "stage"]
    result = net.run(
        "cox", kwargs={"duration": "months", "event": "died", "predictors": predictors}
    )
    table = glm_frame(result)
    assert list(table.index) == ["age", "marker", "stage[T.II]", "stage[T.III]"]
    assert_matches(table, lifelines_fit(pd.concat(nodes), predictors))
    assert table.attrs["events"] == int(pd.concat(nodes).dropna()["died"].sum())


def test_default_policy_refuses_the_three_row_node_and_names_it(nodes):
    net = LocalNetwork(COX, nodes)
    with pytest.raises(DisclosureRefused) as info:
        net.run("cox", kwargs={"duration": "months", "event": "died", "predictors": ["age"]})
    assert info.value.organization == "org_0"


def test_policy_checked_parts_equal_lifelines_without_the_small_node():
    """Yearly times (4 event times): the 50-row node's part has 4 + 1 + 2 parameters for ~47
    records, within glm_ratio; with its event-time counts suppressed (not refused) it takes part,
    and the fit equals lifelines on the two nodes' pooled records."""
    rng = np.random.default_rng(8)
    frames = [make_node(n, rng, unit=12.0) for n in SIZES]
    net = LocalNetwork(COX, frames, policy=SUPPRESS)
    predictors = ["age", "stage"]
    result = net.run(
        "cox",
        kwargs={
            "duration": "months",
            "event": "died",
            "predictors": predictors,
            "organizations": [1, 2],
        },
    )
    assert_matches(glm_frame(result), lifelines_fit(pd.concat(frames[1:]), predictors))


def test_too_many_event_times_for_a_small_node_are_withheld(nodes):
    """Monthly times at the 50-row node: its table of event times has too many levels for its
    records (levels_density; were it released, one baseline parameter per event time would
    exceed glm_ratio), so the fit stops, naming it."""
    net = LocalNetwork(COX, nodes, policy=SUPPRESS)
    with pytest.raises(DisclosureRefused) as info:
        net.run(
            "cox",
            kwargs={
                "duration": "months",
                "event": "died",
                "predictors": ["age"],
                "organizations": [1, 2],
            },
        )
    assert info.value.organization == "org_1"
    assert info.value.rule == "levels_density"


def test_efron_matches_the_definition_with_ties():
    """Two tied events among four at risk: Efron's denominator steps down by half the tied sum."""
    x = np.array([[1.0], [0.0], [2.0], [1.0]])
    beta = np.array([0.3])
    w = np.exp(x @ beta)
    sums = {
        "s0": np.array([w.sum()]),
        "s1": np.array([(w[:, None] * x).sum(0)]),
        "s2": np.array([(w[:, None, None] * x[:, :, None] * x[:, None, :]).sum(0)]),
        "e0": np.array([w[:2].sum()]),
        "e1": np.array([(w[:2, None] * x[:2]).sum(0)]),
        "e2": np.array([(w[:2, None, None] * x[:2, :, None] * x[:2, None, :]).sum(0)]),
        "d": np.array([2.0]),
        "xsum": x[:2].sum(0),
    }
    ll, grad, hess = efron(sums, beta)
    expected = (x[:2] @ beta).sum() - np.log(w.sum()) - np.log(w.sum() - w[:2].sum() / 2)
    assert ll == pytest.approx(expected, rel=1e-12)

    def ll_at(b):
        return efron({**sums, **_sums_at(x, np.array([b]))}, np.array([b]))[0]

    h = 1e-5
    assert grad[0] == pytest.approx((ll_at(0.3 + h) - ll_at(0.3 - h)) / (2 * h), rel=1e-6)
    assert hess[0, 0] == pytest.approx((ll_at(0.3 + h) - 2 * ll + ll_at(0.3 - h)) / h**2, rel=1e-4)


def _sums_at(x, beta):
    w = np.exp(x @ beta)
    return {
        "s0": np.array([w.sum()]),
        "s1": np.array([(w[:, None] * x).sum(0)]),
        "s2": np.array([(w[:, None, None] * x[:, :, None] * x[:, None, :]).sum(0)]),
        "e0": np.array([w[:2].sum()]),
        "e1": np.array([(w[:2, None] * x[:2]).sum(0)]),
        "e2": np.array([(w[:2, None, None] * x[:2, :, None] * x[:2, None, :]).sum(0)]),
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"duration": "t", "event": "t", "predictors": ["x"]}, "event must be a column"),
        ({"duration": "t", "event": "e", "predictors": []}, "at least one predictor"),
        ({"duration": "t", "event": "e", "predictors": ["x"], "max_iter": -1}, "max_iter"),
    ],
)
def test_bad_arguments_say_what_to_fix(kwargs, match):
    frames = [pd.DataFrame({"t": np.arange(1.0, 31), "e": [1, 0] * 15, "x": np.arange(30.0)})]
    with pytest.raises(ValidationError, match=match):
        LocalNetwork(COX, frames, policy=False).run("cox", kwargs=kwargs)


def test_an_event_column_that_is_not_0_1_fails_naming_it():
    frames = [pd.DataFrame({"t": np.arange(1.0, 31), "e": [2, 0] * 15, "x": np.arange(30.0)})]
    with pytest.raises(Exception, match="must be 0/1 or boolean"):
        LocalNetwork(COX, frames, policy=False).run(
            "cox", kwargs={"duration": "t", "event": "e", "predictors": ["x"]}
        )


def test_roles():
    assert describe(COX) == {
        "cox": "entry_point",
        "cox_describe": "federated",
        "cox_iteration": "federated",
    }


def _logp(p: float) -> float:
    return float(np.log(max(float(p), 1e-320)))  # an underflowed p (0.0) on both sides is equal
