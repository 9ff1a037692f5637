"""Waits you can watch: the progress line on a terminal (and nothing in a script), a warning at
once for a task sent to an offline node, and a timeout that names every organization still open
with its node's state, against a real server and node processes (one stopped, one slow)."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import time
import warnings
from typing import Any

import pandas as pd
import pytest

from tests.support.waiting import wait_for
from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.client import NodeOfflineWarning
from vantage6nb.client._progress import PROGRESS_ENV, MonitorReport, ProgressLine, choose_progress
from vantage6nb.common.errors import ConfigurationError, TaskFailed, ValidationError
from vantage6nb.errors import TaskTimeout

NAPS = "v6nb/naps"  # this module, run by the nodes: a central and a part that sleeps on request
DIAG = "v6nb/diagnostics"
WAIT_S = 120


# -- the algorithm the nodes run (imported by them as tests.client.test_waits) -----------------
@entry_point
@algorithm_client
def nap_central(client: AlgorithmClient, organizations: list[int] | None = None) -> Any:
    """Central: run ``nap`` at ``organizations`` and wait for every part."""
    from vantage6nb.algorithms._common import run_partials

    return {"slept": [p.value for p in run_partials(client, "nap", {}, organizations, name="nap")]}


@federated
@data(1)
def nap(df: Any) -> dict[str, float]:
    """Sleep as long as the station's data say (column ``nap``): a slow station, on purpose."""
    seconds = float(df["nap"].iloc[0])
    time.sleep(seconds)
    return {"slept": seconds}


@federated
@data(1)
def picky(df: Any, column: str = "nap") -> dict[str, float]:
    """A part that refuses a column its data do not have (its input, not a crash)."""
    if column not in df.columns:
        raise ValidationError(
            f"Column {column!r} does not exist; the data have {list(df.columns)}."
        )
    return {"sum": float(df[column].sum())}


@entry_point
@algorithm_client
def picky_central(client: AlgorithmClient, column: str = "nap") -> Any:
    """Central: run ``picky`` everywhere."""
    from vantage6nb.algorithms._common import run_partials

    return [p.value for p in run_partials(client, "picky", {"column": column}, None, name="picky")]


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def net():
    from vantage6nb import demo

    fast, slow = pd.DataFrame({"nap": [0.0, 0.0]}), pd.DataFrame({"nap": [3600.0, 3600.0]})
    with demo.start(algorithms={NAPS: __name__}, datasets=[fast, slow, fast]) as network:
        yield network


@pytest.fixture(scope="module")
def names(net) -> list[str]:
    return list(net.node_names)  # first (the researcher's), slow, the one we stop


@pytest.fixture(scope="module")
def stopped(net, names) -> str:
    """The third organization, its node stopped (and seen offline by the server)."""
    client = net.client()
    name = names[2]
    net.stop_node(name)
    wait_for(
        lambda: client.nodes().set_index("organization").loc[name, "status"] == "offline",
        WAIT_S,
        f"the node of {name} offline",
    )
    return name


def _kill_all(task: Any) -> None:
    for sub in task.subtasks():
        sub.kill()
    task.kill()


# -- the progress line -------------------------------------------------------------------------
def test_auto_progress_is_a_line_on_a_tty_and_nothing_on_a_pipe(monkeypatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            assert isinstance(choose_progress(None, stream=tty), ProgressLine)
    finally:
        os.close(master)
        os.close(slave)
    assert choose_progress(None, stream=io.StringIO()) is None  # a script's redirected stderr
    assert isinstance(choose_progress(True, stream=io.StringIO()), ProgressLine)  # asked for
    assert isinstance(choose_progress("line", stream=io.StringIO()), ProgressLine)
    assert choose_progress(None, default="off", stream=io.StringIO()) is None
    monkeypatch.setenv(PROGRESS_ENV, "line")
    assert isinstance(choose_progress(None, stream=io.StringIO()), ProgressLine)
    # the explicit argument wins over the client's setting, which wins over the environment
    assert choose_progress(False, default="line") is None
    assert isinstance(choose_progress(None, default="monitor"), ProgressLine)  # no kernel here
    with pytest.raises(ValueError, match="progress='loud' is not one of auto, monitor, line"):
        choose_progress("loud")
    assert not isinstance(choose_progress("monitor"), MonitorReport)  # outside a kernel


_SCRIPT = """
import sys
from vantage6nb import Client
client = Client(sys.argv[1], state_dir=False).login(sys.argv[2], sys.argv[3])
own = client.whoami["organization_id"]
task = client.task.create(organizations=[own], image="v6nb/diagnostics", method="sleep",
                          kwargs={"seconds": 1, "chatter": False})
task.wait(timeout=120)
print("result", task.results()[0]["slept"] >= 1, flush=True)
"""


def _script_args(net: Any) -> list[str]:
    creds = net.credentials
    return [sys.executable, "-c", _SCRIPT, net.url, creds["username"], creds["password"]]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != PROGRESS_ENV}


