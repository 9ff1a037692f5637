"""Disclosure control on a real demo network with the default policy: what leaves a node is checked
by the node, refusals explain without disclosing, and every decision is in the audit log."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd
import pytest

from tests.support.waiting import wait_for
from vantage6nb import analysis, demo
from vantage6nb.audit import read as read_audit
from vantage6nb.audit import verify as verify_audit
from vantage6nb.client import UnverifiedResultWarning
from vantage6nb.errors import DisclosureRefused

pytestmark = pytest.mark.integration

TIMEOUT = 120


def pooled(net) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in net.datasets.values()], ignore_index=True)


@contextmanager
def replaced_data(net, name: str, df: pd.DataFrame) -> Iterator[None]:
    """One node's data replaced by ``df`` for the block (nodes read their file at each run)."""
    path = Path(net.datasets[name])
    backup = path.with_suffix(".bak")
    shutil.copy(path, backup)
    try:
        df.to_csv(path, index=False)
        wait_reported(net, name, df.columns)
        yield
    finally:
        shutil.move(backup, path)


def wait_reported(net, name: str, columns: Iterable[str]) -> None:
    """Wait until node ``name`` reports ``columns`` (nodes watch their files: within seconds), so
    that the client's pre-send check knows them."""
    client, wanted = net.client(), set(columns)

    def reported() -> bool:
        frame = client.columns()
        return wanted <= set(frame.loc[frame["organization"] == name, "column"])

    wait_for(reported, timeout=120, what=f"{name} to report the columns {sorted(wanted)}")


@contextmanager
def data_with_rare_group(net, rare_at: str) -> Iterator[None]:
    """Every node's data with a column ``site``: 'common' everywhere, 'rare' on two rows of one node."""
    backups = {}
    try:
        for name, file in net.datasets.items():
            path = Path(file)
            backups[path] = path.with_suffix(".bak")
            shutil.copy(path, backups[path])
            df = pd.read_csv(path)
            df["site"] = "common"
            if name == rare_at:
                df.loc[df.index[:2], "site"] = "rare"
            df.to_csv(path, index=False)
        for name in net.datasets:
            wait_reported(net, name, ["site"])
        yield
    finally:
        for path, backup in backups.items():
            shutil.move(backup, path)


def assert_no_count(text: str, threshold: int = 5) -> None:
    """No number in a refusal but the threshold (a count would be a protected value); the task
    and run ids the client adds are left out."""
    text = re.sub(r"Task \d+|\(failed_runs: \[[\d, ]*\]\)", "", text)
    numbers = {int(n) for n in re.findall(r"\b\d+\b", text)}
    assert numbers <= {threshold}, (numbers, text)


def test_ordinary_analyses_equal_pandas_on_pooled_data(demo_net, client) -> None:
    data = pooled(demo_net)
    table = analysis.crosstab(client, "species", "island", timeout=TIMEOUT)
    expected = pd.crosstab(data["species"], data["island"])
    assert table.reindex_like(expected).astype("int64").equals(expected.astype("int64"))
    summary = analysis.summary(client, columns=["bill_length_mm", "body_mass_g"], timeout=TIMEOUT)
    for column in ("bill_length_mm", "body_mass_g"):
        assert int(summary.loc[column, "count"]) == data[column].count()
        assert int(summary.loc[column, "missing"]) == data[column].isna().sum()
        assert summary.loc[column, "mean"] == pytest.approx(data[column].mean(), rel=1e-12)
        assert summary.loc[column, "std"] == pytest.approx(data[column].std(), rel=1e-12)
        # the default policy never releases a minimum or a maximum: one record's value
        assert pd.isna(summary.loc[column, "min"]) and pd.isna(summary.loc[column, "max"])


def test_a_crosstab_with_a_small_cell_is_refused_without_its_count(demo_net, client) -> None:
    station = demo_net.node_names[1]
    with data_with_rare_group(demo_net, station):
        with pytest.raises(DisclosureRefused) as caught:
            analysis.crosstab(client, "site", "species", timeout=TIMEOUT)
    exc = caught.value
    assert exc.rule == "min_count" and exc.threshold == 5
    text = str(exc)
    assert station in text and "site" in text and "below this node's minimum of 5" in text
    assert "rare" not in text
    assert_no_count(text)


def test_a_crosstab_of_a_continuous_column_is_refused_by_the_level_limit(client) -> None:
    with pytest.raises(DisclosureRefused) as caught:
        analysis.crosstab(client, "bill_length_mm", "species", timeout=TIMEOUT)
    assert caught.value.rule in {"max_levels", "levels_density"}
    assert "bill_length_mm" in str(caught.value)
    assert_no_count(str(caught.value), threshold=40)


def test_a_direct_call_of_a_federated_part_is_refused(client, org_ids) -> None:
    task = client.task.create(
        organizations=[org_ids[0]],
        image="v6nb/summary",
        method="summary_partial",
        kwargs={"columns": ["body_mass_g"]},
        databases=["default"],
    )
    with pytest.raises(DisclosureRefused) as caught:
        task.wait(timeout=TIMEOUT)
    assert caught.value.rule == "direct_part"
    assert "summary_partial" in str(caught.value) and "summary" in str(caught.value)
    assert task.status()["status"].tolist() == ["refused"]


