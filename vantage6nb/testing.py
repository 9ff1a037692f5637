"""In-process transport for tests: a ``Client`` talks to a Flask app's test client, no server process.

Examples
--------
>>> from server_app import create_app  # doctest: +SKIP
>>> from vantage6nb import Client
>>> from vantage6nb.testing import FlaskTransport
>>> app = create_app({"data_dir": "/tmp/v6nb-test", "root_password": "secret"})  # doctest: +SKIP
>>> client = Client("http://testserver", transport=FlaskTransport(app))  # doctest: +SKIP
>>> client.login("root", "secret").organizations()  # doctest: +SKIP
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - flask loads only with the app a test builds
    from flask import Flask

__all__ = ["FlaskTransport", "InProcessResponse"]


class InProcessResponse:
    """A test client's answer with the ``requests.Response`` attributes the clients read."""

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = dict(headers)
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The decoded JSON body; ``ValueError`` when it is not JSON (as ``requests`` raises)."""
        return jsonlib.loads(self.content)

    def iter_content(self, chunk_size: int = 1) -> Iterator[bytes]:
        for start in range(0, len(self.content), chunk_size):
            yield self.content[start : start + chunk_size]

    def close(self) -> None:
        pass

    def __enter__(self) -> InProcessResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FlaskTransport:
    """Sends each request to ``app`` through ``app.test_client()``: a transport for
    ``Client(url, transport=...)`` (and the node's ``ServerClient``) without sockets.

    The URL's host is passed on and otherwise ignored; timeouts do not apply. Parameters left
    ``None`` are not sent, as ``requests`` does.

    Parameters
    ----------
    app : flask.Flask
        E.g. ``server_app.create_app({...})``.

    Examples
    --------
    >>> transport = FlaskTransport(app)  # doctest: +SKIP
    >>> transport.request("GET", "http://testserver/api/health").json()  # doctest: +SKIP
    {'status': 'ok', 'db': 'ok'}
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        #: ``(method, url)`` of every request sent, for tests that count them
        self.sent: list[tuple[str, str]] = []

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        timeout: Any = None,
        stream: bool = False,
    ) -> InProcessResponse:
        """Send one request to the app; returns its answer (read in full)."""
        self.sent.append((method, url))
        kwargs: dict[str, Any] = {
            "method": method,
            "headers": dict(headers or {}),
            "query_string": {k: v for k, v in (params or {}).items() if v is not None},
        }
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data.read() if hasattr(data, "read") else data
        # a test client per request: no cookie jar shared between the client's threads
        resp = self.app.test_client().open(url, **kwargs)
        try:
            return InProcessResponse(resp.status_code, resp.headers, resp.get_data())
        finally:
            resp.close()

    def close(self) -> None:
        """Nothing to close (there are no connections)."""