def test_a_script_on_a_terminal_shows_one_updating_line(net) -> None:
    master, slave = os.openpty()
    proc = subprocess.Popen(
        _script_args(net), stdout=subprocess.PIPE, stderr=slave, env=_env(), text=True
    )
    os.close(slave)
    seen = bytearray()

    def ended() -> bool:
        while select.select([master], [], [], 0.05)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                return proc.poll() is not None
            if not chunk:
                break
            seen.extend(chunk)
        return proc.poll() is not None

    try:
        wait_for(ended, WAIT_S, "the script to finish")
        out = proc.stdout.read() if proc.stdout else ""
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = seen.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "result True" in out
    updates = [u for u in text.split("\r") if u.strip()]
    assert re.match(r"task \d+ sleep: 0/1 done \(\w+ 1\) \d+\.\ds", updates[0]), text
    assert re.match(r"task \d+ sleep: 1/1 done \(completed 1\) \d+\.\ds", updates[-1]), text
    assert text.endswith("\n") and text.count("\n") == 1  # one line, rewritten in place


def test_a_script_whose_stderr_is_not_a_terminal_shows_nothing(net) -> None:
    proc = subprocess.run(
        _script_args(net), capture_output=True, text=True, env=_env(), timeout=WAIT_S
    )
    assert proc.returncode == 0, proc.stderr
    assert "result True" in proc.stdout
    assert "done (" not in proc.stderr and "\r" not in proc.stderr


def test_the_line_counts_a_centrals_parts(net, names) -> None:
    client = net.client()
    ids = [net.organizations[n] for n in names[:1]]
    out = io.StringIO()
    task = client.task.create(
        organizations=ids,
        image=NAPS,
        method="nap_central",
        kwargs={"organizations": ids},
        databases=["default"],
    )
    line = ProgressLine(out)
    task.wait(timeout=WAIT_S, progress=line)
    line.close()
    assert re.search(r"1/1 done \(completed 1\), parts 1/1 done", out.getvalue()), out.getvalue()


# -- a task for an offline node warns at once --------------------------------------------------
def test_no_warning_when_every_node_is_online(net, names) -> None:
    client = net.client()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = client.task.create(organizations=names[:2], image=DIAG, method="echo")
    assert not [w for w in caught if issubclass(w.category, NodeOfflineWarning)]
    task.wait(timeout=WAIT_S, progress=False)


def test_a_task_for_an_offline_node_warns_naming_it_and_since_when(net, names, stopped) -> None:
    client = net.client()
    with pytest.warns(NodeOfflineWarning) as caught:
        task = client.task.create(organizations=names, image=DIAG, method="echo")
    try:
        (warning,) = [w for w in caught if issubclass(w.category, NodeOfflineWarning)]
        text = str(warning.message)
        assert f"Task {task.id} runs at organizations whose node is not online" in text
        assert re.search(
            rf"- {stopped}: node '[^']+' of organization '{stopped}' is offline since "
            r"\d\d:\d\d:\d\d — start it with `v6nb node start`",
            text,
        ), text
        assert names[0] not in text and names[1] not in text  # online: not named
        assert warning.filename == __file__  # the researcher's line, not the library's
    finally:
        task.kill()


