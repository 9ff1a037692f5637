"""A test algorithm (process runtime) for large inputs: the bytes it got, and a subtask with one."""

from __future__ import annotations

import hashlib
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, entry_point, get_env
from vantage6nb.algorithms._common import run_partials


def digest(**kwargs: Any) -> dict[str, Any]:
    """The size and SHA-256 of the bytes of ``INPUT_FILE`` (what the node handed over), and of
    the ``blob`` argument as the algorithm parsed it."""
    with open(str(get_env("INPUT_FILE")), "rb") as fh:
        raw = fh.read()
    blob = str(kwargs.get("blob", "")).encode("utf-8")
    return {
        "input_size": len(raw),
        "input_sha256": hashlib.sha256(raw).hexdigest(),
        "blob_sha256": hashlib.sha256(blob).hexdigest(),
    }


@entry_point
@algorithm_client
def central(client: AlgorithmClient, blob: str = "", organizations: list[int] | None = None) -> Any:
    """Send ``blob`` to ``organizations`` as a subtask input through the proxy; their digests."""
    parts = run_partials(client, "digest", {"blob": blob}, organizations, name="digest (part)")
    return [p.value for p in parts]
