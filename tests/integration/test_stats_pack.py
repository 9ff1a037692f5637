"""The statistics pack on a real demo network started with ``datasets=``: one dataset per node.

Leiden holds 3 records (a DataFrame), Utrecht 50 (a CSV file), Groningen 20,000 (a Parquet file)
and a second database ``extra`` (an SQLite file). The nodes keep the default disclosure policy:
every analysis that includes Leiden is refused or withheld naming it (each of its counts is below
``min_count`` 5); over Utrecht and Groningen each equals scipy, lifelines or pandas on the pooled
data, read as the nodes read it.
"""

from __future__ import annotations

import sqlite3
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.algorithm.test_stats_pack import (
    KM_BINS,
    NUMERIC,
    check_curves,
    check_table1,
    close,
    make_sites,
)
from vantage6nb import analysis, demo
from vantage6nb.algorithm import load_database
from vantage6nb.algorithms.survival import bin_times
from vantage6nb.errors import ConfigurationError, DisclosureRefused

lifelines = pytest.importorskip("lifelines")
from lifelines.statistics import logrank_test  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TWO = ["Utrecht", "Groningen"]


@pytest.fixture(scope="module")
def stats_net(tmp_path_factory):
    tiny, small, large = make_sites()
    files = tmp_path_factory.mktemp("sites")
    small.to_csv(files / "utrecht.csv", index=False)
    large.to_parquet(files / "groningen.parquet", index=False)
    with sqlite3.connect(files / "groningen-extra.sqlite") as db:
        large.head(400).to_sql("patients", db, index=False)
    datasets = [
        # the central part of a task runs at the researcher's organization (Leiden) and its node
        # resolves the task's databases too, so Leiden needs an "extra" (empty here) as well
        {"default": tiny, "extra": tiny.head(0)},
        files / "utrecht.csv",
        {"default": files / "groningen.parquet", "extra": str(files / "groningen-extra.sqlite")},
    ]
    with demo.start(datasets=datasets) as network:
        yield network


@pytest.fixture(scope="module")
def client(stats_net):
    c = stats_net.client()
    yield c
    c.close()


def pooled(net, names, database="default"):
    frames = []
    for name in names:
        uri = net.databases[name][database]
        kind = (
            "sql" if uri.startswith("sqlite") else "parquet" if uri.endswith("parquet") else "csv"
        )
        frames.append(load_database(uri, kind))
    out = pd.concat(frames, ignore_index=True)
    out["stage"] = pd.to_numeric(out["stage"])
    return out


def test_each_node_has_its_own_datasets(stats_net):
    dbs = stats_net.databases
    assert list(dbs) == ["Leiden", "Utrecht", "Groningen"]
    assert dbs["Leiden"]["default"].endswith("default.parquet")  # a DataFrame keeps its types
    assert dbs["Leiden"]["extra"].endswith("extra.parquet")
    assert dbs["Utrecht"]["default"].endswith("default.csv")
    assert set(dbs["Groningen"]) == {"default", "extra"}
    assert dbs["Groningen"]["extra"].startswith("sqlite:///")
    assert stats_net.datasets["Groningen"] == dbs["Groningen"]["default"]
    assert [len(pooled(stats_net, [n])) for n in dbs] == [3, 50, 20000]


def test_datasets_are_checked_before_anything_starts(tmp_path):
    df = pd.DataFrame({"x": [1]})
    with pytest.raises(ConfigurationError, match="2 entries for 3 nodes"):
        demo.start(nodes=3, datasets=[df, df])
    with pytest.raises(ConfigurationError, match="not both"):
        demo.start(dataset=df, datasets=[df])
    with pytest.raises(ConfigurationError, match="does not exist"):
        demo.start(datasets=[tmp_path / "nothing.csv"])
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="not a supported data file"):
        demo.start(datasets=[tmp_path / "data.json"])
    with pytest.raises(ConfigurationError, match="database label"):
        demo.start(datasets=[{"my labs": df}])
    with pytest.raises(ConfigurationError, match="one dataset per node"):
        demo.start(datasets=df)


