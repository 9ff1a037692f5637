"""Typed results: the constructors, the wrapper's marker and refusals, and the researcher's side."""

from __future__ import annotations

import json
import sys
import types
import warnings

import numpy as np
import pandas as pd
import pytest

from vantage6nb import analysis
from vantage6nb.algorithm import entry_point, typed, wrap_algorithm
from vantage6nb.algorithm.results import (
    TypedResult,
    count,
    count_of,
    count_table,
    estimates,
    is_suppressed,
    moments,
    pooled_moments,
    refusal,
    suppressed,
    unwrap,
)
from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.algorithms.summary import combine, summary_frame
from vantage6nb.common import contract
from vantage6nb.common.disclosure import DisclosurePolicy
from vantage6nb.common.errors import DisclosureRefused
from vantage6nb.common.release import check_output


# --- constructors -------------------------------------------------------------------------------
def test_moments_pooled_equal_pandas_mean_and_std():
    rng = np.random.default_rng(7)
    values = pd.Series(5e6 + rng.normal(size=300))
    splits = [values[:7], values[7:200], values[200:]]
    parts = [moments(s, column="v") for s in splits]
    pooled = combine(parts)
    assert pooled["count"] == 300 and pooled["missing"] == 0
    assert pooled["mean"] == pytest.approx(values.mean(), rel=1e-15)
    assert np.sqrt(pooled["m2"] / 299) == pytest.approx(values.std(ddof=1), rel=1e-9)
    assert (pooled["min"], pooled["max"]) == (values.min(), values.max())


def test_moments_carry_evidence_and_count_nulls_as_missing():
    m = moments(np.array([3.0, -7.0, np.nan, 1.0, 5.0]), column="x", missing=2)
    assert (m["@type"], m["column"], m["count"], m["missing"]) == ("moments", "x", 4, 3)
    assert m["evidence"] == {"abs_sum": 16.0, "top": [7.0, 5.0, 3.0, 1.0]}
    assert (m["min"], m["max"], m["mean"]) == (-7.0, 5.0, 0.5)
    empty = moments([], missing=4)
    assert (empty["count"], empty["mean"], empty["min"], empty["evidence"]["top"]) == (
        0,
        None,
        None,
        [],
    )
    assert moments([2.0])["evidence"]["top"] == [2.0]


def test_counts_and_tables_take_numpy_values_and_reject_nonsense():
    assert count(np.int64(4)) == {"@type": "count", "n": 4}
    table = count_table(["a", "b"], [[np.str_("x"), np.int64(2007), np.int64(3)], ["y", 1, 0]])
    assert table["cells"] == [["x", 2007, 3]] and type(table["cells"][0][1]) is int
    assert count_table(["a"], [["x", 2]], total=2)["total"] == 2
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises((TypeError, ValueError)):
            count(bad)
    with pytest.raises(ValueError, match="key per name"):
        count_table(["a", "b"], [["x", 1]])


def test_estimates_refusal_and_suppressed_values():
    assert estimates(np.array([0.5, 1.5]), n=30, parameters=2)["values"] == [0.5, 1.5]
    assert refusal(rule="min_count", threshold=5, organization_id=2, columns=["x"]) == {
        "@type": "refusal",
        "organization_id": 2,
        "rule": "min_count",
        "threshold": 5,
        "columns": ["x"],
    }
    hidden = suppressed("dominance", 0.9, "column 'x'", organizations=[1, 3])
    assert is_suppressed(hidden) and not is_suppressed(count(1)) and not is_suppressed(None)
    assert count_of(hidden) is None and count_of(count(3)) == 3 and count_of(3) == 3
    assert "evidence" not in pooled_moments(count=3, missing=0, mean=1.0, m2=0.0)


def test_typed_wraps_and_unwrap_unwraps():
    value = {"rows": count(3)}
    assert isinstance(typed(value), TypedResult)
    assert unwrap(typed(value)) is value
    assert unwrap({"v6nb.result": 1, "value": value}) is value
    assert unwrap(value) is value


# --- the wrapper --------------------------------------------------------------------------------
def _module(monkeypatch, **methods):
    mod = types.ModuleType("typed_result_test_algorithm")
    for name, func in methods.items():
        setattr(mod, name, func)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod.__name__


def _wrap(tmp_path, module, method):
    (tmp_path / "in.json").write_text(json.dumps(contract.make_input(method)))
    env = contract.build_environment(
        input_file=str(tmp_path / "in.json"),
        output_file=str(tmp_path / "out.json"),
        token_file=str(tmp_path / "token"),
        temporary_folder=str(tmp_path),
        host="h",
        port=1,
        api_path="",
        databases={},
    )
    code = wrap_algorithm(module, environ=env)
    return code, (tmp_path / "out.json").read_bytes()


