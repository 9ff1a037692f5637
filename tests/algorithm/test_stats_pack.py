"""The statistics pack in a LocalNetwork equals scipy, lifelines and pandas on the pooled data.

Three sites, skewed: 3, 50 and 20,000 records, with missing values. The 3-row site cannot meet
the default policy (every count it has is below ``min_count`` 5): under it, each analysis that
includes that site is refused or withheld naming it, and the same analysis without it equals the
reference on the other two. Under a permissive policy all three are pooled and compared.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vantage6nb._analysis_tests import chi2_tests
from vantage6nb.algorithm._roles import describe
from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.algorithms import IMAGES
from vantage6nb.algorithms.correlation import correlation_frame
from vantage6nb.algorithms.crosstab import crosstab_frame
from vantage6nb.algorithms.survival import bin_times, survival_frame
from vantage6nb.algorithms.table1 import binned_quantile, table1_frame
from vantage6nb.algorithms.ttest import ttest_frame
from vantage6nb.common.errors import DisclosureRefused, TaskFailed, ValidationError

lifelines = pytest.importorskip("lifelines")
from lifelines.statistics import logrank_test, multivariate_logrank_test  # noqa: E402

TABLE1 = "vantage6nb.algorithms.table1"
TTEST = "vantage6nb.algorithms.ttest"
CORRELATION = "vantage6nb.algorithms.correlation"
SURVIVAL = "vantage6nb.algorithms.survival"
CROSSTAB = "vantage6nb.algorithms.crosstab"
REL = 1e-9
PERMISSIVE = {
    "min_count": 1,
    "extremes": "allow",
    "dominance": {"k": 1.0},
    "p_percent": 0.0,
    "levels_density": 1.0,
    "max_levels": 100000,
    "glm_ratio": 1.0,
}
KM_BINS = [10.0, 20.0, 30.0]  # every (arm, bin, event) cell of the 50-row site holds 5 records
NUMERIC = ["age", "bmi"]


def make_sites() -> list[pd.DataFrame]:
    """The 3-, 50- and 20,000-record sites (deterministic), with missing values."""
    rng = np.random.default_rng(20240611)

    def site(n: int, arms: list[str]) -> pd.DataFrame:
        age = rng.normal(62, 9, n)
        return pd.DataFrame(
            {
                "arm": arms,
                "age": age,
                "bmi": 18 + 0.12 * age + rng.gamma(4, 1.5, n),
                "sex": np.where(np.arange(n) % 2 == 0, "F", "M"),
                "stage": (np.arange(n) % 3) + 1,
                "time": rng.exponential(14, n),
                "event": rng.integers(0, 2, n),
            }
        )

    tiny = site(3, ["A", "B", "A"])
    small = site(50, ["A"] * 25 + ["B"] * 25)
    # the 50-row site's follow-up: per arm five events and five censored in each of the first
    # two bins, five events in the third, so its binned table passes min_count 5
    pattern = [(5, 1), (5, 0), (15, 1), (15, 0), (25, 1)]
    times = [t + rng.uniform(-4.9, 4.9) for t, _ in pattern for _ in range(5)]
    events = [e for _, e in pattern for _ in range(5)]
    small["time"] = times * 2
    small["event"] = events * 2
    small["stage"] = small["stage"].astype(str)  # "1", "2", "3": the same categories as 1, 2, 3
    large = site(20000, list(rng.choice(["A", "B"], 20000, p=[0.3, 0.7])))
    # missing values: at the 50-row site only in numbers (a missing sex or time would be a cell
    # of one or two records there, which the default policy refuses)
    for df, holes, cols in ((small, 3, NUMERIC), (large, 900, [*NUMERIC, "sex", "time"])):
        for col in cols:
            df.loc[rng.choice(len(df), holes, replace=False), col] = np.nan
    tiny.loc[1, "bmi"] = np.nan
    # whole numbers, so that the node's p-percent check of two values is exact (at p = 0 a sum
    # rounded below its two terms would withhold them)
    tiny[["age", "bmi"]] = tiny[["age", "bmi"]].round()
    return [tiny, small, large]


@pytest.fixture(scope="module")
def sites():
    return make_sites()


def pooled_of(frames):
    out = pd.concat(frames, ignore_index=True)
    out["stage"] = pd.to_numeric(out["stage"])  # as one type, the way the pack labels them
    return out


def close(got, expected, rel=REL):
    return got == pytest.approx(expected, rel=rel, abs=1e-300, nan_ok=True)


# -- registration ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "image, entry, parts",
    [
        ("v6nb/table1", "table1", ["table1_bins_partial", "table1_partial"]),
        ("v6nb/ttest", "ttest", ["ttest_partial"]),
        ("v6nb/correlation", "correlation", ["correlation_partial"]),
        ("v6nb/survival", "kaplan_meier", ["kaplan_meier_partial"]),
    ],
)
def test_each_analysis_is_a_shipped_image_with_guarded_parts(image, entry, parts):
    roles = describe(IMAGES[image])
    assert roles == {entry: "entry_point", **dict.fromkeys(parts, "federated")}


# -- Table 1 -------------------------------------------------------------------------------------
def check_table1(df, pooled, group, numeric, categorical):
    present = pooled[pooled[group].notna()]
    for level, rows in [*present.groupby(group), ("Overall", present)]:
        col = df[level]
        assert col[("n", "", "count")] == len(rows)
        for name in numeric:
            values = rows[name]
            assert col[(name, "", "count")] == values.count()
            assert col[(name, "", "missing")] == values.isna().sum()
            assert close(col[(name, "", "mean")], values.mean()), (level, name)
            assert close(col[(name, "", "std")], values.std(ddof=1)), (level, name)
        for name in categorical:
            counts = rows[name].value_counts()
            shares = rows[name].value_counts(normalize=True) * 100
            for value, n in counts.items():
                assert col[(name, str(value), "count")] == n
                assert close(col[(name, str(value), "percent")], shares[value])
            missing = rows[name].isna().sum()
            if missing:
                assert col[(name, "<missing>", "count")] == missing


def test_table1_equals_pandas_on_all_three_sites(sites):
    net = LocalNetwork(TABLE1, sites, policy=PERMISSIVE)
    kwargs = {"columns": [*NUMERIC, "sex", "stage"], "group": "arm", "categorical": ["stage"]}
    out = net.run("table1", kwargs=kwargs)
    df = table1_frame(out)
    assert list(df.columns) == ["A", "B", "Overall"]
    check_table1(df, pooled_of(sites), "arm", NUMERIC, ["sex", "stage"])
    # "1" at one site and 1 at the others are one category
    assert [v for v, s in df.loc["stage"].index if s == "count"] == ["1", "2", "3"]


def test_table1_refuses_the_three_row_site_and_equals_pandas_without_it(sites):
    net = LocalNetwork(TABLE1, sites)  # the default policy
    kwargs = {"columns": [*NUMERIC, "sex"], "group": "arm"}
    with pytest.raises(DisclosureRefused) as refused:
        net.run("table1", kwargs=kwargs)
    # its group sizes: 2 levels over 3 records, and cells of 1 and 2
    assert refused.value.rule in ("levels_density", "min_count")
    assert refused.value.organization == "org_0"
    df = table1_frame(net.run("table1", kwargs={**kwargs, "organizations": [1, 2]}))
    check_table1(df, pooled_of(sites[1:]), "arm", NUMERIC, ["sex"])
    assert df.attrs["suppressed"] == {}


def test_table1_with_suppressed_cells_shows_them_missing_never_wrong(sites):
    policy = {"small_cells": "suppress", "levels_density": 1.0}
    out = LocalNetwork(TABLE1, sites, policy=policy).run(
        "table1", kwargs={"columns": NUMERIC, "group": "arm"}
    )
    df = table1_frame(out)
    # the tiny site's group sizes and moments are withheld: the pooled values are unknown
    assert df.loc[("n", "", "count")].isna().all()
    assert df.loc[("age", "", "mean")].isna().all()
    assert any("organization 0" in why for why in df.attrs["suppressed"].values())


def test_table1_binned_quartiles_are_the_grouped_quantiles_of_the_pooled_bins(sites):
    edges = {"age": [40.0, 50, 55, 58, 60, 62, 64, 66, 70, 80]}
    out = LocalNetwork(TABLE1, sites, policy=PERMISSIVE).run(
        "table1", kwargs={"columns": ["age"], "group": "arm", "bins": edges}
    )
    df = table1_frame(out)
    pooled = pooled_of(sites)
    for level, rows in [*pooled.groupby("arm"), ("Overall", pooled)]:
        values = rows["age"].dropna()
        counts = np.bincount(np.searchsorted(edges["age"], values, side="left"), minlength=11)
        for stat, p in (("q1", 0.25), ("median", 0.5), ("q3", 0.75)):
            got = df.loc[("age", "", stat), level]
            assert close(got, binned_quantile(list(counts), edges["age"], p)), (level, stat)
            # and within the bin that holds the exact quantile
            exact = values.quantile(p)
            i = np.searchsorted(edges["age"], exact)
            assert edges["age"][i - 1] <= got <= edges["age"][i]


def test_table1_bins_refused_at_a_site_withhold_the_quartiles_only(sites):
    out = LocalNetwork(TABLE1, sites, policy={"small_cells": "suppress", "min_count": 5}).run(
        "table1",
        kwargs={"columns": ["age"], "group": "arm", "bins": 8, "organizations": [1, 2]},
    )
    df = table1_frame(out)
    assert not df.loc[("age", "", "mean")].isna().any()
    net = LocalNetwork(TABLE1, sites[1:])  # the default: a small bin refuses the bins part
    out = net.run("table1", kwargs={"columns": ["age"], "group": "arm", "bins": 30})
    df = table1_frame(out)
    assert df.loc[("age", "", "median")].isna().all() and "quartiles" in df.attrs["suppressed"]
    assert close(df.loc[("age", "", "mean"), "Overall"], pooled_of(sites[1:])["age"].mean())


def test_table1_names_both_organizations_when_a_column_is_numeric_at_one_only(sites):
    other = sites[1].assign(age=sites[1]["age"].map(lambda v: f"{v:.1f}".replace(".", ",")))
    net = LocalNetwork(TABLE1, [sites[2], other], policy=PERMISSIVE)
    with pytest.raises(ValidationError, match="organization 0: numeric, organization 1: categ"):
        net.run("table1", kwargs={"columns": ["age"], "group": "arm"})


def test_a_site_without_rows_adds_nothing(sites):
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in sites[2].columns})
    out = LocalNetwork(TABLE1, [sites[2], empty]).run(
        "table1", kwargs={"columns": ["age", "sex"], "group": "arm"}
    )
    check_table1(table1_frame(out), pooled_of([sites[2]]), "arm", ["age"], ["sex"])
    out = LocalNetwork(CORRELATION, [sites[2], empty]).run(
        "correlation", kwargs={"columns": NUMERIC}
    )
    assert close(correlation_frame(out).loc["age", "bmi"], sites[2].age.corr(sites[2].bmi))
    out = LocalNetwork(TTEST, [sites[2], empty]).run(
        "ttest", kwargs={"column": "age", "group": "arm"}
    )
    a, b = (sites[2].loc[sites[2].arm == g, "age"].dropna() for g in "AB")
    assert close(
        ttest_frame(out).loc["welch", "statistic"], stats.ttest_ind(a, b, equal_var=False).statistic
    )


# -- t-test --------------------------------------------------------------------------------------
@pytest.mark.parametrize("column", NUMERIC)
def test_ttest_equals_scipy_on_all_three_sites(sites, column):
    out = LocalNetwork(TTEST, sites, policy=PERMISSIVE).run(
        "ttest", kwargs={"column": column, "group": "arm"}
    )
    df = ttest_frame(out)
    pooled = pooled_of(sites)
    a, b = (pooled.loc[pooled.arm == g, column].dropna() for g in "AB")
    for row, equal_var in (("welch", False), ("pooled", True)):
        ref = stats.ttest_ind(a, b, equal_var=equal_var)
        ci = ref.confidence_interval()
        got = df.loc[row]
        assert close(got["statistic"], ref.statistic) and close(got["p_value"], ref.pvalue)
        assert close(got["df"], ref.df)
        assert close(got["ci_low"], ci.low) and close(got["ci_high"], ci.high)
        assert close(got["mean_diff"], a.mean() - b.mean())


def test_ttest_without_the_tiny_site_under_the_default_policy(sites):
    net = LocalNetwork(TTEST, sites)
    out = net.run("ttest", kwargs={"column": "age", "group": "arm"})
    assert all(v["@type"] == "suppressed" for v in out["strata"].values())
    with pytest.raises(DisclosureRefused, match="suppressed by organization 0"):
        ttest_frame(out)
    out = net.run("ttest", kwargs={"column": "age", "group": "arm", "organizations": [1, 2]})
    pooled = pooled_of(sites[1:])
    a, b = (pooled.loc[pooled.arm == g, "age"].dropna() for g in "AB")
    assert close(
        ttest_frame(out).loc["welch", "p_value"], stats.ttest_ind(a, b, equal_var=False).pvalue
    )


def test_ttest_needs_two_levels(sites):
    out = LocalNetwork(TTEST, sites[1:]).run("ttest", kwargs={"column": "age", "group": "stage"})
    with pytest.raises(ValidationError, match="pick two with levels"):
        ttest_frame(out)
    df = ttest_frame(out, levels=[1, 3])  # "1" at one site and 1 at the other: one group
    pooled = pooled_of(sites[1:])
    a, b = (pooled.loc[pooled.stage == g, "age"].dropna() for g in (1, 3))
    assert close(df.loc["pooled", "statistic"], stats.ttest_ind(a, b).statistic)


def test_ttest_of_a_text_column_says_so(sites):
    with pytest.raises(TaskFailed, match="'sex' is not numeric"):
        LocalNetwork(TTEST, sites[1:]).run("ttest", kwargs={"column": "sex", "group": "arm"})


# -- correlation ---------------------------------------------------------------------------------
def test_correlation_equals_pandas_pairwise_complete(sites):
    columns = [*NUMERIC, "time", "event"]
    out = LocalNetwork(CORRELATION, sites, policy=PERMISSIVE).run(
        "correlation", kwargs={"columns": columns}
    )
    df = correlation_frame(out)
    ref = pooled_of(sites)[columns].corr()
    for x in columns:
        for y in columns:
            assert close(df.loc[x, y], ref.loc[x, y]), (x, y)
    pooled = pooled_of(sites)
    assert df.attrs["n"]["age"]["bmi"] == int((pooled.age.notna() & pooled.bmi.notna()).sum())


def test_correlation_withholds_the_tiny_site_pairs(sites):
    out = LocalNetwork(CORRELATION, sites).run("correlation", kwargs={"columns": NUMERIC})
    df = correlation_frame(out)
    assert df.isna().all().all() and len(df.attrs["suppressed"]) == 3
    out = LocalNetwork(CORRELATION, sites).run(
        "correlation", kwargs={"columns": NUMERIC, "organizations": [1, 2]}
    )
    assert close(
        correlation_frame(out).loc["age", "bmi"],
        pooled_of(sites[1:]).age.corr(pooled_of(sites[1:]).bmi),
    )


# -- chi-square (the crosstab algorithm's table) -------------------------------------------------
def test_chi2_on_the_pooled_crosstab_equals_scipy(sites):
    kwargs = {"row": "sex", "col": "arm", "dropna": True}  # as analysis.chi2 asks for it
    out = LocalNetwork(CROSSTAB, sites[1:]).run("crosstab", kwargs=kwargs)
    observed = crosstab_frame(out)
    tests = chi2_tests(observed)
    ref_table = pd.crosstab(pooled_of(sites[1:]).sex, pooled_of(sites[1:]).arm).to_numpy()
    for row, correction in (("pearson", False), ("yates", True)):
        ref = stats.chi2_contingency(ref_table, correction=correction)
        assert close(tests.loc[row, "statistic"], ref.statistic)
        assert close(tests.loc[row, "p_value"], ref.pvalue) and tests.loc[row, "df"] == 1
    assert "fisher" not in tests.index  # no expected count below 5
    assert tests.attrs["observed"]["F"]["A"] == ref_table[0, 0]


def test_chi2_adds_fishers_exact_test_for_a_2x2_table_with_small_expected_counts():
    observed = pd.DataFrame(
        [[5, 0], [6, 40]], index=pd.Index(["x", "y"], name="r"), columns=pd.Index([0, 1], name="c")
    )
    tests = chi2_tests(observed)
    ref = stats.fisher_exact([[5, 0], [6, 40]])
    assert close(tests.loc["fisher", "p_value"], ref.pvalue)
    assert math.isinf(tests.loc["fisher", "statistic"]) and tests.attrs["min_expected"] < 5
    three = pd.DataFrame([[5, 6, 7], [8, 9, 10]])
    assert "fisher" not in chi2_tests(three).index and "yates" not in chi2_tests(three).index
    with pytest.raises(ValidationError, match="2x2"):
        chi2_tests(three, exact=True)


# -- Kaplan-Meier and log-rank -------------------------------------------------------------------
def check_curves(df, pooled, group):
    for level, rows in pooled.groupby(group) if group else [("all", pooled)]:
        ref = lifelines.KaplanMeierFitter().fit(rows["time"], rows["event"])
        mine = df.loc[level]
        assert list(mine.index) == list(ref.survival_function_.index)
        assert close(list(mine["survival"]), list(ref.survival_function_.iloc[:, 0]))
        ci = ref.confidence_interval_
        assert close(list(mine["ci_low"]), list(ci.iloc[:, 0]))
        assert close(list(mine["ci_high"]), list(ci.iloc[:, 1]))
        assert close(df.attrs["median"][level], ref.median_survival_time_)
        table = ref.event_table
        assert list(mine["at_risk"]) == list(table["at_risk"])


def test_kaplan_meier_equals_lifelines_on_exact_times(sites):
    out = LocalNetwork(SURVIVAL, sites, policy=PERMISSIVE).run(
        "kaplan_meier", kwargs={"time": "time", "event": "event", "group": "stage"}
    )
    df = survival_frame(out)
    pooled = pooled_of(sites).dropna(subset=["time", "event"])
    check_curves(df, pooled, "stage")
    ref = multivariate_logrank_test(pooled["time"], pooled["stage"], pooled["event"])
    assert close(df.attrs["logrank"]["statistic"], ref.test_statistic)
    assert close(df.attrs["logrank"]["p_value"], ref.p_value) and df.attrs["logrank"]["df"] == 2
    assert out["dropped"]["n"] == pooled_of(sites)["time"].isna().sum()


def test_kaplan_meier_in_bins_equals_lifelines_on_the_binned_times(sites):
    net = LocalNetwork(SURVIVAL, sites)  # the default policy: the tiny site refuses its table
    kwargs = {"time": "time", "event": "event", "group": "arm", "bins": KM_BINS}
    with pytest.raises(DisclosureRefused) as refused:
        net.run("kaplan_meier", kwargs=kwargs)
    assert refused.value.organization == "org_0"
    assert refused.value.rule in ("levels_density", "min_count")
    df = survival_frame(net.run("kaplan_meier", kwargs={**kwargs, "organizations": [1, 2]}))
    pooled = pooled_of(sites[1:]).dropna(subset=["time", "event"])
    t, e = bin_times(pooled["time"], pooled["event"], KM_BINS)
    binned = pooled.assign(time=t, event=e)
    check_curves(df, binned, "arm")
    a, b = (binned[binned.arm == g] for g in "AB")
    ref = logrank_test(a.time, b.time, a.event, b.event)
    assert close(df.attrs["logrank"]["statistic"], ref.test_statistic)
    assert close(df.attrs["logrank"]["p_value"], ref.p_value)


def test_kaplan_meier_with_a_withheld_cell_withholds_that_curve_whole(sites):
    out = LocalNetwork(
        SURVIVAL, sites, policy={"small_cells": "suppress", "levels_density": 1.0}
    ).run("kaplan_meier", kwargs={"time": "time", "event": "event", "group": "arm", "bins": 10.0})
    df = survival_frame(out)
    assert df["survival"].isna().all()  # the tiny site withheld a cell in each arm
    assert math.isnan(df.attrs["logrank"]["p_value"]) and "table" in df.attrs["suppressed"]
    assert 0 in out["suppressed"][0]["organizations"]  # (and the long tail of the large site)


def test_kaplan_meier_checks_its_event_column(sites):
    bad = sites[1].assign(event=sites[1]["event"] * 2)
    with pytest.raises(TaskFailed, match="1/True"):
        LocalNetwork(SURVIVAL, [bad]).run("kaplan_meier", kwargs={"time": "time", "event": "event"})
    with pytest.raises(ValidationError, match="bins"):
        LocalNetwork(SURVIVAL, [sites[1]]).run(
            "kaplan_meier", kwargs={"time": "time", "event": "event", "bins": [3, 1]}
        )