def test_a_node_with_fewer_rows_than_the_minimum_releases_nothing(demo_net, client) -> None:
    small = demo_net.node_names[0]
    few = pd.read_csv(demo_net.datasets[small]).head(3)
    with replaced_data(demo_net, small, few):
        # never silently wrong: the column is not pooled without that station's records
        with pytest.raises(DisclosureRefused) as caught:
            analysis.summary(client, columns=["body_mass_g", "bill_length_mm"], timeout=TIMEOUT)
        tasks = client.task.list()
        central = tasks[tasks["parent_id"].isna()].sort_values("id").iloc[-1]
        task = client.task.get(int(central["id"]))
        parts = task.subtasks()[0].results_by_organization()
    assert small in str(caught.value) and caught.value.rule == "min_count"
    assert_no_count(str(caught.value))
    released = parts[small]
    assert released["rows"]["@type"] == "suppressed"
    assert {v["@type"] for v in released["columns"].values()} == {"suppressed"}
    assert "3" not in json.dumps(released).replace('"threshold": 5', "")
    others = [v for org, v in parts.items() if org != small]
    assert all(v["columns"]["body_mass_g"]["@type"] == "moments" for v in others)


def test_a_station_with_a_small_group_suppresses_only_that_column(demo_net, client) -> None:
    small = demo_net.node_names[2]
    with ExitStack() as stack:
        for name in demo_net.node_names:  # the column everywhere (the pre-send check wants it)
            data = pd.read_csv(demo_net.datasets[name])
            data["rare_measure"] = None
            if name == small:
                data.loc[data.index[:2], "rare_measure"] = 1.5  # two records have a value here
            stack.enter_context(replaced_data(demo_net, name, data))
        with pytest.warns(analysis.DisclosureWarning) as warned:
            summary = analysis.summary(
                client, columns=["body_mass_g", "rare_measure"], timeout=TIMEOUT
            )
    assert small in str(warned[0].message) and "rare_measure" in str(warned[0].message)
    assert summary.loc["rare_measure"][["mean", "std"]].isna().all()
    assert "rare_measure" in summary.attrs["suppressed"]
    assert summary.loc["body_mass_g", "count"] == pooled(demo_net)["body_mass_g"].count() - 0


def test_per_node_parts_a_researcher_can_read_are_the_checked_ones(client) -> None:
    table = analysis.crosstab(client, "species", "sex", timeout=TIMEOUT)
    task = client.task.get(table.attrs["task_id"])
    (sub,) = task.subtasks()
    with warnings.catch_warnings():  # a subtask of a task this client created: no warning
        warnings.simplefilter("error", UnverifiedResultWarning)
        parts = sub.results_by_organization()
    assert task.verified and not sub.verified
    for part in parts.values():
        value = part.get("value", part)
        cells = value["table"]["cells"]
        assert cells and all(n is None or n >= 5 for *_, n in cells)


def test_every_decision_is_in_the_audit_log_and_the_chain_verifies(demo_net, client) -> None:
    analysis.summary(client, columns=["flipper_length_mm"], timeout=TIMEOUT)
    name = demo_net.node_names[0]
    folder = Path(demo_net._node(name).config).parent / "data" / "audit"
    events = read_audit(folder / "audit.log")
    disclosure = events[events["event"] == "disclosure"]
    assert len(disclosure) >= 1
    decisions = [d for ds in disclosure["decisions"] for d in ds]
    assert any(d["rule"] == "min_count" and d["outcome"] == "passed" for d in decisions)
    assert any(d["rule"] == "extremes" and d["outcome"] == "withheld" for d in decisions)
    refusals = events[(events["event"] == "decision") & (events["rule"] == "direct_part")]
    assert (refusals["allowed"] == True).any()  # noqa: E712  subtasks of the entry point
    assert verify_audit(folder / "audit.log") == []


@pytest.fixture(scope="module")
def strict_net():
    """One node whose operator trusts one test image for untyped output (not diagnostics),
    releases extremes and passes a variable to algorithms, to see those settings act."""
    policy = {
        "untyped_images": ["test/env"],
        "extremes": "allow",
        "algorithm_env": {"SUMMARY_MINIMUM_ROWS": "7"},  # a vantage6 algorithm's own threshold
    }
    with demo.start(
        nodes=1,
        node_settings={"disclosure": policy},
        algorithms={"test/env": "tests.integration.env_algorithm"},
    ) as network:
        yield network


def test_untyped_output_is_refused_unless_the_image_is_trusted(strict_net) -> None:
    client = strict_net.client()
    org = client.organizations()["id"].tolist()[0]
    task = client.task.create(
        organizations=[org], image="v6nb/diagnostics", method="echo", kwargs={"x": 42}
    )
    with pytest.raises(DisclosureRefused) as caught:
        task.wait(timeout=TIMEOUT)
    assert caught.value.rule == "untyped"
    assert "disclosure.untyped_images" in str(caught.value) and "42" not in str(caught.value)


def test_extremes_follow_the_policy(strict_net) -> None:
    client = strict_net.client()
    data = pooled(strict_net)
    summary = analysis.summary(client, columns=["body_mass_g"], timeout=TIMEOUT)
    assert summary.loc["body_mass_g", "min"] == data["body_mass_g"].min()
    assert summary.loc["body_mass_g", "max"] == data["body_mass_g"].max()


def test_the_policy_passes_variables_into_the_algorithm(strict_net) -> None:
    client = strict_net.client()
    org = client.organizations()["id"].tolist()[0]
    task = client.task.create(
        organizations=[org],
        image="test/env",
        method="environment",
        kwargs={"names": ["SUMMARY_MINIMUM_ROWS", "V6NB_NODE_API_KEY"]},
    )
    (seen,) = task.results(timeout=TIMEOUT)
    assert seen == {"SUMMARY_MINIMUM_ROWS": "7", "V6NB_NODE_API_KEY": None}
