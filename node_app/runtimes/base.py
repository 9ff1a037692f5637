"""The runtime interface: every way of executing an algorithm (process, Docker) implements Runtime."""

from __future__ import annotations

import abc
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from vantage6nb.common.errors import rejection
from vantage6nb.common.schemas import RunStatus

__all__ = [
    "DatabaseMount",
    "Limits",
    "RunOutcome",
    "RunSpec",
    "Runtime",
    "RuntimeRefusal",
    "crashed_outcome",
    "functions_table",
    "timed_out_outcome",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseMount:
    """One database handed to an algorithm: its label, where it is on the node, and its type."""

    label: str
    uri: str  # a file path for csv/parquet/excel, an SQLAlchemy URL for sql
    type: str  # one of vantage6nb.common.contract.DATABASE_TYPES
    query: str | None = None  # for sql: the query (or table) the algorithm reads


@dataclass(frozen=True)
class Limits:
    """Resource limits from node configuration (None: no limit).

    The three sizes are always set: they cap what an algorithm can write (``output_mb``: its
    writable output folder, and the most the node reads back from ``OUTPUT_FILE``; ``scratch_mb``:
    ``/tmp``; ``shm_mb``: ``/dev/shm``). In the Docker runtime all three are memory-backed and
    count against ``memory_mb``; the process runtime has no isolation and caps only what it reads.
    """

    memory_mb: int | None = None
    cpus: float | None = None
    pids: int | None = None
    timeout_s: float | None = None  # wall clock
    output_mb: int = 256
    scratch_mb: int = 256
    shm_mb: int = 16

    @property
    def output_bytes(self) -> int:
        """The most the node reads back from ``OUTPUT_FILE``, in bytes."""
        return int(self.output_mb) * 2**20


@dataclass
class RunSpec:
    """Everything a runtime needs to execute one run.

    The node prepares ``workdir`` with ``input_file`` and ``token_file`` written, and reads
    ``output_file`` after :meth:`Runtime.run` returns ``COMPLETED``.
    """

    run_id: int
    task_id: int
    image: str
    workdir: Path
    input_file: Path
    output_file: Path
    token_file: Path
    tmp_dir: Path
    databases: list[DatabaseMount]
    proxy_host: str  # as the algorithm must address it, scheme included, e.g. "http://127.0.0.1"
    proxy_port: int
    api_path: str = ""
    proxy_socket: Path | None = None  # a unix socket serving the same proxy (for sidecars)
    limits: Limits = field(default_factory=Limits)
    digest: str | None = None  # pinned image digest (sha256:...), when policy pins one
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """How a run ended. ``status`` is a final RunStatus; ``reason`` is what the researcher reads."""

    status: RunStatus
    reason: str = ""
    log: str = ""  # tail of stdout+stderr
    exit_code: int | None = None


_NOT_A_REASON = frozenset({"", "error > None"})
_MODULE_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*: )")


def crashed_outcome(how: str, log: str, exit_code: int | None) -> RunOutcome:
    r"""A CRASHED outcome whose reason is the algorithm's last log line (its exception, usually).

    Examples
    --------
    >>> crashed_outcome("exit code 1", "Traceback ...\nvantage6nb.errors.TaskFailed: no", 1).reason
    'algorithm crashed (exit code 1): TaskFailed: no'
    >>> crashed_outcome("exit code 1", "KeyError: 'age'\nerror > None\n", 1).reason
    "algorithm crashed (exit code 1): KeyError: 'age'"

    An algorithm that refused its input (vantage6nb's wrapper ends the log with ``rejected: ...``)
    did not crash: the run failed, for that reason.

    >>> out = crashed_outcome("exit code 1", "ValidationError: x\nrejected: no column 'agee'", 1)
    >>> out.status.value, out.reason
    ('failed', "rejected: no column 'agee'")
    """
    # vantage6's wrapper ends a crash with "error > None" (it prints traceback.print_exc()'s None)
    last = next(
        (ln.strip() for ln in reversed(log.splitlines()) if ln.strip() not in _NOT_A_REASON), ""
    )
    if rejection(last):  # the algorithm refused its input (vantage6nb's wrapper said so): no crash
        return RunOutcome(RunStatus.FAILED, last[:1000], log, exit_code)
    last = _MODULE_PREFIX.sub("", last)  # "pkg.mod.ValueError: x" reads as "ValueError: x"
    reason = f"algorithm crashed ({how})" + (f": {last[:300]}" if last else "")
    return RunOutcome(RunStatus.CRASHED, reason, log, exit_code)


