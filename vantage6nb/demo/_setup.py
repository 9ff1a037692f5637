"""Demo network setup: the administrator's REST calls and the split of the demo dataset over the nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..common.errors import ServerUnavailable
from ..common.rest import RestCore, Transport

__all__ = ["ORGANIZATION_NAMES", "AdminSession", "organization_names", "split_dataset"]

PENGUINS = Path(__file__).with_name("data") / "penguins.csv"
ORGANIZATION_NAMES = [
    "Leiden",
    "Utrecht",
    "Groningen",
    "Amsterdam",
    "Rotterdam",
    "Maastricht",
    "Nijmegen",
    "Eindhoven",
]
SPLIT_SEED = 20240611


def organization_names(n: int) -> list[str]:
    """``n`` organization names: Dutch university towns, then ``Org 9``, ``Org 10``, ...

    Examples
    --------
    >>> organization_names(3)
    ['Leiden', 'Utrecht', 'Groningen']
    """
    return [
        ORGANIZATION_NAMES[i] if i < len(ORGANIZATION_NAMES) else f"Org {i + 1}" for i in range(n)
    ]


def split_dataset(source: Any, n: int) -> list[Any]:
    """Split a dataset (DataFrame or CSV path; default the penguins) into ``n`` unequal parts.

    Deterministic: the rows are shuffled with a fixed seed, and part ``i`` gets a share
    proportional to ``i + 2`` (for 3 nodes: 2/9, 3/9, 4/9), so the nodes differ in size.

    Examples
    --------
    >>> [len(p) for p in split_dataset(None, 3)]
    [76, 115, 153]
    """
    import numpy as np
    import pandas as pd

    df = (
        pd.read_csv(PENGUINS if source is None else source)
        if not hasattr(source, "columns")
        else source
    )
    if n < 1 or n > len(df):
        raise ValueError(f"cannot split {len(df)} rows over {n} nodes")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(df))
    weights = np.arange(2, n + 2, dtype=float)
    bounds = np.floor(np.cumsum(weights) / weights.sum() * len(df)).astype(int)
    starts = np.concatenate([[0], bounds[:-1]])
    return [df.iloc[order[s:e]].reset_index(drop=True) for s, e in zip(starts, bounds, strict=True)]


class AdminSession:
    """The REST calls the demo makes as the server's root user (organizations, users, nodes).

    ``transport`` sends the requests instead of a ``requests.Session``
    (:class:`vantage6nb.common.rest.Transport`), e.g. ``vantage6nb.testing.FlaskTransport``.

    Examples
    --------
    >>> admin = AdminSession("http://127.0.0.1:7601", "root", "secret")  # doctest: +SKIP
    >>> admin.create_organization("Leiden")["id"]  # doctest: +SKIP
    1
    """

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        transport: Transport | None = None,
    ) -> None:
        if transport is None:
            import requests

            transport = requests.Session()
        self.api = url.rstrip("/") + "/api"
        self.timeout = timeout
        self.rest = RestCore(self.api, transport, timeout=timeout, on_failure=self._unreachable)
        self.token: str | None = None
        body = self.post("/token/user", {"username": username, "password": password})
        self.token = body["access_token"]

    def _unreachable(self, exc: OSError) -> None:
        raise ServerUnavailable(f"Demo server at {self.api} does not answer: {exc}") from exc

    def _call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        return self.rest.call(
            method, path, token=lambda: self.token, json=body, params=params, empty=""
        )

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body)

    def create_organization(self, name: str) -> dict[str, Any]:
        domain = name.lower().replace(" ", "-") + ".example"
        return self.post("/organization", {"name": name, "domain": domain})

    def create_collaboration(
        self, name: str, org_ids: list[int], *, encrypted: bool
    ) -> dict[str, Any]:
        return self.post(
            "/collaboration", {"name": name, "organization_ids": org_ids, "encrypted": encrypted}
        )

    def create_user(self, username: str, password: str, org_id: int) -> dict[str, Any]:
        return self.post(
            "/user",
            {
                "username": username,
                "password": password,
                "organization_id": org_id,
                "email": f"{username}@demo.example",
            },
        )

    def set_public_key(self, org_id: int, public_key: str) -> dict[str, Any]:
        return self._call("PATCH", f"/organization/{org_id}", {"public_key": public_key})

    def create_node(self, org_id: int, collab_id: int, name: str) -> dict[str, Any]:
        return self.post(
            "/node", {"organization_id": org_id, "collaboration_id": collab_id, "name": name}
        )

    def nodes(self, collab_id: int) -> list[dict[str, Any]]:
        body = self.get("/node", per_page=500)
        rows = list(body["data"]) if isinstance(body, dict) else list(body)
        return [r for r in rows if r.get("collaboration_id") == collab_id]
