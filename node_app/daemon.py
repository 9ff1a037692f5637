"""The node daemon: log in, listen over socket.io, execute open runs in a bounded pool, report back."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from vantage6nb.common.errors import ServerUnavailable, V6Error

from .audit import AuditLog
from .config import NodeConfig
from .execution import RunExecution
from .nodestate import NodeState
from .outbox import Outbox
from .payloads import PayloadCodec, PlainJsonCodec, select_codec
from .policy import ImagePolicy
from .proxy import AlgorithmProxy
from .reporting import ColumnReporter, Reporter
from .runtimes import make_runtime
from .runtimes.base import Runtime
from .scheduler import Scheduler
from .server_client import ServerClient
from .socket_link import SocketLink

__all__ = ["NodeDaemon"]

log = logging.getLogger(__name__)

# how often the node looks (os.stat) whether a data file changed, to report its columns again
COLUMN_WATCH_S = 2.0


class NodeDaemon:
    """One data-station node: its lifecycle and sync loop, composed of its parts.

    :class:`~node_app.nodestate.NodeState` (the runs of this life),
    :class:`~node_app.scheduler.Scheduler` (execution slots, kills),
    :class:`~node_app.execution.RunExecution` (one run), :class:`~node_app.reporting.Reporter`
    (final updates through the outbox) and :class:`~node_app.socket_link.SocketLink` (events).

    Examples
    --------
    >>> from node_app.config import load_config
    >>> node = NodeDaemon(load_config("node.yaml"))  # doctest: +SKIP
    >>> node.start(); node.wait()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        runtime: Runtime | None = None,
        codec: PayloadCodec | None = None,
        replace_key: bool = False,
    ) -> None:
        self.config = config
        self.replace_key = replace_key  # `v6nb node start --replace-key`: an explicit, logged act
        self._codec_given = codec is not None
        codec = codec or PlainJsonCodec()
        self.stopping = threading.Event()
        self.client = ServerClient(config.server_url, config.api_key, stop=self.stopping)
        self.runtime = runtime or make_runtime(config)
        self.policy = ImagePolicy(config.allowed_images, config.image_digests)
        self.proxy = AlgorithmProxy(self.client, port=config.proxy_port, codec=codec)
        self.proxy.scratch = config.data_dir / "runs"  # large subtask results: on the node's disk
        self.workroot = config.data_dir / "runs"
        self.outbox = Outbox(config.data_dir / "outbox")
        self.state = NodeState(folder=self.workroot)  # start records in each run's folder
        self.audit = AuditLog(config.data_dir / "audit")  # every run and decision, hash-chained
        self.reporter = Reporter(
            self.client,
            self.outbox,
            codec,
            self.state,
            binary_result_kb=config.binary_result_kb,
            audit=self.audit,
        )
        self._columns_lock = threading.Lock()
        self.columns = ColumnReporter(
            self.client,
            config.databases,
            enabled=config.report_columns,
            node_id=lambda: int(self.node["id"]),
        )
        self.execution = RunExecution(
            config,
            client=self.client,
            runtime=self.runtime,
            policy=self.policy,
            proxy=self.proxy,
            state=self.state,
            reporter=self.reporter,
            codec=codec,
            stopping=self.stopping,
            audit=self.audit,
        )
        self.scheduler = Scheduler(
            config.max_parallel_runs,
            state=self.state,
            execution=self.execution,
            reporter=self.reporter,
            runtime=self.runtime,
            outbox=self.outbox,
            stopping=self.stopping,
        )
        self.proxy.on_subtask_created = self.scheduler.release_slot
        self.link = SocketLink(
            config.server_url,
            stopping=self.stopping,
            access_token=lambda: self.client.access_token,
            refresh_token=self.client.refresh,
            on_new_runs=self.start_runs,
            on_kill=self.kill_runs,
            request_sync=self.request_sync,
        )
        self._codec = codec
        self._lock = threading.Lock()
        self._sync_wanted = threading.Event()
        self._stopped = False
        self._pruned = False
        self._threads: list[threading.Thread] = []

    @property
    def codec(self) -> PayloadCodec:
        """How inputs and results are encoded (chosen at start unless one was given)."""
        return self._codec

    @codec.setter
    def codec(self, codec: PayloadCodec) -> None:
        # the one writer: every part that encodes or decodes holds this same codec
        self._codec = codec
        self.proxy.codec = codec
        self.execution.codec = codec
        self.reporter.codec = codec

    @property
    def node(self) -> dict[str, Any]:
        """This node's record from the server (``id``, ``organization_id`` ...), once logged in."""
        return self.execution.node

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Log in (waiting for the server if needed), start the proxy and the background loops."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.workroot.mkdir(parents=True, exist_ok=True)
        self.execution.node = self.client.until_ok(self.client.login, "logging in")
        log.info(
            "node '%s' logged in as node %s of organization %s",
            self.config.name,
            self.node.get("id"),
            self.node.get("organization_id"),
        )
        if not self._codec_given:  # encryption: key checks at start (docs/security.md)
            self.codec = select_codec(
                self.config, self.client, self.node, replace_key=self.replace_key
            )
        self.execution.recover_previous()  # before the clean-up removes what they left
        for leftover in self.runtime.cleanup():
            log.info("cleaned up %s", leftover)
        self.proxy.start()
        if self.runtime.isolated:  # containers reach the proxy through a relay to this socket
            sock = self.config.data_dir / "proxy.sock"
            if len(str(sock)) > 100:  # unix socket paths are limited to ~108 bytes
                sock = Path(tempfile.mkdtemp(prefix="v6nb-")) / "proxy.sock"
            self.execution.proxy_socket = self.proxy.serve_unix(sock)
        self._spawn(self.reporter.flush_outbox, "v6nb-outbox")
        self._spawn(self._sync_loop, "v6nb-sync")
        self._spawn(self._watch_columns, "v6nb-columns")
        self.link.start()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` is called; True when stopped."""
        return self.stopping.wait(timeout)

    def stop(self) -> None:
        """Stop taking runs, kill running algorithms, close connections. Pending uploads stay on disk."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        log.info("node '%s' stopping", self.config.name)
        self.stopping.set()
        self._sync_wanted.set()
        self.runtime.close()  # first: a shutdown interrupts runs rather than waiting for them
        self.link.stop()
        self.scheduler.shutdown()
        self.execution.shutdown()
        self.proxy.stop()

    # -- finding work ------------------------------------------------------------------------------
    def request_sync(self) -> None:
        """Ask the sync loop to fetch open runs now (socket events and reconnects call this)."""
        self._sync_wanted.set()

    def _sync_loop(self) -> None:
        self._sync_wanted.set()  # once at start: picks up runs left from a previous life
        while not self.stopping.is_set():
            self._sync_wanted.wait(self.config.sync_interval_s)
            self._sync_wanted.clear()
            if self.stopping.is_set():
                return
            try:
                self.sync()
            except ServerUnavailable as exc:
                log.warning("sync skipped: %s", exc)
            except V6Error as exc:
                log.error("sync failed: %s", exc)
            except Exception:
                log.exception("sync failed unexpectedly")
            self._report_columns()

    def _watch_columns(self) -> None:
        """Between sync ticks: report again soon after a data file changed (a stat per file)."""
        while not self.stopping.wait(COLUMN_WATCH_S):
            if self.columns.files_changed():
                self._report_columns()

    def _report_columns(self) -> None:
        """The column report, on the sync tick: at start and when a source changed."""
        try:
            with self._columns_lock:  # the sync loop and the file watcher
                self.columns.tick()
        except ServerUnavailable as exc:
            log.warning("column report skipped: %s", exc)
        except V6Error as exc:
            log.error("column report refused: %s", exc)
        except Exception:
            log.exception("column report failed unexpectedly")

    def sync(self) -> int:
        """Start every open run of this node that is not running yet; returns how many started."""
        runs = self.client.paged(
            "/run", {"node_id": self.node["id"], "status": "open", "include": "input,task"}
        )
        if not self._pruned:  # once per life, before the runs it lists start
            self._pruned = True
            self._prune_run_folders({int(r["id"]) for r in runs})
        return self.start_runs(runs)

    def _prune_run_folders(self, open_ids: set[int]) -> None:
        """Remove the work folders a previous life left of runs that are no longer open (a kill
        after the final update went out); those of open runs stay for their resumption."""
        for folder in self.workroot.glob("run-*"):
            suffix = folder.name[4:]
            if not suffix.isdigit() or not folder.is_dir():
                continue
            rid = int(suffix)
            if rid in open_ids or self.state.holds(rid) or self.outbox.has(rid):
                continue
            log.info("removing the work folder of run %s, left by a previous life", rid)
            shutil.rmtree(folder, ignore_errors=True)

    def start_runs(self, runs: list[dict[str, Any]]) -> int:
        """Start the given open runs (each with its ``task``) unless already running here.

        The sync passes what the server lists; a ``new_task`` event passes the runs it carries,
        which saves the listing on the way to starting a new run.
        """
        return self.scheduler.start_runs(runs)

    def kill_runs(self, run_ids: list[int]) -> None:
        """Kill the given runs if they are queued or running here."""
        self.scheduler.kill_runs(run_ids)
