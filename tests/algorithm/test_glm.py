"""The shipped GLM, run in a LocalNetwork on skewed splits with missing values, equals statsmodels on the pooled data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

sm = pytest.importorskip("statsmodels.api")
smf = pytest.importorskip("statsmodels.formula.api")

from vantage6nb.algorithm._roles import describe  # noqa: E402
from vantage6nb.algorithm.testing import LocalNetwork  # noqa: E402
from vantage6nb.algorithms.glm import glm_frame, label  # noqa: E402
from vantage6nb.common.errors import DisclosureRefused, ValidationError  # noqa: E402

GLM = "vantage6nb.algorithms.glm"
SIZES = (3, 50, 20_000)  # a node too small for the default policy, a small one, a large one
REL = 1e-6
FAMILIES = {
    "gaussian": sm.families.Gaussian(),
    "binomial": sm.families.Binomial(),
    "poisson": sm.families.Poisson(),
}


def make_node(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A node's data: numeric and text predictors, three outcomes, an exposure, ~5% missing."""
    df = pd.DataFrame(
        {
            "age": rng.normal(60, 10, n),
            "dose": rng.gamma(2.0, 1.5, n),
            "site": rng.choice(["north", "south", "west"], n, p=[0.5, 0.3, 0.2]),
            "years": rng.uniform(0.5, 3.0, n),
        }
    )
    eta = -2.0 + 0.03 * df["age"] - 0.2 * df["dose"] + 0.5 * (df["site"] == "south")
    df["response"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    df["visits"] = rng.poisson(np.exp(eta + 1.0) * df["years"])
    df["sbp"] = 100 + 10 * eta + rng.normal(0, 8, n)
    for col in ("age", "dose", "site"):
        df.loc[rng.uniform(size=n) < 0.05, col] = np.nan
    return df


@pytest.fixture(scope="module")
def nodes() -> list[pd.DataFrame]:
    rng = np.random.default_rng(11)
    return [make_node(n, rng) for n in SIZES]


def statsmodels_fit(pooled: pd.DataFrame, formula: str, family: str, **kwargs):
    cols = [c for c in ("age", "dose", "site", "years", "response", "visits", "sbp")]
    data = pooled[cols].dropna(subset=[c for c in cols if c in formula or c == "years"])
    if "exposure" in kwargs:
        kwargs["exposure"] = data[kwargs["exposure"]]
    if "offset" in kwargs:
        kwargs["offset"] = data[kwargs["offset"]]
    return smf.glm(formula, data=data, family=FAMILIES[family], **kwargs).fit()


def assert_matches(
    table: pd.DataFrame, ref, *, iterations: bool = True, rename: dict[str, str] | None = None
) -> None:
    """``table`` equals statsmodels' ``ref`` to 1e-6 relative; ``rename``: its term -> ours."""
    params, bse, z, pvalues, ref_ci = (
        x.rename(index=rename or {})
        for x in (ref.params, ref.bse, ref.tvalues, ref.pvalues, ref.conf_int())
    )
    assert set(table.index) == set(params.index)
    for term in table.index:
        got = table.loc[term]
        for have, want in (
            (got["coef"], params[term]),
            (got["std_err"], bse[term]),
            (got["z"], z[term]),
            (got["ci_low"], ref_ci.loc[term, 0]),
            (got["ci_high"], ref_ci.loc[term, 1]),
        ):
            assert have == pytest.approx(want, rel=REL), term
        # in the far tail p amplifies rounding (d log p = -z dz): compare log p
        want_p = pvalues[term]
        assert _logp(got["p_value"]) == pytest.approx(_logp(want_p), rel=REL, abs=1e-9), term
    attrs = table.attrs
    assert attrs["deviance"] == pytest.approx(ref.deviance, rel=REL)
    assert attrs["llf"] == pytest.approx(ref.llf, rel=REL)
    assert attrs["aic"] == pytest.approx(ref.aic, rel=REL)
    assert attrs["scale"] == pytest.approx(ref.scale, rel=REL)
    assert attrs["nobs"] == ref.nobs and attrs["df_resid"] == ref.df_resid
    assert attrs["df_model"] == ref.df_model and attrs["converged"] is True
    if iterations:
        assert attrs["iterations"] == ref.fit_history["iteration"]


CASES = [
    ("gaussian", "sbp", ["age", "dose", "site"], {}),
    ("binomial", "response", ["age", "dose", "site"], {}),
    ("poisson", "visits", ["age", "dose", "site"], {"exposure": "years"}),
    ("poisson", "visits", ["age", "site"], {"offset": "years"}),
]


@pytest.mark.parametrize(("family", "outcome", "predictors", "extra"), CASES)
def test_glm_equals_statsmodels_on_all_nodes(nodes, family, outcome, predictors, extra):
    """Every node released (no policy): the 3-row node's records count like any other's."""
    net = LocalNetwork(GLM, nodes, policy=False)
    result = net.run(
        "glm",
        kwargs={"outcome": outcome, "predictors": predictors, "family": family, **extra},
    )
    table = glm_frame(result)
    pooled = pd.concat(nodes, ignore_index=True)
    ref = statsmodels_fit(pooled, f"{outcome} ~ {' + '.join(predictors)}", family, **extra)
    assert_matches(table, ref)
    assert list(table.index)[0] == "Intercept"
    assert table.attrs["family"] == family


def test_default_policy_refuses_the_three_row_node_and_names_it(nodes):
    """The 3-row node's policy withholds its part (3 records < min_count 5; its levels table is
    refused too): the fit stops with a refusal naming that organization, never a silently
    smaller pooled model."""
    net = LocalNetwork(GLM, nodes)
    with pytest.raises(DisclosureRefused) as info:
        net.run("glm", kwargs={"outcome": "response", "predictors": ["age", "dose"]})
    assert info.value.organization == "org_0"
    assert info.value.rule == "min_count"


@pytest.mark.parametrize("family", ["binomial", "gaussian"])
def test_default_policy_without_the_small_node_equals_statsmodels(nodes, family):
    """Left out explicitly, the other two nodes' parts pass the default policy (min_count,
    glm_ratio) and the fit equals statsmodels on their pooled records."""
    outcome = {"binomial": "response", "gaussian": "sbp"}[family]
    net = LocalNetwork(GLM, nodes)
    result = net.run(
        "glm",
        kwargs={
            "outcome": outcome,
            "predictors": ["age", "dose", "site"],
            "family": family,
            "organizations": [1, 2],
        },
    )
    ref = statsmodels_fit(pd.concat(nodes[1:]), f"{outcome} ~ age + dose + site", family)
    assert_matches(glm_frame(result), ref)


def test_reference_level_and_codes_in_different_types_are_one_category():
    """Stage codes stored as int, text and float at three nodes are one set of levels; the
    reference level is the one asked for."""
    rng = np.random.default_rng(5)
    frames = []
    for n, cast in ((400, int), (300, str), (500, float)):
        stage = rng.integers(1, 4, n)
        y = 1.0 + 0.5 * stage + rng.normal(size=n)
        frames.append(pd.DataFrame({"stage": [cast(s) for s in stage], "y": y}))
    net = LocalNetwork(GLM, frames)
    result = net.run(
        "glm",
        kwargs={
            "outcome": "y",
            "predictors": ["stage"],
            "categorical": ["stage"],
            "reference": {"stage": 2},
        },
    )
    table = glm_frame(result)
    assert list(table.index) == ["Intercept", "stage[T.1]", "stage[T.3]"]
    pooled = pd.concat(frames, ignore_index=True)
    pooled["stage"] = pooled["stage"].map(label)
    ref = smf.glm("y ~ C(stage, Treatment('2'))", data=pooled).fit()
    ref.params.index = ref.bse.index = table.index
    assert np.allclose(table["coef"], ref.params, rtol=REL)
    assert np.allclose(table["std_err"], ref.bse, rtol=REL)


def test_binomial_success_level_of_a_text_outcome(nodes):
    frames = [f.assign(outcome=np.where(f["response"] == 1, "yes", "no")) for f in nodes[1:]]
    net = LocalNetwork(GLM, frames)
    result = net.run(
        "glm",
        kwargs={
            "outcome": "outcome",
            "predictors": ["age", "dose"],
            "family": "binomial",
            "success": "yes",
        },
    )
    ref = statsmodels_fit(pd.concat(nodes[1:]), "response ~ age + dose", "binomial")
    assert_matches(glm_frame(result), ref)


def test_a_column_typed_differently_at_two_nodes_is_refused_with_both_types():
    frames = [
        pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0) % 7}),
        pd.DataFrame({"x": [f"{v}" for v in range(20)], "y": np.arange(20.0) % 5}),
    ]
    with pytest.raises(ValidationError, match=r"numeric \(float64\).*categorical \(object\)"):
        LocalNetwork(GLM, frames, policy=False).run(
            "glm", kwargs={"outcome": "y", "predictors": ["x"]}
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outcome": "y", "predictors": ["x"], "family": "gamma"}, "family must be one of"),
        ({"outcome": "y", "predictors": "y"}, "other than the outcome"),
        ({"outcome": "y", "predictors": ["x"], "offset": "o", "exposure": "e"}, "not both"),
        ({"outcome": "y", "predictors": ["x"], "success": 1}, "binomial. only"),
        ({"outcome": "y", "predictors": ["x"], "reference": {"z": 1}}, "not predictors"),
        ({"outcome": "y", "predictors": ["x"], "max_iter": 0}, "max_iter"),
    ],
)
def test_bad_arguments_say_what_to_fix(kwargs, match):
    frames = [pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30.0) % 3})]
    with pytest.raises(ValidationError, match=match):
        LocalNetwork(GLM, frames).run("glm", kwargs=kwargs)


def test_binomial_outcome_outside_0_1_fails_naming_the_column():
    frames = [pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30.0) % 3})]
    with pytest.raises(Exception, match="must be 0 or 1"):
        LocalNetwork(GLM, frames).run(
            "glm", kwargs={"outcome": "y", "predictors": ["x"], "family": "binomial"}
        )


def test_roles_and_released_types():
    """Only the entry point is callable directly; each part returns typed values only."""
    assert describe(GLM) == {
        "glm": "entry_point",
        "glm_describe": "federated",
        "glm_iteration": "federated",
    }


def _logp(p: float) -> float:
    return float(np.log(max(float(p), 1e-320)))  # an underflowed p (0.0) on both sides is equal
