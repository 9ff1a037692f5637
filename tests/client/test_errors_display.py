"""Errors as a researcher reads them: one line per organization by name, with the reason and what to
do; the node's log folded behind a toggle (``exc.details``); in IPython a short block, not library
frames; plain Python untouched. Friendly answers to a Client URL ending in ``/api``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import vantage6nb
from tests.client.conftest import RESEARCHER_PASSWORD
from vantage6nb import errors
from vantage6nb.common.errors import (
    RunFailure,
    TaskFailed,
    V6Error,
    error_from_payload,
    error_html,
    rejection,
)
from vantage6nb.errors import _install_ipython_display

DIAG = "v6nb/diagnostics"
WAIT_S = 120


# -- the error objects ---------------------------------------------------------------------------


def test_task_failed_keeps_summary_details_and_the_wire_shape() -> None:
    log = "Traceback (most recent call last):\n  File 'x.py'\nRuntimeError: boom"
    exc = TaskFailed(
        "Task 3 (crash) did not complete everywhere:\n  - Leiden: crashed — RuntimeError: boom",
        errors={"failed_runs": [7]},
        failures=[RunFailure("Leiden", "crashed", "RuntimeError: boom", log=log)],
    )
    assert "Traceback" not in exc.summary and "failed_runs" not in exc.summary
    assert exc.details.startswith("Leiden:\n    | Traceback") and exc.details_title == (
        "Node logs: Leiden"
    )
    assert str(exc).startswith(exc.summary) and "| RuntimeError: boom" in str(exc)
    back = error_from_payload(exc.status, json.loads(json.dumps(exc.to_dict())))
    assert type(back) is TaskFailed and str(back) == str(exc) and back.errors == exc.errors
    page = error_html(exc, where="at line 2: task.wait()")
    summary, folded = page.split("<details>")
    assert "Leiden: crashed — RuntimeError: boom" in summary and "Traceback" not in summary
    assert "at line 2: task.wait()" in summary
    assert "<summary>Node logs: Leiden</summary>" in folded and "| RuntimeError: boom" in folded


def test_an_error_raised_from_a_task_failure_keeps_its_details() -> None:
    cause = TaskFailed("failed", failures=[RunFailure("Leiden", "failed", "x", log="the log")])
    try:
        raise TaskFailed("Task 1 (v6nb/summary): Column 'x' exists nowhere.") from cause
    except TaskFailed as exc:
        assert exc.details == "Leiden:\n    | the log"
    assert V6Error("plain").details == "" and "<details>" not in error_html(V6Error("plain"))


def test_rejection_reads_only_the_last_line() -> None:
    assert rejection("x\nrejected: Column 'agee' does not exist\n") == (
        "rejected: Column 'agee' does not exist"
    )
    assert rejection("rejected: early\nRuntimeError: later") is None
    assert rejection("rejected: ") is None


# -- real failed tasks, as TaskFailed and as the notebook shows them -------------------------------


@pytest.fixture(scope="module")
def demo_client(shared_demo_net):
    client = shared_demo_net.client()
    yield client
    client.close()


def _failure(call: Any) -> TaskFailed:
    with pytest.raises(TaskFailed) as caught:
        call()
    return caught.value


def test_a_crash_is_one_line_per_organization_by_name_with_the_log_folded(demo_client) -> None:
    exc = _failure(
        lambda: demo_client.task.create(
            image=DIAG, method="crash", kwargs={"message": "boom-771"}
        ).wait(timeout=WAIT_S, progress=False)
    )
    lines = exc.summary.splitlines()
    for org in ("Leiden", "Utrecht", "Groningen"):
        assert f"  - {org}: crashed — RuntimeError: boom-771" in lines
    # what to do, once for all (the same for every organization)
    assert "What to do: the algorithm stopped with an error at this station: see its log" in (
        exc.summary
    )
    assert "algorithm crashed (exit code" not in exc.summary  # the status says it already
    assert "Traceback" not in exc.summary and "File " not in exc.summary
    assert [f.organization for f in exc.failures] == ["Leiden", "Utrecht", "Groningen"]
    assert all("raise RuntimeError(message)" in f.log for f in exc.failures)
    assert "Groningen:\n    | " in exc.details and "RuntimeError: boom-771" in exc.details


def test_an_input_the_algorithm_refuses_is_rejected_not_crashed(demo_client) -> None:
    own = demo_client.whoami["organization_id"]
    ids = demo_client.organizations()["id"].tolist()
    task = demo_client.task.create(
        organizations=[own],
        image="v6nb/summary",
        method="summary",
        kwargs={"columns": ["bill_lenght_mm"], "organizations": ids},
        databases=["default"],
        check=False,  # past the client's own check (tests/client/test_check_before_send.py)
    )
    exc = _failure(lambda: task.wait(timeout=WAIT_S, progress=False))
    row = task.status().iloc[0]
    assert row["status"] == "failed"  # not "crashed": the algorithm refused its input
    assert row["reason"].startswith("rejected: Column 'bill_lenght_mm'")
    (line,) = [ln for ln in exc.summary.splitlines() if ln.startswith("  - ")]
    assert line.startswith("  - Leiden: failed — rejected: Column 'bill_lenght_mm'")
    assert line.endswith("(change the input and run the task again)")


def test_failed_parts_of_a_central_task_are_named_not_nested(demo_client) -> None:
    own = demo_client.whoami["organization_id"]
    ids = demo_client.organizations()["id"].tolist()
    # without databases, every part refuses to start: the central's subtask fails everywhere
    task = demo_client.task.create(
        organizations=[own],
        image="v6nb/summary",
        method="summary",
        kwargs={"organizations": ids},
    )
    exc = _failure(lambda: task.wait(timeout=WAIT_S, progress=False))
    lines = exc.summary.splitlines()
    assert re.match(
        r"  - Leiden: crashed — its subtask \d+ did not complete at Leiden and Utrecht and "
        r"Groningen:$",
        lines[1],
    )
    for org, line in zip(["Leiden", "Utrecht", "Groningen"], lines[2:5], strict=True):
        assert line.startswith(f"      - {org}: ") and "needs 1 database(s)" in line
    assert "organization 2" not in exc.summary  # organizations by name, never by id
    (central,) = exc.failures
    assert [p.organization for p in central.parts] == ["Leiden", "Utrecht", "Groningen"]
    assert "the parts it waited for" in exc.details


# -- IPython: the block instead of a traceback -----------------------------------------------------


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    ip.set_custom_exc((), None)
    ip.run_line_magic("xmode", "Context")
    assert _install_ipython_display(ip)
    yield ip
    ip.set_custom_exc((), None)
    errors._SHELLS.discard(ip)


def _run(shell: InteractiveShell, code: str) -> tuple[Any, list[dict[str, Any]], str]:
    with capture_output() as out:
        result = shell.run_cell(code)
    return result, [o.data for o in out.outputs], out.stdout + out.stderr


def test_ipython_shows_a_failed_task_as_a_block_with_the_logs_folded(shell, demo_client) -> None:
    shell.user_ns["client"] = demo_client
    result, shown, printed = _run(
        shell,
        "task = client.task.create(image='v6nb/diagnostics', method='crash',\n"
        "                          kwargs={'message': 'boom-772'})\n"
        "task.wait(timeout=120, progress=False)\n",
    )
    assert not result.success and isinstance(result.error_in_exec, TaskFailed)
    (data,) = shown
    html, text = data["text/html"], data["text/plain"]
    summary, folded = html.split("<details>", 1)
    assert "<b>TaskFailed</b>: Task " in summary
    for org in ("Leiden", "Utrecht", "Groningen"):
        assert f"{org}: crashed — RuntimeError: boom-772" in summary
    assert "at line 3: task.wait(timeout=120, progress=False)" in summary  # the researcher's line
    assert "File " not in summary and "_task.py" not in html  # no library frames
    assert "Node logs: Leiden, Utrecht, Groningen" in folded and "boom-772" in folded
    assert "Traceback" not in printed  # no traceback printed besides the block
    assert text.startswith("TaskFailed: Task ") and "%tb" in text and "<" not in text
    assert sys.last_value is result.error_in_exec  # %tb and %debug still reach it


def test_ipython_shows_other_errors_briefly_and_xmode_verbose_brings_tracebacks_back(shell) -> None:
    code = "import vantage6nb\nvantage6nb.Client('ftp://nowhere')\n"
    result, shown, printed = _run(shell, code)
    assert isinstance(result.error_in_exec, errors.ValidationError)
    (data,) = shown
    assert data["text/plain"].splitlines()[:2] == [
        "ValidationError: Server URL must start with http:// or https://, got 'ftp://nowhere'; "
        "e.g. Client('http://127.0.0.1:7601'). (url: expected http:// or https://)",
        "at line 2: vantage6nb.Client('ftp://nowhere')",
    ]
    assert "<details>" not in data["text/html"] and "Traceback" not in printed
    shell.run_line_magic("xmode", "Verbose")
    result, shown, printed = _run(shell, code)
    assert not shown and "_http.py" in printed  # the full traceback, frames and all
    result, shown, printed = _run(shell, "1/0")  # other errors: IPython's own display
    assert not shown and "ZeroDivisionError" in printed


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_in_ipython_installs_the_display_and_plain_python_stays_untouched() -> None:
    inside = _python(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "import vantage6nb\n"
        "print(ip.custom_exceptions == (vantage6nb.V6Error,))\n"
    )
    assert inside.stdout.strip() == "True", inside.stderr
    # a handler someone else installed is left alone
    other = _python(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.set_custom_exc((KeyError,), lambda *a, **k: None)\n"
        "import vantage6nb\n"
        "print(ip.custom_exceptions == (KeyError,))\n"
    )
    assert other.stdout.strip() == "True", other.stderr
    plain = _python(
        "import sys, vantage6nb\n"
        "assert 'IPython' not in sys.modules and sys.excepthook is sys.__excepthook__\n"
        "raise vantage6nb.errors.NotFound('No task 12.')\n"
    )
    assert plain.returncode == 1
    assert plain.stderr.startswith("Traceback (most recent call last):")
    assert plain.stderr.rstrip().endswith("vantage6nb.common.errors.NotFound: No task 12.")


# -- the server URL ----------------------------------------------------------------------------------


def test_a_url_ending_in_api_is_the_same_server(network: dict[str, Any]) -> None:
    for url in (network["url"] + "/api", network["url"] + "/api/"):
        client = vantage6nb.Client(url, timeout=10)
        try:
            assert client.url == network["url"]
            client.login("researcher", RESEARCHER_PASSWORD)
            assert client.whoami["username"] == "researcher"
        finally:
            client.close()


def test_a_url_with_another_path_says_what_to_give(network: dict[str, Any]) -> None:
    client = vantage6nb.Client(network["url"] + "/v6", timeout=10)
    with pytest.raises(errors.NotFound) as caught:
        client.login("researcher", RESEARCHER_PASSWORD)
    msg = str(caught.value)
    assert f"No vantage6nb server answers at {network['url']}/v6" in msg
    assert "Client('http://127.0.0.1:7601')" in msg
