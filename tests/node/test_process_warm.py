"""Warm starts in the process runtime: a fork server per algorithm, one fresh child per run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from node_app.runtimes.process import ProcessRuntime
from node_app.runtimes.zygote import fork_supported
from tests.support import pid_alive, wait_for
from vantage6nb.common.schemas import RunStatus

from .runtime_contract import RuntimeContract

REPO = str(Path(__file__).resolve().parents[2])
PROBE = "tests.node.algorithms.warm_probe"

pytestmark = pytest.mark.skipif(not fork_supported(), reason="warm starts need Linux fork")


def warm_runtime(**algorithms: str) -> ProcessRuntime:
    algorithms = {"test/probe": "tests.node.algorithms.probe", "test/warm": PROBE, **algorithms}
    return ProcessRuntime(algorithms, pythonpath=[REPO], warm=True)


class TestWarmProcessRuntime(RuntimeContract):
    """The whole runtime contract, with every run forked from a zygote."""

    @pytest.fixture
    def runtime(self):
        rt = warm_runtime()
        yield rt
        rt.close()

    @pytest.fixture
    def probe_image(self) -> str:
        return "test/probe"

    @pytest.fixture
    def setup_step(self) -> str:
        return "_base_env"


@pytest.fixture
def runtime():
    rt = warm_runtime()
    yield rt
    rt.close()


def _run(rt: ProcessRuntime, tmp_path: Path, method: str, run_id: int, image="test/warm", **kw):
    spec = RuntimeContract().make_spec(tmp_path, image, method, kwargs=kw, run_id=run_id)
    rt.prepare(spec)
    outcome = rt.run(spec)
    return spec, outcome


def test_each_run_gets_a_fresh_forked_process(runtime: ProcessRuntime, tmp_path: Path) -> None:
    spec1, first = _run(runtime, tmp_path, "remember", 1, tag="run-1")
    spec2, second = _run(runtime, tmp_path, "remember", 2, tag="run-2")
    assert first.status == second.status == RunStatus.COMPLETED, (first, second)
    one = json.loads(spec1.output_file.read_text())
    two = json.loads(spec2.output_file.read_text())
    assert one["ppid"] == two["ppid"] != os.getpid()  # both forked by the same zygote
    assert one["pid"] != two["pid"]
    assert one["state_before"] is None and two["state_before"] is None  # nothing left of run 1
    assert one["pgid"] == one["pid"]  # a process group of its own (what kill signals)
    assert one["numpy"] != two["numpy"] and one["random"] != two["random"]  # reseeded per run
    assert one["tmp"] == str(spec1.tmp_dir) and two["tmp"] == str(spec2.tmp_dir)
    assert one["cwd"] == one["path0"] == str(spec1.workdir)
    assert one["argv"] == [PROBE]
    assert not pid_alive(one["pid"])


def test_exit_codes_and_signals_are_reported(runtime: ProcessRuntime, tmp_path: Path) -> None:
    _, exited = _run(runtime, tmp_path, "exit_with", 1, code=3)
    assert exited.status == RunStatus.CRASHED and exited.exit_code == 3
    assert "exit code 3" in exited.reason and "leaving with 3" in exited.log
    _, killed = _run(runtime, tmp_path, "kill_self", 2)
    assert killed.status == RunStatus.CRASHED and killed.exit_code == -9
    assert "killed by signal 9" in killed.reason
    spec, after = _run(runtime, tmp_path, "remember", 3)  # the zygote serves on
    assert after.status == RunStatus.COMPLETED, after


def test_kill_reaches_the_childs_process_group(runtime: ProcessRuntime, tmp_path: Path) -> None:
    import threading

    spec = RuntimeContract().make_spec(
        tmp_path, "test/probe", "sleep", kwargs={"seconds": 120}, run_id=5
    )
    runtime.prepare(spec)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(runtime.run(spec)))
    worker.start()
    try:
        wait_for(lambda: runtime.running() == [5], 60, "the run to start")
        pid = runtime._procs[5].pid
        assert os.getpgid(pid) == pid
        assert runtime.kill(5)
    finally:
        worker.join(60)
    assert result and result[0].status == RunStatus.KILLED
    assert not pid_alive(pid)


def test_a_changed_module_is_picked_up(tmp_path: Path) -> None:
    mods = tmp_path / "mods"
    mods.mkdir()
    source = mods / "warm_changing.py"
    source.write_text("VERSION = 1\n\ndef version():\n    return {'v': VERSION}\n")
    rt = ProcessRuntime({"test/changing": "warm_changing"}, pythonpath=[REPO, str(mods)], warm=True)
    try:
        spec, first = _run(rt, tmp_path, "version", 1, image="test/changing")
        assert first.status == RunStatus.COMPLETED, first
        assert json.loads(spec.output_file.read_text()) == {"v": 1}
        old = dict(rt._zygotes)
        source.write_text("VERSION = 222\n\ndef version():\n    return {'v': VERSION}\n")
        later = time.time() + 2
        os.utime(source, (later, later))
        spec, second = _run(rt, tmp_path, "version", 2, image="test/changing")
        assert second.status == RunStatus.COMPLETED, second
        assert json.loads(spec.output_file.read_text()) == {"v": 222}
        assert set(rt._zygotes.values()).isdisjoint(old.values())  # a new zygote
        (z,) = old.values()
        assert z.proc is not None
        wait_for(lambda: z.proc.poll() is not None, 30, "the retired zygote to stop")
    finally:
        rt.close()


def test_a_module_that_fails_to_import_runs_cold_and_crashes_as_before(tmp_path: Path) -> None:
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "warm_broken.py").write_text("raise RuntimeError('broken-at-import-7')\n")
    rt = ProcessRuntime({"test/broken": "warm_broken"}, pythonpath=[REPO, str(mods)], warm=True)
    try:
        _, outcome = _run(rt, tmp_path, "anything", 1, image="test/broken")
        assert outcome.status == RunStatus.CRASHED
        assert "broken-at-import-7" in outcome.log and "broken-at-import-7" in outcome.reason
        assert not rt._zygotes
    finally:
        rt.close()


def test_zygote_and_child_die_with_the_node(tmp_path: Path) -> None:
    """A node killed with SIGKILL leaves neither its zygote nor a run's child behind."""
    pidfile = tmp_path / "pids.json"
    script = textwrap.dedent(
        f"""
        import sys, threading, json, time
        sys.path.insert(0, {REPO!r})
        from pathlib import Path
        from node_app.runtimes.process import ProcessRuntime
        from tests.node.runtime_contract import RuntimeContract
        rt = ProcessRuntime({{"test/probe": "tests.node.algorithms.probe"}}, pythonpath=[{REPO!r}], warm=True)
        spec = RuntimeContract().make_spec(Path({str(tmp_path)!r}), "test/probe", "sleep", kwargs={{"seconds": 300}})
        rt.prepare(spec)
        t = threading.Thread(target=rt.run, args=(spec,), daemon=True)
        t.start()
        while not rt.running():
            time.sleep(0.05)
        (z,) = rt._zygotes.values()
        Path({str(pidfile)!r}).write_text(json.dumps([rt._procs[1].pid, z.proc.pid]))
        t.join()
        """
    )
    node = subprocess.Popen([sys.executable, "-c", script])
    pids: list[int] = []
    try:
        wait_for(
            lambda: pidfile.exists() and pidfile.read_text(),
            60,
            "the node to write its algorithm's and zygote's pids",
            interval=0.05,
        )
        pids = json.loads(pidfile.read_text())
        for pid in pids:
            os.kill(pid, 0)  # alive while the node lives
        node.send_signal(signal.SIGKILL)
        node.wait()
        wait_for(lambda: not any(pid_alive(p) for p in pids), 30, "both to die with their node")
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_close_while_a_run_waits_for_its_zygote_kills_the_run(tmp_path: Path) -> None:
    """A node shutting down while the zygote still imports: the run ends KILLED, it never runs."""
    import threading

    mods = tmp_path / "mods"
    mods.mkdir()
    started = tmp_path / "importing"
    (mods / "warm_slow.py").write_text(
        f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(3)\n"
        "def echo():\n    return {}\n"
    )
    rt = ProcessRuntime({"test/slow": "warm_slow"}, pythonpath=[REPO, str(mods)], warm=True)
    spec = RuntimeContract().make_spec(tmp_path, "test/slow", "echo", run_id=3)
    rt.prepare(spec)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(rt.run(spec)))
    worker.start()
    try:
        wait_for(started.exists, 60, "the zygote to import the module")
        rt.close()
    finally:
        worker.join(60)
    assert result and result[0].status == RunStatus.KILLED, result
    assert not spec.output_file.exists()


