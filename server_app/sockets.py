"""socket.io on the server: token auth on connect, rooms, node online/offline tracking and event emission."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import socketio
from sqlalchemy import or_, update

from vantage6nb.common import events
from vantage6nb.common.errors import V6Error

from .db import Database
from .message_queue import QueueManager
from .models import Node, utcnow
from .permissions import Identity, identity_from_claims, visible_collaboration_ids
from .serializers import iso
from .sessions import SessionCache
from .tokens import TokenService

__all__ = ["SocketHub", "async_mode", "ping_interval_for"]

log = logging.getLogger("server_app.sockets")


class SocketHub:
    """The socket.io server and the events the REST resources emit through it.

    Examples
    --------
    >>> hub = SocketHub(tokens, db)  # doctest: +SKIP
    >>> hub.emit(events.KILL, {"task_id": 1, "run_ids": [2]}, events.node_room(3))  # doctest: +SKIP
    """

    def __init__(
        self,
        tokens: TokenService,
        db: Database,
        *,
        message_queue_url: str = "",
        message_queue_channel: str = "vantage6nb",
        max_body_bytes: int = 2**24,
        node_offline_s: float = 10.0,
    ) -> None:
        manager = (
            QueueManager(message_queue_url, message_queue_channel) if message_queue_url else None
        )
        interval = ping_interval_for(node_offline_s)
        self.sio = socketio.Server(
            async_mode=async_mode(),
            client_manager=manager,
            logger=False,
            engineio_logger=False,
            # engine.io pings every `interval` s and closes a connection whose answer has not come
            # `interval` s later; its service task notices within another `interval`: a node that
            # stops answering is offline within node_offline_s.
            ping_interval=interval,
            ping_timeout=interval,
            max_http_buffer_size=max_body_bytes,
        )
        self._tokens = tokens
        self._db = db
        self._lock = threading.Lock()
        self._node_sids: dict[int, set[str]] = {}
        # users' connections on this instance -> their token's claims, checked by the sweep
        self._user_sids: dict[str, dict[str, Any]] = {}
        self._sweeper: threading.Thread | None = None
        self.sweep_s = 1.0  # a revoked user's socket closes within about this long
        # the app's session cache (set when the auth resources are registered)
        self.sessions: SessionCache | None = None
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        if manager is not None:
            manager.start()  # bound to the exchange before the first request: no event is lost

    def emit(self, event: str, data: dict[str, Any], room: str) -> None:
        """Send ``event`` to everyone in ``room``; never raises into a request."""
        try:
            self.sio.emit(event, data, to=room)
        except Exception:  # an event is best-effort; nodes also re-sync on a timer
            log.exception("could not emit %s to %s", event, room)

    def online_node_ids(self) -> set[int]:
        """Nodes with at least one live connection to this server instance."""
        with self._lock:
            return {n for n, sids in self._node_sids.items() if sids}

    def _session_cache(self) -> SessionCache:
        if self.sessions is None:
            self.sessions = SessionCache(self._db)
        return self.sessions

    # socket.io handlers -------------------------------------------------------------------------

    def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError(
                'Missing token: connect with auth={"token": <access_token>}.'
            )
        try:
            claims = self._tokens.verify(token, kind="access")
            ident = identity_from_claims(claims)
            if ident.type == "container":
                raise socketio.exceptions.ConnectionRefusedError(
                    "Container tokens cannot open a socket.io connection."
                )
            if ident.type == "user":  # logged out, revoked, deleted: refused like REST requests
                self._session_cache().check(claims)
        except V6Error as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.msg) from None
        self.sio.save_session(sid, {"type": ident.type, "id": ident.id})
        if ident.type == "node":
            return self._connect_node(sid, ident)
        self._connect_user(sid, ident)
        return True

    def _connect_user(self, sid: str, ident: Identity) -> None:
        with self._db.new_session() as s:
            collabs = visible_collaboration_ids(s, ident)
        self.sio.enter_room(sid, events.organization_room(ident.org_id))
        for cid in collabs:
            self.sio.enter_room(sid, events.collaboration_room(cid))
        with self._lock:
            self._user_sids[sid] = ident.claims
            if self._sweeper is None:
                self._sweeper = threading.Thread(
                    target=self._sweep, name="v6nb-socket-sweep", daemon=True
                )
                self._sweeper.start()

    def _sweep(self) -> None:
        """Close the sockets of users whose session ended (logout, revocation, password or role
        change, deletion): what a REST request learns from the session check, an open socket
        learns here, on every instance for its own connections."""
        while True:
            time.sleep(self.sweep_s)
            with self._lock:
                live = list(self._user_sids.items())
            for sid, claims in live:
                try:
                    self._session_cache().check(claims)
                except V6Error:
                    with self._lock:
                        self._user_sids.pop(sid, None)
                    log.info(
                        "closing the socket of user %s: their session ended", claims.get("sub")
                    )
                    try:
                        self.sio.disconnect(sid)
                    except Exception:  # already gone
                        log.debug("socket %s already closed", sid, exc_info=True)
                except Exception:  # the database is down: try again at the next sweep
                    log.warning("could not check the session of socket %s", sid, exc_info=True)

    def _connect_node(self, sid: str, ident: Identity) -> bool:
        with self._db.new_session() as s:
            node = s.get(Node, ident.id)
            if node is None:
                raise socketio.exceptions.ConnectionRefusedError(
                    "This node no longer exists on the server."
                )
            with self._lock:
                self._node_sids.setdefault(node.id, set()).add(sid)
            node.status, node.last_seen = "online", utcnow()
            s.commit()
            payload = _node_event(node)
            # Remembered so that this connection's end cannot mark offline a node that has
            # reconnected since, possibly to another server instance (see _on_disconnect).
            self.sio.save_session(sid, {"type": "node", "id": node.id, "since": node.last_seen})
        self.sio.enter_room(sid, events.node_room(ident.id))
        self.sio.enter_room(sid, events.collaboration_room(payload["collaboration_id"]))
        self.sio.enter_room(sid, events.organization_room(ident.org_id))
        log.info("node %s (%s) online", payload["node_id"], payload["name"])
        self.emit(
            events.NODE_ONLINE, payload, events.collaboration_room(payload["collaboration_id"])
        )
        return True

    def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        try:
            info = self.sio.get_session(sid)
        except KeyError:
            return
        if info.get("type") != "node":
            with self._lock:
                self._user_sids.pop(sid, None)
            return
        node_id = int(info["id"])
        with self._lock:
            sids = self._node_sids.get(node_id, set())
            sids.discard(sid)
            still_online = bool(sids)
        if still_online:
            return
        with self._db.new_session() as s:
            stmt = update(Node).where(Node.id == node_id)
            since = info.get("since")
            if since is not None:
                # Unless a newer connection (here or on another instance behind the same message
                # queue) marked the node online after this one did: then it is still online.
                stmt = stmt.where(or_(Node.last_seen.is_(None), Node.last_seen <= since))
            if s.execute(stmt.values(status="offline", last_seen=utcnow())).rowcount == 0:
                return
            s.commit()
            node = s.get(Node, node_id)
            if node is None:
                return
            payload = _node_event(node)
        log.info("node %s (%s) offline", payload["node_id"], payload["name"])
        # Not from inside this handler: writing to a room's sockets can find another one dead,
        # whose disconnect handler would then run nested in this one, and so on. With many
        # sockets dropped at once (a server starved of CPU misses their pings) that nesting
        # ended in RecursionError (100-node soak): each handler's emit gets a task of its own.
        self.sio.start_background_task(
            self.emit,
            events.NODE_OFFLINE,
            payload,
            events.collaboration_room(payload["collaboration_id"]),
        )


def async_mode() -> str:
    """``gevent`` in a process gevent has patched (the gevent worker), else ``threading``.

    The socket sweep below uses ``threading`` and ``time.sleep``, which the patching makes
    greenlets and cooperative sleeps, so it runs unchanged under either.

    Examples
    --------
    >>> async_mode()  # a test process is not patched
    'threading'
    """
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return "threading"
    return "gevent" if monkey.is_module_patched("socket") else "threading"


def ping_interval_for(node_offline_s: float) -> float:
    """The engine.io ping interval (and answer timeout) that marks a silent node offline within
    ``node_offline_s``: a ping, its timeout, and one sweep of the service task.

    Examples
    --------
    >>> ping_interval_for(10)
    3.0
    """
    return max(0.5, round(float(node_offline_s) * 0.3, 2))


def _node_event(node: Node) -> dict[str, Any]:
    return {
        "node_id": node.id,
        "name": node.name,
        "organization_id": node.organization_id,
        "collaboration_id": node.collaboration_id,
        "status": node.status,
        "last_seen": iso(node.last_seen),
    }
