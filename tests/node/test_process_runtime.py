"""The process runtime against the shared runtime contract, plus what is specific to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from node_app.runtimes.base import RuntimeRefusal
from node_app.runtimes.process import ProcessRuntime, log_tail
from tests.support import pid_alive, wait_for
from vantage6nb.common.contract import decode_env_value
from vantage6nb.common.schemas import RunStatus

from .runtime_contract import RuntimeContract

REPO = str(Path(__file__).resolve().parents[2])


class TestProcessRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self):
        rt = ProcessRuntime({"test/probe": "tests.node.algorithms.probe"}, pythonpath=[REPO])
        yield rt
        rt.close()

    @pytest.fixture
    def probe_image(self) -> str:
        return "test/probe"

    @pytest.fixture
    def setup_step(self) -> str:
        return "_base_env"  # called inside run(), before the process exists

    def test_image_matching_ignores_registry_tag_digest(self, runtime: ProcessRuntime) -> None:
        assert (
            runtime.module_for("127.0.0.1:5000/test/probe:2.1@sha256:abc")
            == "tests.node.algorithms.probe"
        )
        assert runtime.module_for("test/other") is None

    def test_unknown_image_is_refused_with_setting_name(
        self, runtime: ProcessRuntime, tmp_path: Path
    ) -> None:
        spec = self.make_spec(tmp_path, "test/unknown", "echo")
        with pytest.raises(RuntimeRefusal) as info:
            runtime.prepare(spec)
        assert info.value.status == RunStatus.FAILED
        assert "process_algorithms" in info.value.reason and "test/unknown" in info.value.reason

    def test_environment_values_are_encoded(self, runtime: ProcessRuntime, tmp_path: Path) -> None:
        from node_app.runtimes.process import algorithm_environment

        spec = self.make_spec(tmp_path, "test/probe", "echo")
        env = algorithm_environment(spec)
        assert decode_env_value(env["INPUT_FILE"]) == str(spec.input_file)
        assert decode_env_value(env["PORT"]) == "9"

    def test_child_dies_with_the_node(self, tmp_path: Path) -> None:
        """A node killed with SIGKILL leaves no algorithm process behind (PR_SET_PDEATHSIG)."""
        pidfile = tmp_path / "child.pid"
        script = textwrap.dedent(
            f"""
            import sys, threading, json
            sys.path.insert(0, {REPO!r})
            from pathlib import Path
            from node_app.runtimes.process import ProcessRuntime
            from tests.node.runtime_contract import RuntimeContract
            rt = ProcessRuntime({{"test/probe": "tests.node.algorithms.probe"}}, pythonpath=[{REPO!r}])
            spec = RuntimeContract().make_spec(Path({str(tmp_path)!r}), "test/probe", "sleep", kwargs={{"seconds": 300}})
            t = threading.Thread(target=rt.run, args=(spec,), daemon=True)
            t.start()
            import time
            while not rt.running():
                time.sleep(0.05)
            Path({str(pidfile)!r}).write_text(str(rt._procs[1].pid))
            t.join()
            """
        )
        node = subprocess.Popen([sys.executable, "-c", script])
        try:
            wait_for(
                lambda: pidfile.exists() and pidfile.read_text(),
                30,
                "the node to write its algorithm's pid",
                interval=0.05,
            )
            child = int(pidfile.read_text())
            os.kill(child, 0)  # alive while the node lives
            node.send_signal(signal.SIGKILL)
            node.wait()
            try:
                wait_for(lambda: not pid_alive(child), 30, "the algorithm to die with its node")
            except AssertionError:
                os.kill(child, signal.SIGKILL)
                raise
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()


def test_log_tail_keeps_last_lines_and_bytes() -> None:
    data = b"".join(f"line {i}\n".encode() for i in range(1000))
    tail = log_tail(data)
    assert tail.splitlines()[-1] == "line 999"
    assert len(tail.splitlines()) == 200
    assert log_tail(b"x" * 100_000).count("x") == 64 * 1024
    assert json.dumps(log_tail(b"\xff\xfe bad utf8"))  # never raises on binary output