def test_wrapper_writes_typed_results_with_the_marker_first(monkeypatch, tmp_path):
    module = _module(monkeypatch, part=lambda: typed({"n": count(np.int64(12))}))
    code, out = _wrap(tmp_path, module, "part")
    assert code == 0
    assert out.startswith(b'{"v6nb.result": 1, "value": ')
    assert json.loads(out) == {"v6nb.result": 1, "value": {"n": {"@type": "count", "n": 12}}}
    release = check_output(out, DisclosurePolicy(), image="me/algo")
    assert release.refusal is None and json.loads(release.data) == json.loads(out)


def test_a_refused_part_makes_the_entry_point_write_a_refusal_and_exit_0(monkeypatch, tmp_path):
    @entry_point
    def central():
        raise DisclosureRefused(
            "part refused", organization="4", rule="min_count", threshold=5, errors={}
        )

    code, out = _wrap(tmp_path, _module(monkeypatch, central=central), "central")
    assert code == 0
    assert json.loads(out)["value"] == refusal(rule="min_count", threshold=5, organization_id=4)
    release = check_output(out, DisclosurePolicy(), image="me/algo", entry_point=True)
    assert release.data is None
    assert release.refusal.reason().startswith(
        "refused by the disclosure policy of organization 4 (rule min_count, threshold 5)"
    )


def test_a_partial_output_is_released_without_its_evidence():
    frames = [pd.DataFrame({"x": np.arange(12.0)})]
    net = LocalNetwork("vantage6nb.algorithms.summary", frames)
    net.run("summary")
    partial = next(r for r in net._results.values() if "mean_correction" in str(r))
    stats = partial["value"]["columns"]["x"]
    assert "evidence" not in stats and stats["count"] == 12 and stats["min"] is None


# --- the researcher's side: analysis over a local network ---------------------------------------
class _Task:
    def __init__(self, result):
        self._result = result
        self.id, self.image, self.method, self.collaboration_id = 1, "v6nb/x", "m", 1
        self.created_at = None

    def wait(self, timeout=None):
        return self

    def result(self):
        return self._result

    def _warn_offline(self, organization_ids=None):
        return None  # the LocalNetwork's nodes are never offline


class _Client:
    """Just what vantage6nb.analysis needs, with the central task run in a LocalNetwork."""

    def __init__(self, net):
        self.net = net
        self.whoami = {"organization_id": net.organizations[0]["id"]}
        self.task = types.SimpleNamespace(create=self._create)

    def collaboration(self, collaboration):
        return {"id": 1, "organization_ids": [o["id"] for o in self.net.organizations]}

    def organization_ids(self, organizations, collaboration=None):
        return [o["id"] for o in self.net.organizations]

    def organization_names(self, ids=()):
        return {o["id"]: o["name"] for o in self.net.organizations}

    def _create(self, *, organizations, method, kwargs, **_):
        # the client hands over the released value with its marker, as a node uploads it
        return _Task({"v6nb.result": 1, "value": self.net.run(method, kwargs=kwargs)})


def test_analysis_warns_naming_organizations_and_rules_when_a_column_is_withheld():
    frames = [
        pd.DataFrame({"x": np.arange(20.0), "y": [1.0, 2.0] + [None] * 18}),
        pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30.0)}),
    ]
    net = LocalNetwork(
        "vantage6nb.algorithms.summary", frames, organization_names=["Leiden", "Utrecht"]
    )
    with pytest.warns(analysis.DisclosureWarning, match="Leiden.*column 'y' .rule min_count"):
        df = analysis.summary(_Client(net))
    assert df.loc["y"].isna().all() and df.loc["x", "count"] == 50
    assert "organization 0" in df.attrs["suppressed"]["y"]
    assert df.attrs["task_id"] == 1  # the provenance is still there


def test_analysis_refuses_when_everything_was_withheld_and_is_quiet_otherwise():
    small = [pd.DataFrame({"y": [1.0, 2.0]}), pd.DataFrame({"y": np.arange(9.0)})]
    net = LocalNetwork("vantage6nb.algorithms.summary", small, organization_names=["A", "B"])
    with pytest.raises(DisclosureRefused, match="withheld the whole result") as caught:
        analysis.summary(_Client(net))
    assert (caught.value.organization, caught.value.rule) == ("A", "min_count")
    fine = LocalNetwork("vantage6nb.algorithms.summary", [pd.DataFrame({"y": np.arange(9.0)})])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert analysis.summary(_Client(fine)).loc["y", "count"] == 9


def test_frames_accept_the_whole_typed_output_and_per_part_results():
    value = {"columns": {"x": pooled_moments(count=3, missing=1, mean=2.0, m2=2.0)}}
    df = summary_frame({"v6nb.result": 1, "value": value})
    assert df.loc["x", "std"] == 1.0 and str(df["count"].dtype) == "int64"
    parts = [{"v6nb.result": 1, "value": {"columns": {"x": moments([1.0, 2.0])}}}] * 2
    per_part = summary_frame(parts)
    assert per_part["part"].tolist() == [0, 1] and "evidence" not in per_part.columns
