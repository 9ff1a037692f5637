"""The algorithm proxy: a small HTTP API on loopback (or a unix socket) forwarding to the server."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import socketserver
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from vantage6nb.common.errors import BadRequest, CryptoError, NotFound, ServerUnavailable, V6Error

from .payloads import PayloadCodec, PlainJsonCodec, decode_algorithm_input
from .server_client import ServerClient

__all__ = ["AlgorithmProxy", "RunContext"]

log = logging.getLogger(__name__)

_MAX_BODY = 256 * 1024 * 1024
_BINARY_INPUT = 64 * 1024  # a subtask input whose JSON is larger travels as bytes


@dataclass(frozen=True)
class RunContext:
    """What the proxy knows about the run a container token belongs to."""

    run_id: int
    task_id: int
    collaboration_id: int
    organization_id: int
    image: str
    databases: list[dict[str, Any]] = field(default_factory=list)
    node_id: int | None = None


class AlgorithmProxy:
    """Serves the algorithm-facing API (docs/api.md "The node's algorithm proxy").

    Only tokens registered with :meth:`register` (those of runs executing now) are accepted.

    Examples
    --------
    >>> proxy = AlgorithmProxy(ServerClient("http://127.0.0.1:1", "k"), port=0)
    >>> port = proxy.start()
    >>> port == proxy.port > 0
    True
    >>> proxy.stop()
    """

    def __init__(
        self, client: ServerClient, *, port: int = 0, codec: PayloadCodec | None = None
    ) -> None:
        self.client = client
        self.codec: PayloadCodec = codec or PlainJsonCodec()
        self._tokens: dict[str, RunContext] = {}
        self._base64_tasks: set[int] = (
            set()
        )  # subtasks created the vantage6 way: results go back base64
        # subtasks created here -> the uid their payloads bind to
        self._task_uids: dict[int, str] = {}
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._requested_port = port
        self.port = 0
        self.scratch: Path | None = None  # where large payloads are staged (None: system temp)
        # subtask inputs whose JSON is larger are sealed into a file and uploaded as bytes
        self.binary_input_bytes = _BINARY_INPUT
        # called with a run id once that run created a subtask (the node frees its execution slot)
        self.on_subtask_created: Callable[[int], None] | None = None

    # -- tokens ------------------------------------------------------------------------------------
    def register(self, token: str, ctx: RunContext) -> None:
        with self._lock:
            self._tokens[token] = ctx

    def unregister(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def context(self, token: str) -> RunContext | None:
        with self._lock:
            return self._tokens.get(token)

    # -- serving -----------------------------------------------------------------------------------
    def start(self) -> int:
        """Serve on 127.0.0.1 (``port`` 0 picks a free one); returns the port."""
        server = ThreadingHTTPServer(("127.0.0.1", self._requested_port), _handler_for(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._serve(server)
        log.info("algorithm proxy listening on http://127.0.0.1:%d", self.port)
        return self.port

    def serve_unix(self, path: str | os.PathLike[str]) -> Path:
        """Also serve on a unix socket at ``path`` (for container side-cars); returns the path."""
        p = Path(path)
        if p.exists():
            p.unlink()
        server = _ThreadingUnixHTTPServer(str(p), _handler_for(self))
        os.chmod(p, 0o666)  # the algorithm runs as another (non-root) user
        self._serve(server)
        return p

    def _serve(self, server: socketserver.BaseServer) -> None:
        self._servers.append(server)
        threading.Thread(target=server.serve_forever, name="v6nb-proxy", daemon=True).start()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
            addr = getattr(server, "server_address", None)
            if isinstance(addr, str) and os.path.exists(addr):
                os.unlink(addr)
        self._servers.clear()

    # -- routes ------------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, str], body: Any, token: str
    ) -> tuple[int, Any]:
        """Route one request; returns ``(status, json body)``."""
        ctx = self.context(token)
        if ctx is None:
            return 401, {
                "msg": "unknown or expired container token: use the token in TOKEN_FILE",
                "errors": {},
                "code": "unauthenticated",
            }
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"]:  # tolerate an API_PATH of "/api"
            parts = parts[1:]
        try:
            if method == "POST" and parts == ["task"]:
                return self._create_task(ctx, body, token)
            if method == "GET":
                return self._get(ctx, parts, query, token)
            raise NotFound(
                f"the algorithm proxy has no {method} /{'/'.join(parts)}; see docs/api.md"
            )
        except ServerUnavailable as exc:
            return 503, {**exc.to_dict(), "msg": f"{exc.msg}; try again shortly"}
        except V6Error as exc:
            return exc.status, exc.to_dict()

    def _get(
        self, ctx: RunContext, parts: list[str], query: dict[str, str], token: str
    ) -> tuple[int, Any]:
        """The GET routes: ours and every one vantage6's ``AlgorithmClient`` sends."""
        path = "/" + "/".join(parts)
        if parts == ["result"]:
            return _paged(self._results(ctx, query, token), path, query)
        if parts == ["organization"]:
            query = {"collaboration_id": str(ctx.collaboration_id), **query}
            return _paged(self.client.send("GET", path, token=token, params=query), path, query)
        if parts in (["run"], ["task"]):
            return _paged(self.client.send("GET", path, token=token, params=query), path, query)
        if len(parts) == 3 and parts[0] == "task" and parts[1].isdigit() and parts[2] == "status":
            # vantage6 polls this until the subtask is done; a 404 would read as "finished"
            status, task = self.client.send("GET", f"/task/{parts[1]}", token=token)
            if status >= 300 or not isinstance(task, dict):
                return status, task
            return 200, {"id": task.get("id"), "status": task.get("status")}
        if len(parts) == 2 and parts[0] == "result" and parts[1].isdigit():
            return self._one_result(ctx, int(parts[1]), token)
        if (
            len(parts) == 2
            and parts[0] in ("task", "run", "organization", "collaboration")
            and parts[1].isdigit()
        ):
            return self.client.send("GET", path, token=token, params=query)
        if parts == ["blobstream", "status"]:
            return 200, {"blob_store_enabled": False}  # results travel through this proxy
        if parts == ["study"]:  # no studies here: a collaboration is the unit
            return 200, {"data": [], "page": 1, "per_page": 10, "total": 0, "links": {}}
        if len(parts) == 2 and parts[0] == "study":
            raise NotFound("there are no studies on this platform: use the collaboration")
        if parts == ["vpn", "algorithm", "addresses"]:  # no VPN: no algorithm reaches another
            return 200, {"addresses": [], "msg": "this platform has no VPN between algorithms"}
        raise NotFound(f"the algorithm proxy has no GET {path}; see docs/api.md")

    def _one_result(self, ctx: RunContext, run_id: int, token: str) -> tuple[int, Any]:
        """``GET /result/<run id>``: one run's result, decoded as ``GET /result`` decodes it."""
        status, run = self.client.send("GET", f"/run/{run_id}", token=token)
        if status >= 300 or not isinstance(run, dict) or not isinstance(run.get("task_id"), int):
            return status, run
        status, listed = self._results(
            ctx, {"task_id": str(run["task_id"]), "per_page": "100"}, token
        )
        if status >= 300 or not isinstance(listed, dict):
            return status, listed
        page = 1
        while True:
            for item in listed.get("data", []):
                if item.get("run_id", item.get("id")) == run_id:
                    return 200, {**item, "id": run_id}
            if page * int(listed.get("per_page") or 100) >= int(listed.get("total") or 0):
                raise NotFound(f"run {run_id} has no result (yet)")
            page += 1
            status, listed = self._results(
                ctx,
                {"task_id": str(run["task_id"]), "per_page": "100", "page": str(page)},
                token,
            )
            if status >= 300 or not isinstance(listed, dict):
                return status, listed

    def _create_task(self, ctx: RunContext, body: Any, token: str) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise BadRequest("POST /task needs a JSON object body")
        orgs = body.get("organizations")
        if orgs is None and "organization_ids" in body:
            orgs = [
                {"id": i, "input": body.get("input")} for i in body.get("organization_ids") or []
            ]
        if not isinstance(orgs, list) or not orgs:
            raise BadRequest(
                "POST /task needs `organizations: [{id, input}]` or `organization_ids` and `input`",
                errors={"organizations": "required"},
            )
        wire_orgs: list[dict[str, Any]] = []
        method_name = body.get("method")
        any_base64 = False
        uid = secrets.token_hex(16)  # chosen here, not by the server: ciphertexts bind to it
        for i, org in enumerate(orgs):
            if (
                not isinstance(org, dict)
                or not isinstance(org.get("id"), int)
                or isinstance(org.get("id"), bool)
            ):
                raise BadRequest(
                    "each organization needs an integer `id`",
                    errors={f"organizations[{i}]": "expected {id, input}"},
                )
            try:
                obj, was_b64 = decode_algorithm_input(org.get("input"))
            except ValueError as exc:
                raise BadRequest(
                    str(exc), errors={f"organizations[{i}].input": "bad input"}
                ) from exc
            any_base64 |= was_b64
            if not isinstance(obj, dict):
                raise BadRequest(
                    "an input must be an object {method, args, kwargs}",
                    errors={f"organizations[{i}].input": "expected an object"},
                )
            method_name = method_name or obj.get("method")
            binding = {
                "collaboration_id": ctx.collaboration_id,
                "sender_org_id": ctx.organization_id,
                "org_id": org["id"],
                "parent_task_id": ctx.task_id,
                "task_uid": uid,
            }
            try:
                data = json.dumps(obj, allow_nan=True).encode("utf-8")
                if len(data) > self.binary_input_bytes:
                    status, answer = self._upload_input(ctx, org["id"], data, binding, token)
                    if status >= 300 or not isinstance(answer, dict):
                        return status, answer
                    wire_orgs.append({"id": org["id"], "input_upload": answer["input_upload"]})
                else:
                    del data
                    encoded = self.codec.encode_input(org["id"], obj, binding)
                    wire_orgs.append({"id": org["id"], "input": encoded})
            except CryptoError as exc:
                return exc.status, exc.to_dict()
            except (TypeError, ValueError) as exc:
                raise BadRequest(
                    f"an input must be JSON: {exc}",
                    errors={f"organizations[{i}].input": "not JSON"},
                ) from exc
        wire: dict[str, Any] = {
            "collaboration_id": ctx.collaboration_id,
            "uid": uid,
            "organizations": wire_orgs,
            "image": body.get("image") or ctx.image,
            "method": method_name,
            "name": body.get("name") or f"subtask of task {ctx.task_id}",
            "description": body.get("description") or "",
            "databases": body.get("databases")
            if body.get("databases") is not None
            else ctx.databases,
        }
        status, resp = self.client.send("POST", "/task", token=token, json=wire)
        if status < 300 and isinstance(resp, dict) and isinstance(resp.get("id"), int):
            with self._lock:
                self._task_uids[resp["id"]] = uid
            if self.on_subtask_created is not None:
                self.on_subtask_created(ctx.run_id)
        if (
            any_base64
            and status < 300
            and isinstance(resp, dict)
            and isinstance(resp.get("id"), int)
        ):
            with self._lock:
                self._base64_tasks.add(resp["id"])
        return status, resp

    def _upload_input(
        self, ctx: RunContext, org_id: int, data: bytes, binding: dict[str, Any], token: str
    ) -> tuple[int, Any]:
        """Seal a subtask's input into a file and upload it as bytes with the container's token
        (``POST /api/task/input``); returns the server's ``(status, answer)``."""
        fd, name = tempfile.mkstemp(prefix="v6nb-input-", dir=self.scratch)
        os.close(fd)
        path = Path(name)
        try:
            self.codec.encode_input_file(org_id, data, path, binding)
            params = {"collaboration_id": ctx.collaboration_id, "organization_id": org_id}
            return self.client.post_file("/task/input", path, token=token, params=params)
        finally:
            path.unlink(missing_ok=True)

    def _results(self, ctx: RunContext, query: dict[str, str], token: str) -> tuple[int, Any]:
        if not query.get("task_id", "").isdigit():
            raise BadRequest("GET /result needs ?task_id=<id>", errors={"task_id": "required"})
        task_id = int(query["task_id"])
        status, resp = self.client.send("GET", "/result", token=token, params=query)
        if status >= 300 or not isinstance(resp, dict):
            return status, resp
        with self._lock:
            as_base64 = task_id in self._base64_tasks
            uid = self._task_uids.get(task_id)
        if uid is None and self.codec.encrypted:
            st, task = self.client.send("GET", f"/task/{task_id}", token=token)
            uid = task.get("uid") if st < 300 and isinstance(task, dict) else None
        out = []
        for item in resp.get("data", []):
            item = dict(item)
            raw = item.get("result")
            if raw is None and item.get("result_ref"):  # a large result: fetched as bytes
                try:
                    item["result"] = self._large_result(item, task_id, uid, ctx, token, as_base64)
                except CryptoError as exc:
                    return exc.status, exc.to_dict()
            elif raw is not None:
                binding = _result_binding(item, task_id, uid, ctx)
                try:
                    value = self.codec.decode_result(item.get("organization_id"), raw, binding)
                except CryptoError as exc:
                    return exc.status, exc.to_dict()
                if as_base64:  # vantage6's AlgorithmClient base64-decodes results itself
                    value = base64.b64encode(json.dumps(value).encode("utf-8")).decode("ascii")
                item["result"] = value
            out.append(item)
        return 200, {**resp, "data": out}

    def _large_result(
        self,
        item: dict[str, Any],
        task_id: int,
        uid: str | None,
        ctx: RunContext,
        token: str,
        as_base64: bool,
    ) -> Any:
        """Stream a stored result to a temporary file, then decode (and decrypt) it from there."""
        binding = _result_binding(item, task_id, uid, ctx)
        fd, name = tempfile.mkstemp(prefix="v6nb-result-", dir=self.scratch)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                self.client.download(f"/run/{item.get('run_id')}/result", fh, token=token)
            value = self.codec.decode_result_file(item.get("organization_id"), path, binding)
        finally:
            path.unlink(missing_ok=True)
        if as_base64:
            return base64.b64encode(json.dumps(value).encode("utf-8")).decode("ascii")
        return value


