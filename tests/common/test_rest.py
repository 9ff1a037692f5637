"""The REST core: one retry loop, one refresh per call, typed errors, over any transport (no sockets)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from typing import Any

import pytest

from vantage6nb.common import rest
from vantage6nb.common.errors import (
    AuthenticationError,
    NotFound,
    ServerUnavailable,
    V6Error,
    ValidationError,
)
from vantage6nb.common.rest import (
    NO_RETRIES,
    UNTIL_STOPPED,
    RestCore,
    RetryPolicy,
    collect_pages,
    exchange,
    read_body,
    result,
    retrying,
)

FAST = RetryPolicy(retries=3, first_delay=0.0, max_delay=0.0)


class Answer:
    """A response-like answer: what a transport returns."""

    def __init__(self, status: int, body: Any = None, *, raw: bytes | None = None) -> None:
        self.status_code = status
        self.headers = {"Content-Type": "application/json"}
        self.content = (
            raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        )
        self.closed = False

    def json(self) -> Any:
        return json.loads(self.content)

    def iter_content(self, chunk_size: int) -> Any:
        yield from (self.content[i : i + 2] for i in range(0, len(self.content), 2))

    def close(self) -> None:
        self.closed = True


class FakeTransport:
    """Answers from a script of ``Answer``s or exceptions; records what was sent."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        self.sent.append({"method": method, "url": url, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _down(exc: OSError) -> None:
    raise ServerUnavailable(f"down: {type(exc).__name__}")


def test_the_core_imports_no_http_library():
    code = "import sys, vantage6nb.common.rest; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_send_joins_the_url_and_adds_the_bearer_header():
    transport = FakeTransport(Answer(200, {"ok": 1}))
    core = RestCore("http://h:1/api/", transport, timeout=7.0)
    core.send("POST", "/task", token="T", json={"a": 1}, headers={"X-Extra": "1"})
    assert transport.sent == [
        {
            "method": "POST",
            "url": "http://h:1/api/task",
            "headers": {"Authorization": "Bearer T", "X-Extra": "1"},
            "json": {"a": 1},
            "params": None,
            "data": None,
            "timeout": 7.0,
            "stream": False,
        }
    ]


def test_a_transport_failure_is_an_oserror_turned_typed_by_the_client():
    core = RestCore("http://h/api", FakeTransport(ConnectionRefusedError()), on_failure=_down)
    with pytest.raises(ServerUnavailable, match="down: ConnectionRefusedError"):
        core.send("GET", "/health")
    # without a hook (or when it returns) the failure propagates as it is
    with pytest.raises(ConnectionResetError):
        RestCore("http://h/api", FakeTransport(ConnectionResetError())).send("GET", "/x")


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [(404, {"msg": "gone", "code": "not_found"}, NotFound), (400, {"msg": "x"}, V6Error)],
)
def test_an_error_answer_becomes_the_typed_error(status: int, body: Any, cls: type) -> None:
    core = RestCore("http://h/api", FakeTransport(Answer(status, body)))
    with pytest.raises(cls) as info:
        core.call("GET", "/thing")
    assert info.value.msg == body["msg"]


def test_bodies_empty_and_not_json():
    assert read_body(Answer(200)) is None and read_body(Answer(200), empty="") == ""
    assert read_body(Answer(200, raw=b"<html>hi</html>"), limit=6) == "<html>"
    assert result(Answer(204)) is None
    with pytest.raises(V6Error, match=r"^HTTP 502: $"):
        result(Answer(502))
    with pytest.raises(NotFound, match="nope"):
        result(Answer(404, raw=b"<p>nope</p>"))


def test_retrying_follows_the_policy_and_stops_when_told():
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise ServerUnavailable("down")

    with pytest.raises(ServerUnavailable):
        retrying(down, FAST)
    assert len(calls) == 4  # the try and three retries
    calls.clear()
    with pytest.raises(ServerUnavailable):
        retrying(down, NO_RETRIES)
    assert len(calls) == 1

    stop = threading.Event()

    def until_third() -> None:
        calls.append(1)
        if len(calls) == 3:
            stop.set()
        raise ServerUnavailable("down")

    calls.clear()
    waits: list[float] = []
    policy = RetryPolicy(retries=None, first_delay=0.0, max_delay=0.0)
    with pytest.raises(ServerUnavailable):
        retrying(until_third, policy, stop=stop, on_retry=lambda exc, d: waits.append(d))
    assert len(calls) == 3 and waits == [0.0, 0.0]
    assert UNTIL_STOPPED.gives_up(10**6) is False