def test_a_vantage6_algorithm_in_its_own_venv_runs_warm(tmp_path: Path) -> None:
    """``{module, python}``: the zygote runs in that interpreter, through vantage6's wrapper."""
    from node_app.runtimes.base import DatabaseMount
    from tests.data.v6_algorithms.tools import AVERAGE_MODULE, venv_python

    try:
        python = venv_python()
    except Exception as exc:  # the tools venv is made by scripts/setup-v6-tools.sh
        if os.environ.get("V6NB_REQUIRE_ALL"):
            raise
        pytest.skip(f"no vantage6-algorithm-tools venv: {exc}")
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n2\n6\n")
    rt = ProcessRuntime({"v6/avg": {"module": AVERAGE_MODULE, "python": str(python)}}, warm=True)
    try:
        for run_id in (1, 2):
            spec = RuntimeContract().make_spec(
                tmp_path,
                "v6/avg",
                "partial_average",
                kwargs={"column": "x"},
                databases=[DatabaseMount("default", str(data), "csv")],
                run_id=run_id,
            )
            rt.prepare(spec)
            outcome = rt.run(spec)
            assert outcome.status == RunStatus.COMPLETED, outcome
            assert json.loads(spec.output_file.read_text()) == {"sum": 9.0, "count": 3}
        (z,) = rt._zygotes.values()
        assert z.python == str(python)
    finally:
        rt.close()
