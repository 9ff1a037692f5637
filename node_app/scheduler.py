"""Which runs start when: a bounded number of execution slots, a pool of run threads, kills."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vantage6nb.common.schemas import RunStatus

from .execution import RunExecution
from .nodestate import NodeState
from .outbox import Outbox
from .reporting import Reporter
from .runtimes.base import RunOutcome, Runtime

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)


class Scheduler:
    """Starts open runs in ``max_parallel_runs`` execution slots and kills them on request.

    A run that creates subtasks gives its slot back (:meth:`release_slot`: it now waits on other
    runs, maybe on this node), so central algorithms cannot starve their own partials. The pool
    of run threads is larger than the slots so waiting runs don't block it.

    Parameters
    ----------
    max_parallel_runs
        How many runs execute at once.
    state
        The node's runs: a run is started once per life, and not while its final update waits.
    execution, reporter
        What runs one run, and what ends a run that cannot (killed while queued, a node error).
    runtime
        Kills a running algorithm.
    outbox
        A run whose final update waits here is not started again.
    stopping
        Set when the node shuts down: nothing new starts.
    """

    def __init__(
        self,
        max_parallel_runs: int,
        *,
        state: NodeState,
        execution: RunExecution,
        reporter: Reporter,
        runtime: Runtime,
        outbox: Outbox,
        stopping: threading.Event,
    ) -> None:
        self.state = state
        self.execution = execution
        self.reporter = reporter
        self.runtime = runtime
        self.outbox = outbox
        self.stopping = stopping
        self._slots = threading.Semaphore(max_parallel_runs)
        self._holding: set[int] = set()
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(
            max_workers=max(8, 4 * max_parallel_runs), thread_name_prefix="v6nb-run"
        )

    def shutdown(self) -> None:
        """Drop queued runs and wait for the running ones (the runtime interrupts them first)."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def start_runs(self, runs: list[dict[str, Any]]) -> int:
        """Start the given open runs (each with its ``task``) unless already running here.

        The sync passes what the server lists; a ``new_task`` event passes the runs it carries,
        which saves the listing on the way to starting a new run. Returns how many started.
        """
        started = 0
        for run in runs:
            rid = int(run["id"])
            # a listing taken before this life's final update went out still shows the run
            # open; it is never run twice in one life (docs/security.md)
            if not self.state.claim(rid, unless=self._must_wait):
                continue
            # open but started: a previous life of this node had it (this life's runs are held or
            # ended); the execution finishes it from what that life left, or runs it again
            restarted = run.get("status") in (RunStatus.INITIALIZING.value, RunStatus.ACTIVE.value)
            self.pool.submit(self._execute_safely, run, restarted)
            started += 1
        return started

    def _must_wait(self, rid: int) -> bool:
        """A run whose final update waits in the outbox, or any run while the node stops."""
        return self.outbox.has(rid) or self.stopping.is_set()

    def kill_runs(self, run_ids: list[int]) -> None:
        """Kill the given runs if they are queued or running here."""
        for rid in run_ids:
            if not self.state.cancel(rid):
                continue
            if self.runtime.kill(rid):
                log.info("run %s killed on request", rid)

    # -- execution slots ---------------------------------------------------------------------------
    def _acquire_slot(self, rid: int) -> bool:
        """Wait for an execution slot; False when the node stops or the run is killed meanwhile."""
        while not self._slots.acquire(timeout=0.5):
            if self.stopping.is_set() or self.state.killed_on_request(rid):
                return False
        with self._lock:
            self._holding.add(rid)
        return True

    def release_slot(self, rid: int) -> None:
        """Give back the slot ``rid`` holds, if it holds one (the proxy calls this on a subtask)."""
        with self._lock:
            if rid not in self._holding:
                return
            self._holding.discard(rid)
        self._slots.release()

    def _execute_safely(self, run: dict[str, Any], restarted: bool) -> None:
        rid = int(run["id"])
        try:
            if not self._acquire_slot(rid):
                if self.state.killed_on_request(rid):
                    self.reporter.finish(
                        rid, RunOutcome(RunStatus.KILLED, "killed before it started")
                    )
                return
            self.execution.execute(run, restarted)
        except Exception:
            log.exception("run %s: unexpected node error", rid)
            self.reporter.finish(
                rid,
                RunOutcome(
                    RunStatus.FAILED, "the node failed while handling this run; see the node log"
                ),
            )
        finally:
            self.release_slot(rid)
            self.state.end(rid)
            self.execution.clear(rid)
