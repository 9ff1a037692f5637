"""How the node turns inputs and results into wire strings: plain JSON now, encryption plugs in here."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Protocol

from vantage6nb.common.errors import DecryptionError

__all__ = ["PayloadCodec", "PlainJsonCodec", "decode_algorithm_input"]


class PayloadCodec(Protocol):
    """Serialises (and, in an encrypted collaboration, encrypts) what travels through the server.

    ``binding`` names what the ciphertext belongs to (collaboration, task, run, sender and receiver
    organization ids, as far as they are known) so an encrypting implementation can bind to it.
    Every method raises :class:`~vantage6nb.common.errors.CryptoError` subclasses on bad input.
    """

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str:
        """A subtask's input for organization ``org_id`` (the proxy sends this)."""

    def decode_result(self, org_id: int, s: str, binding: Mapping[str, Any]) -> Any:
        """A subtask's result produced by organization ``org_id`` (the proxy returns this)."""

    def decode_input(self, s: str, binding: Mapping[str, Any]) -> bytes:
        """This node's run input, as the JSON bytes written to ``INPUT_FILE``."""

    def encode_result(self, data: bytes, binding: Mapping[str, Any]) -> str:
        """This node's run output (the JSON bytes of ``OUTPUT_FILE``) for the initiating organization."""


class PlainJsonCodec:
    """The unencrypted codec: inputs and results are JSON text.

    Examples
    --------
    >>> codec = PlainJsonCodec()
    >>> s = codec.encode_input(2, {"method": "m"}, {})
    >>> codec.decode_result(2, s, {})
    {'method': 'm'}
    """

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str:
        return json.dumps(obj, allow_nan=True)

    def decode_result(self, org_id: int, s: str, binding: Mapping[str, Any]) -> Any:
        if s is None:
            return None
        try:
            return json.loads(s)
        except (TypeError, ValueError) as exc:
            raise DecryptionError(
                f"result of organization {org_id} is not JSON; is the collaboration encrypted "
                "while this node runs without `encryption`?"
            ) from exc

    def decode_input(self, s: str, binding: Mapping[str, Any]) -> bytes:
        if not isinstance(s, str):
            raise DecryptionError("the run has no input text")
        return s.encode("utf-8")

    def encode_result(self, data: bytes, binding: Mapping[str, Any]) -> str:
        return data.decode("utf-8")


def decode_algorithm_input(value: Any) -> tuple[Any, bool]:
    """An input as an algorithm sent it to the proxy: a JSON object, JSON text, or (vantage6
    ``AlgorithmClient``) base64 of JSON bytes. Returns ``(object, was_base64)``.

    Examples
    --------
    >>> decode_algorithm_input({"method": "m"})
    ({'method': 'm'}, False)
    >>> decode_algorithm_input("eyJtZXRob2QiOiAibSJ9")
    ({'method': 'm'}, True)
    """
    if not isinstance(value, str):
        return value, False
    try:
        return json.loads(value), False
    except ValueError:
        pass
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
        return json.loads(raw.decode("utf-8")), True
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise ValueError("input must be a JSON object, JSON text, or base64 of JSON") from exc
