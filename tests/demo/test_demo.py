"""The demo network: real server and node processes on loopback, set up, used and torn down by one call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.support import free_port, pid_alive, wait_for
from vantage6nb import demo
from vantage6nb.algorithms.crosstab import crosstab_frame
from vantage6nb.algorithms.summary import summary_frame
from vantage6nb.common.errors import ConfigurationError, NotFound
from vantage6nb.demo._setup import PENGUINS

pytestmark = pytest.mark.integration


def test_split_is_deterministic_unequal_and_complete():
    a, b = demo.split_dataset(None, 3), demo.split_dataset(None, 3)
    assert [len(p) for p in a] == [76, 115, 153]
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    pooled = pd.concat(a).sort_values(list(a[0].columns)).reset_index(drop=True)
    original = pd.read_csv(PENGUINS).sort_values(list(a[0].columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(pooled, original)
    assert demo.organization_names(10)[-2:] == ["Org 9", "Org 10"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nodes": 0}, "nodes"),
        ({"runtime": "kubernetes"}, "runtime must be"),
    ],
)
def test_bad_arguments_fail_before_any_process_starts(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        demo.start(**kwargs)


def test_network_handle_describes_what_runs(shared_demo_net):
    net = shared_demo_net
    assert net.url.startswith("http://127.0.0.1:")
    assert list(net.datasets) == ["Leiden", "Utrecht", "Groningen"]
    assert all(os.path.isfile(p) and str(net.workdir) in p for p in net.datasets.values())
    client = net.client()
    orgs = client.organizations()
    assert sorted(orgs["name"]) == sorted(net.datasets)
    assert len(client.nodes()) == 3
    wait_for(lambda: set(client.nodes()["status"]) == {"online"}, 60, "every node online")
    engine = sa.create_engine(net.server_db_url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
    assert tables  # the URL points at the server's real database
    with pytest.raises(NotFound, match="Leiden, Utrecht, Groningen"):
        net.node_log("Atlantis")
    assert net.credentials["username"] and net.credentials["password"]


def test_summary_round_trip_equals_pandas_on_pooled_data(shared_demo_net):
    net = shared_demo_net
    client = net.client()
    org_ids = client.organizations()["id"].tolist()
    own = client.whoami["organization_id"]
    task = client.task.create(
        organizations=[own],
        image="v6nb/summary",
        method="summary",
        kwargs={"organizations": org_ids},
        databases=["default"],
    )
    task.wait(timeout=120)
    result = task.result()  # the node-checked typed values: moments per column
    pooled = pd.concat([pd.read_csv(p) for p in net.datasets.values()], ignore_index=True)
    numeric = pooled.select_dtypes("number")
    assert list(result["columns"]) == list(numeric.columns)
    assert {v["@type"] for v in result["columns"].values()} == {"moments"}
    frame = summary_frame(result)
    for name in numeric.columns:
        col, got = numeric[name], frame.loc[name]
        assert (got["count"], got["missing"]) == (col.count(), col.isna().sum())
        for stat, expected in (("mean", col.mean()), ("std", col.std())):
            assert got[stat] == pytest.approx(expected, rel=1e-9), (name, stat)
        assert pd.isna(got["min"]) and pd.isna(got["max"])  # withheld by the default policy
    children = client.task.list(parent_id=task.id)
    assert len(children) == 1  # one partial subtask, at every organization


def test_crosstab_round_trip_equals_pandas(shared_demo_net):
    client = shared_demo_net.client()
    own = client.whoami["organization_id"]
    task = client.task.create(
        organizations=[own],
        image="v6nb/crosstab",
        method="crosstab",
        # island x sex: a cell under 5 at one station; missing sex left out, as pandas does
        kwargs={"row": "species", "col": "sex", "dropna": True},
        databases=["default"],
    )
    task.wait(timeout=120)
    result = task.result()
    pooled = pd.concat(
        [pd.read_csv(p) for p in shared_demo_net.datasets.values()], ignore_index=True
    )
    expected = pd.crosstab(pooled["species"], pooled["sex"])
    assert result["table"]["@type"] == "count_table"
    table = crosstab_frame(result)
    assert table.loc[expected.index, expected.columns].astype("int64").equals(expected)


def test_node_and_server_restart_helpers(tmp_path):
    with demo.start(nodes=1, workdir=tmp_path / "net") as net:
        client = net.client()
        (name,) = net.node_names
        net.stop_node(name)
        wait_for(lambda: set(client.nodes()["status"]) == {"offline"}, 60, "the node offline")
        net.start_node(name)
        wait_for(lambda: set(client.nodes()["status"]) == {"online"}, 60, "the node online")
        old = net.pids()["server"]
        net.restart_server()
        assert net.pids()["server"] not in (None, old)
        task = client.task.create(image="v6nb/diagnostics", method="echo", kwargs={"x": 1})
        task.wait(timeout=60)
        assert task.results() == [{"args": [], "kwargs": {"x": 1}}]
        assert net.node_log(name).strip()  # the node logs to its own file
        pids = [p for p in net.pids().values() if p]
    assert not any(pid_alive(p) for p in pids)
    assert (tmp_path / "net").is_dir()  # a workdir we gave is kept; a temporary one is removed


def test_processes_die_with_the_interpreter_and_temp_dirs_are_removed_by_stop():
    code = (
        "import json, sys; from vantage6nb import demo; net = demo.start(nodes=1);"
        "print(json.dumps({'pids': list(net.pids().values()), 'workdir': str(net.workdir)}), flush=True)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(info["pids"]) == 2
    assert not any(pid_alive(p) for p in info["pids"])  # atexit stopped them without stop()
    net = demo.start(nodes=1)
    workdir = net.workdir
    net.stop()
    assert not workdir.exists()


def test_cli_prints_url_credentials_and_summary_then_stops_on_ctrl_c():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vantage6nb", "demo", "--nodes", "2", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text
        assert "researcher" in text and "Federated summary" in text and "body_mass_g" in text
        table = text.split("Federated summary")[1].split("(min and max")[0]
        assert "suppressed" in table and "NaN" not in table and "4,202" in table
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
