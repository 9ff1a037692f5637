"""How task inputs and results travel as text: plain JSON now, per-organization encryption later.

The client keeps one codec in ``client._codec``. ``client.setup_encryption(...)`` (encryption
work) replaces it with one that encrypts each input for its receiving organization and decrypts
and verifies each result; nothing else in the client changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from ..common.errors import DecryptionError

__all__ = ["Codec", "PlainCodec"]


class Codec(Protocol):
    """Turns an input object into the text one organization receives, and a result text back.

    ``binding`` names what a ciphertext must be bound to. For inputs: ``collaboration_id``,
    ``task_uid``, ``image``, ``method``, ``sender_org_id``, ``receiver_org_id``. For results:
    ``collaboration_id``, ``task_id``, ``task_uid``, ``run_id``, ``sender_org_id`` (the run's
    organization) and ``receiver_org_id`` (the task's initiating organization).
    """

    encrypted: bool

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str: ...

    def decode_result(self, org_id: int, text: str | None, binding: Mapping[str, Any]) -> Any: ...


class PlainCodec:
    """JSON text in and out, for collaborations without encryption.

    Examples
    --------
    >>> codec = PlainCodec()
    >>> codec.encode_input(1, {"method": "m", "args": [], "kwargs": {}}, {})
    '{"method": "m", "args": [], "kwargs": {}}'
    >>> codec.decode_result(1, '{"n": 3}', {})
    {'n': 3}
    """

    encrypted = False

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str:
        return json.dumps(obj, allow_nan=True)

    def decode_result(self, org_id: int, text: str | None, binding: Mapping[str, Any]) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DecryptionError(
                f"The result of organization {org_id} is not JSON ({exc}); if the collaboration is "
                "encrypted, set up your key with client.setup_encryption(...)."
            ) from None
