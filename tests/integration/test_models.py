"""GLM and Cox models on a real demo network (server and node processes, process runtime), on
skewed splits with missing values (3, 50 and 20,000 records), equal statsmodels and lifelines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.algorithm.test_cox import CONVERGED
from tests.algorithm.test_cox import make_node as make_survival_node
from tests.algorithm.test_glm import assert_matches as assert_glm_matches
from tests.algorithm.test_glm import make_node, statsmodels_fit
from vantage6nb import analysis
from vantage6nb.common.errors import DisclosureRefused

lifelines = pytest.importorskip("lifelines")
pytest.importorskip("statsmodels")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZES = (3, 50, 20_000)


@pytest.fixture(scope="module")
def frames() -> list[pd.DataFrame]:
    rng = np.random.default_rng(21)
    glm_parts = [make_node(n, rng) for n in SIZES]
    cox_parts = [make_survival_node(n, rng, unit=12.0) for n in SIZES]
    return [
        g.join(c[["months", "died", "stage"]].set_axis(g.index))
        for g, c in zip(glm_parts, cox_parts, strict=True)
    ]


@pytest.fixture(scope="module")
def network(frames):
    from vantage6nb import demo

    # event-time counts below min_count are suppressed (not refused), so the 50-row node's
    # yearly event times can take part; every other rule as by default
    with demo.start(
        datasets=frames, node_settings={"disclosure": {"small_cells": "suppress"}}
    ) as net:
        yield net


@pytest.fixture(scope="module")
def client(network):
    return network.client()


@pytest.fixture(scope="module")
def orgs(network) -> list[tuple[str, int]]:
    return list(network.organizations.items())


def test_binomial_glm_equals_statsmodels_without_the_small_node(client, orgs, frames):
    names = [name for name, _ in orgs[1:]]
    table = analysis.glm(
        client,
        "response",
        ["age", "dose", "site"],
        family="binomial",
        organizations=names,
        reference={"site": "south"},
    )
    ref = statsmodels_fit(
        pd.concat(frames[1:]), "response ~ age + dose + C(site, Treatment('south'))", "binomial"
    )
    levels = "C(site, Treatment('south'))"
    rename = {f"{levels}[T.north]": "site[T.north]", f"{levels}[T.west]": "site[T.west]"}
    assert_glm_matches(table, ref, rename=rename)
    assert table.attrs["image"] == "v6nb/glm" and table.attrs["organizations"] == names
    assert isinstance(table.attrs["task_id"], int)


def test_poisson_glm_with_exposure_equals_statsmodels(client, orgs, frames):
    table = analysis.glm(
        client,
        "visits",
        ["age", "dose"],
        family="poisson",
        exposure="years",
        organizations=[name for name, _ in orgs[1:]],
    )
    ref = statsmodels_fit(pd.concat(frames[1:]), "visits ~ age + dose", "poisson", exposure="years")
    assert_glm_matches(table, ref)


def test_the_three_row_node_is_refused_by_its_policy_and_named(client, orgs):
    small_name, small_id = orgs[0]
    with pytest.raises(DisclosureRefused) as info:
        analysis.glm(client, "sbp", ["age", "dose"])
    assert info.value.organization in (small_name, str(small_id))


def test_cox_equals_lifelines_without_the_small_node(client, orgs, frames):
    table = analysis.cox(
        client, "months", "died", ["age", "stage"], organizations=[n for n, _ in orgs[1:]]
    )
    data = pd.concat(frames[1:])[["months", "died", "age", "stage"]].dropna()
    data = pd.get_dummies(data, columns=["stage"], dtype=float).drop(columns="stage_I")
    data = data.rename(columns={"stage_II": "stage[T.II]", "stage_III": "stage[T.III]"})
    cph = lifelines.CoxPHFitter().fit(data, "months", "died", fit_options=CONVERGED)
    for term in table.index:
        assert table.loc[term, "coef"] == pytest.approx(cph.params_[term], rel=1e-6)
        assert table.loc[term, "std_err"] == pytest.approx(cph.standard_errors_[term], rel=1e-6)
    assert table.attrs["iterations"] >= 1 and table.attrs["converged"] is True
    assert table.attrs["image"] == "v6nb/cox"
    ax = analysis.plot_coefficients(table)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(table.index[::-1])