def test_table1(stats_net, client):
    with pytest.raises(DisclosureRefused) as refused:
        analysis.table1(client, [*NUMERIC, "sex"], group="arm")
    assert refused.value.organization == "Leiden"
    df = analysis.table1(client, [*NUMERIC, "sex"], group="arm", organizations=TWO)
    check_table1(df, pooled(stats_net, TWO), "arm", NUMERIC, ["sex"])
    assert df.attrs["image"] == "v6nb/table1" and sorted(df.attrs["organizations"]) == sorted(TWO)
    extra = analysis.table1(
        client, ["age"], group="arm", organizations=["Groningen"], database="extra"
    )
    check_table1(extra, pooled(stats_net, ["Groningen"], "extra"), "arm", ["age"], [])


def test_ttest(stats_net, client):
    with pytest.raises(DisclosureRefused, match="Leiden"):
        analysis.ttest(client, "age", "arm")
    df = analysis.ttest(client, "age", "arm", organizations=TWO)
    data = pooled(stats_net, TWO)
    a, b = (data.loc[data.arm == g, "age"].dropna() for g in "AB")
    for row, equal_var in (("welch", False), ("pooled", True)):
        ref = stats.ttest_ind(a, b, equal_var=equal_var)
        assert close(df.loc[row, "statistic"], ref.statistic)
        assert close(df.loc[row, "p_value"], ref.pvalue) and close(df.loc[row, "df"], ref.df)
    assert df.attrs["image"] == "v6nb/ttest"


def test_correlation(stats_net, client):
    with pytest.raises(DisclosureRefused, match="Leiden"):
        analysis.correlation(client, NUMERIC)
    columns = [*NUMERIC, "time"]
    df = analysis.correlation(client, columns, organizations=TWO)
    ref = pooled(stats_net, TWO)[columns].corr()
    for x in columns:
        for y in columns:
            assert close(df.loc[x, y], ref.loc[x, y]), (x, y)


def test_chi2(stats_net, client):
    df = analysis.chi2(client, "sex", "arm", organizations=TWO)
    data = pooled(stats_net, TWO)
    table = pd.crosstab(data.sex, data.arm).to_numpy()
    for row, correction in (("pearson", False), ("yates", True)):
        ref = stats.chi2_contingency(table, correction=correction)
        assert close(df.loc[row, "statistic"], ref.statistic)
        assert close(df.loc[row, "p_value"], ref.pvalue)
    assert df.attrs["image"] == "v6nb/crosstab" and df.attrs["kind"] == "chi2"
    with pytest.raises(DisclosureRefused, match="Leiden"):
        analysis.chi2(client, "sex", "arm")


def test_kaplan_meier(stats_net, client):
    with pytest.raises(DisclosureRefused, match="Leiden"):
        analysis.kaplan_meier(client, "time", "event", "arm", bins=KM_BINS)
    df = analysis.kaplan_meier(client, "time", "event", "arm", bins=KM_BINS, organizations=TWO)
    data = pooled(stats_net, TWO).dropna(subset=["time", "event"])
    t, e = bin_times(data["time"], data["event"], KM_BINS)
    binned = data.assign(time=t, event=e)
    check_curves(df, binned, "arm")
    a, b = (binned[binned.arm == g] for g in "AB")
    ref = logrank_test(a.time, b.time, a.event, b.event)
    assert close(df.attrs["logrank"]["statistic"], ref.test_statistic)
    assert close(df.attrs["logrank"]["p_value"], ref.p_value)
    assert df.attrs["image"] == "v6nb/survival"


def test_each_result_plots(stats_net, client):
    import matplotlib

    matplotlib.use("Agg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing withheld over these two
        frames = [
            analysis.table1(client, NUMERIC, group="arm", organizations=TWO),
            analysis.ttest(client, "bmi", "arm", organizations=TWO),
            analysis.correlation(client, NUMERIC, organizations=TWO),
            analysis.chi2(client, "sex", "arm", organizations=TWO),
            analysis.kaplan_meier(client, "time", "event", "arm", bins=KM_BINS, organizations=TWO),
        ]
    for df in frames:
        ax = analysis.plot_result(df)
        assert ax.has_data(), df.attrs["kind"]
    assert np.isfinite(frames[0].to_numpy()).all()