def timed_out_outcome(limits: Limits, log: str, exit_code: int | None) -> RunOutcome:
    """The FAILED outcome of a run that ran past ``limits.timeout_s``.

    Examples
    --------
    >>> timed_out_outcome(Limits(timeout_s=5.0), "", None).reason
    'timed out after 5 s (limits.timeout_s in node.yaml)'
    """
    t = limits.timeout_s
    shown = int(t) if t is not None and float(t).is_integer() else t
    reason = f"timed out after {shown} s (limits.timeout_s in node.yaml)"
    return RunOutcome(RunStatus.FAILED, reason, log, exit_code)


def functions_table(raw: str | bytes | None, *, source: str) -> dict[str, str] | None:
    """The ``{name: role}`` table from ``{"functions": {...}}`` JSON (describe's output, an image label).

    None when ``raw`` is empty; also when it is not such JSON, with a warning naming ``source``.

    Examples
    --------
    >>> functions_table('{"functions": {"part": "federated"}}', source="v6nb/summary")
    {'part': 'federated'}
    >>> functions_table(None, source="v6nb/summary") is None
    True
    """
    if raw is None or not raw.strip():
        return None
    try:
        table = json.loads(raw).get("functions")
    except (ValueError, AttributeError, TypeError):  # not JSON, or JSON but not an object
        table = None
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        log.warning(
            '%s: its function roles are not {"functions": {name: role}} JSON; treating it as '
            "declaring none (rebuild it with `v6nb algorithm build`)",
            source,
        )
        return None
    return dict(table)


class RuntimeRefusal(Exception):
    """Raised by :meth:`Runtime.prepare` when a run cannot start; carries the final status and why."""

    def __init__(self, status: RunStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Runtime(abc.ABC):
    """Executes algorithms. Implementations: ProcessRuntime (no isolation), DockerRuntime."""

    name: ClassVar[str]
    isolated: ClassVar[bool]

    def cleanup(self) -> list[str]:
        """Remove what a previous life of this node left behind; returns what was removed."""
        return []

    def recover(self, run_id: int, dest: Path, *, limit: int) -> Path | None:
        """Adopt the output a previous life of this node left with the runtime for ``run_id``.

        Called at the node's start, before :meth:`cleanup`, for each run whose algorithm a
        previous life recorded as started. A runtime whose sandboxes outlive the node (containers)
        copies a complete output of the run to ``dest`` (by rename, at most ``limit`` bytes) and
        returns ``dest``; the node then returns it without running the algorithm again
        (docs/operations.md, "Exactly once"). None: the runtime holds nothing of the run (the
        default; the process runtime's algorithms die with the node and leave their output in
        the run's work folder).

        Raises
        ------
        RuntimeRefusal
            When the run's algorithm ran but left no output the node can return (it crashed, or
            it was still running and the runtime stopped it): the run ends so, not run again.

        Examples
        --------
        >>> from node_app.runtimes.process import ProcessRuntime
        >>> ProcessRuntime({}).recover(7, Path("/nonexistent/output.json"), limit=1) is None
        True
        """
        return None

    def prepare(self, spec: RunSpec) -> None:  # noqa: B027 - optional hook
        """Check and fetch what the run needs (image, digest); raise RuntimeRefusal if it cannot run."""

    @abc.abstractmethod
    def run(self, spec: RunSpec) -> RunOutcome:
        """Execute the run to its end (blocking), honouring ``spec.limits``; never raises for
        algorithm failures: they are outcomes (CRASHED, FAILED with a timeout reason, KILLED)."""

    @abc.abstractmethod
    def kill(self, run_id: int) -> bool:
        """Stop a running run; its :meth:`run` then returns KILLED. False if it was not running."""

    def functions(self, image: str, digest: str | None = None) -> dict[str, str] | None:
        """The roles ``image`` declares, ``{method: "federated" | "entry_point"}``; None: none declared.

        Methods without a role are not listed. Cached: cheap from the second call on.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources at node shutdown."""