def _paged(answer: tuple[int, Any], path: str, query: dict[str, str]) -> tuple[int, Any]:
    """Add vantage6's ``links.next`` to a list answer (``{data, page, per_page, total}``).

    vantage6's ``AlgorithmClient`` follows ``links.next`` to read every page; without it, it would
    stop after the first.
    """
    status, body = answer
    if status >= 300 or not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return status, body
    try:
        page, per_page, total = int(body["page"]), int(body["per_page"]), int(body["total"])
    except (KeyError, TypeError, ValueError):
        return status, body
    links: dict[str, str] = {"self": path}
    if page * per_page < total:
        rest = "&".join(f"{k}={v}" for k, v in query.items() if k != "page")
        links["next"] = f"{path}?{rest + '&' if rest else ''}page={page + 1}"
    return status, {**body, "links": links}


def _result_binding(
    item: dict[str, Any], task_id: int, uid: str | None, ctx: RunContext
) -> dict[str, Any]:
    """What the codec binds a subtask's result to (sent by the item's organization to this one)."""
    return {
        "task_id": task_id,
        "run_id": item.get("run_id"),
        "org_id": item.get("organization_id"),
        "receiver_org_id": ctx.organization_id,
        "task_uid": uid,
    }


class _ThreadingUnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _handler_for(proxy: AlgorithmProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "v6nb-proxy"

        def address_string(self) -> str:  # unix sockets have no client address
            return str(self.client_address[0]) if self.client_address else "unix"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("proxy: " + format, *args)

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query))
            length = int(self.headers.get("Content-Length") or 0)
            body: Any = None
            if length > _MAX_BODY:
                self._reply(
                    413,
                    {"msg": "request body too large", "errors": {}, "code": "payload_too_large"},
                )
                return
            raw = self.rfile.read(length) if length else b""
            if raw:
                try:
                    body = json.loads(raw)
                except (ValueError, RecursionError):  # RecursionError: nested too deeply
                    self._reply(
                        400,
                        {
                            "msg": "request body is not valid JSON",
                            "errors": {},
                            "code": "bad_request",
                        },
                    )
                    return
            auth = self.headers.get("Authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            try:
                status, payload = proxy.handle(method, url.path, query, body, token)
            except Exception:  # never let one algorithm's request take the proxy down
                log.exception("proxy: %s %s failed", method, url.path)
                status, payload = (
                    502,
                    {
                        "msg": "the node's proxy failed on this request; see the node log",
                        "errors": {},
                        "code": "error",
                    },
                )
            self._reply(status, payload)

        def _reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PATCH(self) -> None:
            self._dispatch("PATCH")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

    return Handler
