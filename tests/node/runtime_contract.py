"""The contract every Runtime implementation meets; subclass it once per runtime."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

from node_app.runtimes.base import DatabaseMount, Limits, RunSpec, Runtime
from tests.support import wait_for
from vantage6nb.common.schemas import RunStatus


class RuntimeContract:
    """Pytest tests every runtime must pass.

    A subclass (named ``Test...``) provides three fixtures:

    - ``runtime``: a ready :class:`~node_app.runtimes.base.Runtime` instance (closed by the fixture);
    - ``probe_image``: the image name under which that runtime runs the module
      ``tests.node.algorithms.probe`` (for the process runtime: a key of its ``algorithms`` map; for
      Docker: an image whose entry point runs ``python -m vantage6nb.algorithm
      tests.node.algorithms.probe``, with ``vantage6nb`` and the ``tests`` package installed);
    - ``setup_step``: the name of a method the runtime calls inside ``run()`` before the algorithm
      exists (a kill sent from there must not be lost).

    Database files are created under pytest's ``tmp_path``; a runtime that mounts them (Docker)
    must make them readable to the algorithm at the URI it hands over. A runtime must report a
    zero exit without ``OUTPUT_FILE`` as ``CRASHED`` with a reason that mentions the output.
    """

    def make_spec(
        self,
        tmp_path: Path,
        image: str,
        method: str,
        *,
        kwargs: dict | None = None,
        databases: list[DatabaseMount] | None = None,
        timeout_s: float | None = 60,
        run_id: int = 1,
    ) -> RunSpec:
        workdir = tmp_path / f"run-{run_id}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "input.json").write_text(
            json.dumps({"method": method, "args": [], "kwargs": kwargs or {}})
        )
        (workdir / "token").write_text("container-token-for-test")
        return RunSpec(
            run_id=run_id,
            task_id=10,
            image=image,
            workdir=workdir,
            input_file=workdir / "input.json",
            output_file=workdir / "output.json",
            token_file=workdir / "token",
            tmp_dir=workdir / "tmp",
            databases=databases or [],
            proxy_host="http://127.0.0.1",
            proxy_port=9,
            limits=Limits(memory_mb=512, cpus=1, pids=128, timeout_s=timeout_s),
        )

    def execute(self, runtime: Runtime, spec: RunSpec):
        runtime.prepare(spec)
        return runtime.run(spec)

    def test_completed_run_writes_output(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        spec = self.make_spec(tmp_path, probe_image, "echo", kwargs={"x": [1, 2], "s": "é"})
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.COMPLETED, outcome
        assert outcome.exit_code == 0
        assert json.loads(spec.output_file.read_text()) == {
            "args": [],
            "kwargs": {"x": [1, 2], "s": "é"},
        }
        assert "probe: echo called" in outcome.log

    def test_database_environment_is_decoded(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        a = tmp_path / "data" / "a.csv"
        a.parent.mkdir()
        a.write_text("x,y\n1,2\n")
        b = tmp_path / "data" / "b.csv"
        b.write_text("p,q\n3,4\n")
        dbs = [
            DatabaseMount("default", str(a), "csv"),
            DatabaseMount("Second", str(b), "csv", query="SELECT 1"),
        ]
        spec = self.make_spec(tmp_path, probe_image, "environment", databases=dbs)
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.COMPLETED, outcome
        seen = json.loads(spec.output_file.read_text())
        assert seen["labels"] == ["default", "Second"]
        assert seen["databases"]["default"]["type"] == "csv"
        assert seen["databases"]["default"]["first_line"] == "x,y"
        assert seen["databases"]["Second"]["first_line"] == "p,q"
        assert seen["databases"]["Second"]["query"] == "SELECT 1"
        assert seen["token"] == "container-token-for-test"
        assert seen["secret_leaked"] is False

    def test_crash_reports_log_tail(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        spec = self.make_spec(
            tmp_path, probe_image, "crash", kwargs={"message": "boom-42", "lines": 5000}
        )
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.CRASHED
        assert outcome.exit_code not in (0, None)
        assert "boom-42" in outcome.log
        assert "boom-42" in outcome.reason
        assert "noise line 0\n" not in outcome.log
        assert len(outcome.log.encode()) <= 64 * 1024
        assert not spec.output_file.exists()

    def test_timeout_fails_the_run(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        spec = self.make_spec(tmp_path, probe_image, "sleep", kwargs={"seconds": 120}, timeout_s=2)
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.FAILED
        assert "timed out after 2 s" in outcome.reason

    def test_kill_while_the_run_is_set_up_is_not_lost(
        self, runtime: Runtime, probe_image: str, tmp_path: Path, setup_step: str, monkeypatch
    ) -> None:
        """A kill that arrives before the container or process exists still ends the run KILLED.

        ``setup_step`` (a fixture of the subclass) names a method the runtime calls inside
        :meth:`run` before the algorithm exists; the kill is sent from there.
        """
        spec = self.make_spec(tmp_path, probe_image, "sleep", kwargs={"seconds": 30}, run_id=9)
        step = getattr(runtime, setup_step)
        answers: list[bool] = []

        def kill_then_step(*args, **kwargs):
            answers.append(runtime.kill(9))
            return step(*args, **kwargs)

        monkeypatch.setattr(runtime, setup_step, kill_then_step)
        outcome = self.execute(runtime, spec)
        assert answers == [True]
        assert outcome.status == RunStatus.KILLED, outcome
        assert runtime.kill(9) is False  # over: nothing to kill

    def test_kill_stops_the_run(self, runtime: Runtime, probe_image: str, tmp_path: Path) -> None:
        spec = self.make_spec(tmp_path, probe_image, "sleep", kwargs={"seconds": 120}, run_id=7)
        runtime.prepare(spec)
        result: list = []
        worker = threading.Thread(target=lambda: result.append(runtime.run(spec)))
        worker.start()
        try:
            # kill() finds the run once the algorithm has started
            wait_for(lambda: runtime.kill(7), 60, "kill() to find the run running")
        finally:
            worker.join(60)
        assert result and result[0].status == RunStatus.KILLED
        assert runtime.kill(7) is False  # no longer running

    def test_missing_output_is_reported(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        spec = self.make_spec(tmp_path, probe_image, "no_output")
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.CRASHED
        assert "output" in outcome.reason.lower()
        assert "leaving without output" in outcome.log

    def test_unknown_method_crashes_with_reason(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        spec = self.make_spec(tmp_path, probe_image, "does_not_exist")
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.CRASHED
        assert "does_not_exist" in outcome.log

    # -- the way back out: the node reads only a regular file, bounded (docs/security.md) ----------

    def test_output_symlinked_to_a_node_file_is_refused(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        secret = tmp_path / "node-secret.yaml"
        secret.write_text("api_key: the-node-secret-3f9\n")
        spec = self.make_spec(
            tmp_path, probe_image, "symlink_output", kwargs={"target": str(secret)}
        )
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.FAILED, outcome
        assert "symbolic link" in outcome.reason and "nothing was uploaded" in outcome.reason
        assert not spec.output_file.exists()
        assert "the-node-secret-3f9" not in outcome.reason + outcome.log
        assert (
            str(secret) not in outcome.reason
        )  # says what the algorithm did, not where it pointed

    def test_sparse_output_beyond_the_limit_is_refused_unread(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        spec = self.make_spec(tmp_path, probe_image, "sparse_output", kwargs={"gib": 8})
        spec.limits = dataclasses.replace(spec.limits, output_mb=4)
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.FAILED, outcome
        assert "8192.0 MiB" in outcome.reason and "limits.output_mb = 4" in outcome.reason
        assert not spec.output_file.exists()
        assert not list(spec.output_file.parent.glob("*.partial"))

    def test_output_up_to_the_limit_is_returned(
        self, runtime: Runtime, probe_image: str, tmp_path: Path
    ) -> None:
        text = '{"pad": "' + "p" * (1 << 20) + '"}'
        spec = self.make_spec(tmp_path, probe_image, "raw_output", kwargs={"text": text})
        spec.limits = dataclasses.replace(spec.limits, output_mb=2)
        outcome = self.execute(runtime, spec)
        assert outcome.status == RunStatus.COMPLETED, outcome
        assert spec.output_file.read_text() == text