def test_other_errors_are_not_retried():
    calls: list[int] = []

    def bad() -> None:
        calls.append(1)
        raise ValidationError("no")

    with pytest.raises(ValidationError):
        retrying(bad, FAST)
    assert calls == [1]


def test_exchange_refreshes_once_per_call_across_retries():
    answers = [(401, None), (503, None), (401, None)]
    tokens: list[str | None] = []
    refreshes: list[str | None] = []

    def once(token: str | None) -> tuple[int, Any]:
        tokens.append(token)
        return answers.pop(0)

    def refresh(stale: str | None) -> str:
        refreshes.append(stale)
        return "new"

    current = {"token": "old"}
    answer = exchange(
        once,
        status=lambda a: a[0],
        token=lambda: current["token"],
        refresh=refresh,
        unavailable=(502, 503, 504),
        policy=FAST,
    )
    assert answer == (401, None)  # the second 401 is not refreshed again
    assert tokens == ["old", "new", "old"] and refreshes == ["old"]


def test_exchange_says_which_call_got_an_unavailable_status():
    with pytest.raises(ServerUnavailable, match="server answered 504 for GET /run"):
        exchange(lambda t: 504, status=int, unavailable=(504,), what="GET /run")


def test_call_releases_the_superseded_answer_and_retries_with_the_new_token():
    first, second = Answer(401, {"msg": "expired"}), Answer(200, {"id": 1})
    transport = FakeTransport(first, second)
    core = RestCore("http://h/api", transport)
    body = core.call("GET", "/run/1", token=lambda: "A1", refresh=lambda stale: "A2")
    assert body == {"id": 1} and first.closed
    assert [s["headers"] for s in transport.sent] == [
        {"Authorization": "Bearer A1"},
        {"Authorization": "Bearer A2"},
    ]


def test_an_unauthenticated_answer_without_refresh_is_raised():
    core = RestCore("http://h/api", FakeTransport(Answer(401, {"msg": "who?"})))
    with pytest.raises(AuthenticationError, match="who?"):
        core.call("GET", "/run")


def test_download_streams_and_tells_a_broken_body_from_a_full_disk():
    core = RestCore("http://h/api", FakeTransport(Answer(200, raw=b"abcde")), timeout=5.0)
    dst = io.BytesIO()
    assert core.download("/run/1/result", dst, token=lambda: "T") == 5
    assert dst.getvalue() == b"abcde"
    assert core.transport.sent[0]["stream"] is True  # type: ignore[attr-defined]
    assert core.transport.sent[0]["timeout"] == (5.0, 600.0)  # type: ignore[attr-defined]

    class Broken(Answer):
        def iter_content(self, chunk_size: int) -> Any:
            yield b"ab"
            raise ConnectionResetError()

    def broke(exc: OSError) -> None:
        raise ServerUnavailable("broke off")

    core = RestCore("http://h/api", FakeTransport(Broken(200, raw=b"x")))
    with pytest.raises(ServerUnavailable, match="broke off"):
        core.download("/r", io.BytesIO(), token=lambda: "T", on_broken=broke)

    class Full(io.BytesIO):
        def write(self, b: Any) -> int:
            raise OSError(28, "No space left on device")

    core = RestCore("http://h/api", FakeTransport(Answer(200, raw=b"abc")), on_failure=_down)
    with pytest.raises(OSError, match="No space left"):
        core.download("/r", Full(), token=lambda: "T")


def test_download_error_answers_are_typed():
    core = RestCore("http://h/api", FakeTransport(Answer(404, {"msg": "no result"})))
    with pytest.raises(NotFound, match="no result"):
        core.download("/run/9/result", io.BytesIO(), token=lambda: "T")
    core = RestCore("http://h/api", FakeTransport(Answer(302)))
    with pytest.raises(V6Error, match="HTTP 302: None"):
        core.download("/r", io.BytesIO(), token=lambda: "T", error_from=300, error_empty=None)


def test_collect_pages_until_total_and_on_list_bodies():
    seen: list[dict[str, Any]] = []

    def get(query: dict[str, Any]) -> Any:
        seen.append(query)
        n = query["page"]
        return {"data": list(range((n - 1) * 500, min(n * 500, 1203))), "total": 1203}

    assert collect_pages(get, {"task_id": 4, "status": None}) == list(range(1203))
    assert seen[-1] == {"task_id": 4, "page": 3, "per_page": rest.PAGE_SIZE}
    assert collect_pages(lambda q: [1, 2]) == [1, 2]
    assert collect_pages(lambda q: {"data": [1]}) == [1]  # no total: one page