# -- a timeout names every organization still open ---------------------------------------------
def test_timeout_names_every_open_organization_with_its_nodes_state(net, names, stopped) -> None:
    client = net.client()
    ids = [net.organizations[n] for n in names]
    task = client.task.create(
        organizations=[ids[0]],
        image=NAPS,
        method="nap_central",
        kwargs={"organizations": ids},
        databases=["default"],
    )
    try:

        def parts_under_way() -> Any:
            subs = task.subtasks()
            if not subs:
                return None
            status = subs[0].status().set_index("organization")["status"]
            ready = status.get(names[0]) == "completed" and status.get(names[1]) == "active"
            return subs[0] if ready else None

        sub = wait_for(parts_under_way, WAIT_S, "the fast part done and the slow one active")
        with pytest.raises(TaskTimeout) as info:
            task.wait(timeout=0.5, progress=False)
    finally:
        _kill_all(task)
    msg = str(info.value)
    lines = msg.splitlines()
    assert lines[0] == f"Task {task.id} (nap_central) did not finish within 0.5 s; still open:"
    assert re.match(
        rf"  - {names[0]}: active for \d+ s — node '[^']+' of organization '{names[0]}' is "
        rf"still running it \(the central part, waiting for subtask {sub.id}\)$",
        lines[1],
    ), msg
    assert re.match(
        rf"  - {names[1]} \(subtask {sub.id}\): active for \d+ s — node '[^']+' of "
        rf"organization '{names[1]}' is still running it$",
        lines[2],
    ), msg
    assert re.match(
        rf"  - {stopped} \(subtask {sub.id}\): pending — node '[^']+' of organization "
        rf"'{stopped}' is offline since \d\d:\d\d:\d\d — start it with `v6nb node start`$",
        lines[3],
    ), msg
    assert len(lines) == 5 and "task.kill()" in lines[4]  # the completed part is not named


def test_an_analysis_helper_timeout_names_the_offline_organization(net, names, stopped) -> None:
    from vantage6nb import analysis

    client = net.client()
    with pytest.raises(TaskTimeout) as info, pytest.warns(NodeOfflineWarning, match=stopped):
        # 30 s: time for the central to create its parts (it waits for the offline one for ever)
        analysis.summary(client, columns=["nap"], timeout=30)
    msg = str(info.value)
    task_id = int(re.match(r"Task (\d+)", msg).group(1))  # type: ignore[union-attr]
    _kill_all(client.task.get(task_id))
    assert re.search(rf"- {stopped} \(subtask \d+\): pending — .* is offline since ", msg), msg
    assert re.search(rf"- {names[0]}: active for \d+ s .*waiting for subtask", msg), msg


# -- a run that refused its input is rejected, not crashed -------------------------------------
def test_local_network_reports_a_validation_error_as_rejected() -> None:
    frames = [pd.DataFrame({"nap": [1.0]}), pd.DataFrame({"nap": [2.0]})]
    net = LocalNetwork(sys.modules[__name__], frames, policy=False)
    with pytest.raises(ValidationError, match="Column 'agee' does not exist"):
        net.run("picky", kwargs={"column": "agee"})
    (run,) = net.tasks[max(net.tasks)]["runs"]
    assert run["status"] == "failed" and run["reason"].startswith("rejected: Column 'agee'")
    # a part that refused: its run is rejected too (the central, whose part failed, crashed)
    with pytest.raises(TaskFailed, match=r"failed \(rejected: Column 'agee'"):
        net.run("picky_central", kwargs={"column": "agee"})
    sub = net.tasks[max(net.tasks)]
    assert {r["status"] for r in sub["runs"]} == {"failed"}
    assert all(r["reason"].startswith("rejected: Column 'agee'") for r in sub["runs"])


def test_local_network_reports_too_few_databases_as_rejected() -> None:
    net = LocalNetwork(sys.modules[__name__], [pd.DataFrame({"nap": [1.0]})], policy=False)
    with pytest.raises(ConfigurationError, match=r"needs 1 database\(s\)"):
        net.run("nap", databases=[])
    (run,) = net.tasks[max(net.tasks)]["runs"]
    assert run["status"] == "failed" and run["reason"].startswith("rejected: 'nap' needs 1")


def test_a_node_reports_too_few_databases_as_rejected(net, names) -> None:
    client = net.client()
    task = client.task.create(organizations=names[:1], image=DIAG, method="shape")
    with pytest.raises(TaskFailed) as info:
        task.wait(timeout=WAIT_S, progress=False)
    row = task.status().iloc[0]
    assert row["status"] == "failed", row["reason"]  # not "crashed": the input asked too little
    assert row["reason"].startswith("rejected: 'shape' needs 1 database(s)")
    assert "(change the input and run the task again)" in info.value.summary
