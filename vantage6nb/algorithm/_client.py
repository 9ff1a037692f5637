"""``AlgorithmClient``: what a central algorithm uses to create subtasks through its node's proxy."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..common import contract
from ..common.disclosure import parse_reason
from ..common.errors import (
    ConfigurationError,
    DisclosureRefused,
    ServerUnavailable,
    TaskFailed,
    TaskTimeout,
    V6Error,
    error_from_payload,
)
from ..common.rest import RestCore, Transport
from ..common.schemas import OPEN_VALUES, RunStatus
from ._context import current_local, get_env, requested_labels

__all__ = ["AlgorithmClient", "algorithm_client"]

F = TypeVar("F", bound=Callable[..., Any])


class AlgorithmClient:
    """Talks to the node's algorithm proxy (``HOST:PORT/API_PATH``) with the run's container token.

    The names follow vantage6's ``AlgorithmClient``: ``client.organization.list()``,
    ``client.task.create(...)``, ``client.wait_for_results(...)``, ``client.result.from_task(...)``.
    ``transport`` sends the requests instead of a ``requests.Session``
    (:class:`vantage6nb.common.rest.Transport`).

    Examples
    --------
    >>> client = AlgorithmClient("http://127.0.0.1:7601", token="...")  # doctest: +SKIP
    >>> task = client.task.create({"method": "partial", "kwargs": {}}, organizations=[1, 2])  # doctest: +SKIP
    >>> client.wait_for_results(task["id"], timeout=60)  # doctest: +SKIP
    """

    def __init__(
        self, url: str, *, token: str, timeout: float = 30.0, transport: Transport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.organization = _Organizations(self)
        self.task = _Tasks(self)
        self.run = _Runs(self)
        self.result = _Results(self)
        self._transport = transport
        self._rest: RestCore | None = None

    @classmethod
    def from_environment(cls) -> AlgorithmClient:
        """Build the client from the contract's ``HOST``, ``PORT``, ``API_PATH`` and ``TOKEN_FILE``."""
        host, port = get_env(contract.HOST), get_env(contract.PORT)
        token_file = get_env(contract.TOKEN_FILE)
        if not host or not token_file:
            raise ConfigurationError(
                "No node proxy to talk to: HOST and TOKEN_FILE are unset. Run this method as a "
                "task on a node, or locally with vantage6nb.algorithm.testing.LocalNetwork.",
                errors={"environment": "HOST/TOKEN_FILE missing"},
            )
        with open(token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
        if "://" not in host:
            host = f"http://{host}"
        api_path = (get_env(contract.API_PATH) or "").strip()
        if api_path and not api_path.startswith("/"):
            api_path = "/" + api_path
        return cls(f"{host}:{port}{api_path}" if port else f"{host}{api_path}", token=token)

    # --- transport (a local network overrides this) ---
    def _request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        if self._rest is None:
            if self._transport is None:
                import requests  # here: a local network never needs it

                self._transport = requests.Session()
            self._rest = RestCore(
                self.url, self._transport, timeout=self.timeout, on_failure=self._unreachable
            )
        return self._rest.call(
            method, path, token=lambda: self.token, params=params, json=json, empty=""
        )

    def _unreachable(self, exc: OSError) -> None:
        raise ServerUnavailable(
            f"Cannot reach the node's algorithm proxy at {self.url}: {exc}",
            errors={"proxy": self.url},
        ) from exc

    # --- waiting ---
    def wait_for_results(
        self, task_id: int, *, timeout: float | None = None, interval: float = 0.05
    ) -> list[Any]:
        """Wait until every run of ``task_id`` has ended and return the results (one per run).

        Raises :class:`DisclosureRefused` when every run that did not complete was refused by its
        node's disclosure policy (naming the first such organization's id, rule and threshold),
        :class:`TaskFailed` (with each failed run's reason) when a run did not complete otherwise,
        and :class:`TaskTimeout` after ``timeout`` seconds.

        Examples
        --------
        >>> results = client.wait_for_results(task["id"], timeout=120)  # doctest: +SKIP
        """
        rows = self.wait_for_result_rows(task_id, timeout=timeout, interval=interval)
        return [row.get("result") for row in rows]

    def wait_for_result_rows(
        self, task_id: int, *, timeout: float | None = None, interval: float = 0.05
    ) -> list[dict[str, Any]]:
        """As :meth:`wait_for_results`, but the rows ``{run_id, organization_id, status, result}``.

        Examples
        --------
        >>> [r["organization_id"] for r in client.wait_for_result_rows(task["id"])]  # doctest: +SKIP
        [1, 2]
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = interval
        while True:
            task = self.task.get(task_id)
            runs = task.get("runs") or []
            if runs and all(str(r.get("status")) not in OPEN_VALUES for r in runs):
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TaskTimeout(
                    f"Subtask {task_id} did not finish within {timeout} s; its runs: "
                    + ", ".join(f"org {r.get('organization_id')}: {r.get('status')}" for r in runs),
                    errors={"task_id": task_id},
                )
            time.sleep(delay)
            # at most 0.2 s late: an iterative fit waits for ten or more subtasks in a row, and a
            # poll through the node's proxy costs a few milliseconds
            delay = min(delay * 1.5, 0.2)
        failed = [r for r in runs if str(r.get("status")) != RunStatus.COMPLETED.value]
        if failed:
            _raise_failed(task_id, runs, failed)
        return self.result.rows(task_id)


def _raise_failed(task_id: int, runs: list[dict[str, Any]], failed: list[dict[str, Any]]) -> None:
    # one entry per distinct reason, so the same failure at every organization reads once
    by_reason: dict[str, list[str]] = {}
    for r in failed:
        why = str(r.get("status")) + (f" ({r['reason']})" if r.get("reason") else "")
        by_reason.setdefault(why, []).append(str(r.get("organization_id")))
    errors = {"organization " + ", ".join(orgs): why for why, orgs in by_reason.items()}
    refused = sorted(
        (r for r in failed if str(r.get("status")) == RunStatus.REFUSED.value),
        key=lambda r: r.get("organization_id") or 0,
    )
    if not refused or len(refused) != len(failed):
        raise TaskFailed(
            f"Subtask {task_id} failed at {len(failed)} of {len(runs)} organization(s)",
            errors=errors,
        )
    first = refused[0]
    parsed = parse_reason(str(first.get("reason") or ""))
    # a refusal passed on from further down names its own organization; else it is this run's
    org = parsed.organization if parsed and parsed.organization else first.get("organization_id")
    orgs = ", ".join(str(r.get("organization_id")) for r in refused)
    raise DisclosureRefused(
        f"Subtask {task_id} was refused by the disclosure policy of organization(s) {orgs}",
        errors=errors,
        organization=None if org is None else str(org),
        rule=parsed.rule if parsed else "",
        threshold=parsed.threshold if parsed else None,
        what=parsed.what if parsed else "",
    )


class _Endpoint:
    def __init__(self, client: AlgorithmClient) -> None:
        self._c = client


class _Organizations(_Endpoint):
    def list(self) -> list[dict[str, Any]]:
        """Organizations of this run's collaboration."""
        return _data(self._c._request("GET", "/organization"))

    def get(self, id: int) -> dict[str, Any]:
        """One organization of this collaboration by id."""
        for org in self.list():
            if org.get("id") == id:
                return org
        raise error_from_payload(404, {"msg": f"Organization {id} is not in this collaboration."})


class _Tasks(_Endpoint):
    def create(
        self,
        input_: dict[str, Any],
        organizations: Sequence[int],
        *,
        name: str | None = None,
        description: str | None = None,
        databases: Sequence[dict[str, Any] | str] | None = None,
        image: str | None = None,
    ) -> dict[str, Any]:
        """Create a subtask running ``input_`` (``{"method", "args"?, "kwargs"?}``) at ``organizations``.

        The image defaults to this run's, the databases to this run's labels; the proxy encrypts
        the input for each organization.
        """
        if not isinstance(input_, dict) or not isinstance(input_.get("method"), str):
            raise ValueError(
                'input_ must be a dict with a "method" name, e.g. {"method": "partial"}'
            )
        orgs = [int(o) for o in organizations]
        if not orgs:
            raise ValueError("organizations must name at least one organization id")
        body: dict[str, Any] = {
            "organizations": [
                {
                    "id": o,
                    "input": contract.make_input(
                        input_["method"], input_.get("args"), input_.get("kwargs")
                    ),
                }
                for o in orgs
            ],
            "method": input_["method"],
        }
        for key, value in (("name", name), ("description", description), ("image", image)):
            if value is not None:
                body[key] = value
        if databases is None:
            databases = [{"label": label} for label in requested_labels()]
        body["databases"] = [{"label": d} if isinstance(d, str) else dict(d) for d in databases]
        return self._c._request("POST", "/task", json=body)

    def get(self, id: int) -> dict[str, Any]:
        """The task with its runs' statuses."""
        return self._c._request("GET", f"/task/{int(id)}")


class _Runs(_Endpoint):
    def from_task(self, task_id: int) -> list[dict[str, Any]]:
        """The runs of a task."""
        return _data(self._c._request("GET", "/run", params={"task_id": int(task_id)}))


class _Results(_Endpoint):
    def from_task(self, task_id: int) -> list[Any]:
        """The (decrypted) results of a task, one per run, ordered by organization id."""
        rows = self.rows(task_id)
        return [row.get("result") for row in rows]

    def rows(self, task_id: int) -> list[dict[str, Any]]:
        """Result rows ``{run_id, organization_id, status, result}`` ordered by organization id."""
        rows = _data(self._c._request("GET", "/result", params={"task_id": int(task_id)}))
        return sorted(rows, key=lambda r: (r.get("organization_id") or 0, r.get("run_id") or 0))


def _data(body: Any) -> list[Any]:
    if isinstance(body, dict) and "data" in body:
        return list(body["data"])
    if isinstance(body, list):
        return body
    raise V6Error(f"Unexpected answer from the algorithm proxy: {str(body)[:200]}")


def algorithm_client(func: F) -> F:
    """Decorate a central function so it receives an :class:`AlgorithmClient` as first argument.

    Examples
    --------
    >>> @algorithm_client
    ... def central(client, column):
    ...     orgs = [o["id"] for o in client.organization.list()]
    ...     task = client.task.create({"method": "partial", "kwargs": {"column": column}}, orgs)
    ...     return client.wait_for_results(task["id"])
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        local = current_local()
        client = local.client if local is not None else AlgorithmClient.from_environment()
        return func(client, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
