"""What travels for a task input or result: plain JSON, or sealed for one organization.

The researcher's client and the node use these codecs; each supplies the peer-key lookup
(:class:`KeyLookup`) that fits where it stands. Every codec method takes ``binding``, the
mapping of what the caller knows about the payload (``task_uid``, ``run_id``,
``collaboration_id``, ``init_org_id``, ``receiver_org_id`` ...); a sealed codec builds the
:class:`~vantage6nb.common.crypto.Binding` from it with :func:`input_binding` or
:func:`result_binding`. Only the task uid, the run id, the kind and the two organizations are
bound into a ciphertext; the rest of the mapping only helps the key lookup.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from . import crypto
from .errors import DecryptionError
from .keys import OrgKey

__all__ = [
    "Codec",
    "KeyLookup",
    "PlainCodec",
    "SealedCodec",
    "TaskClaims",
    "input_binding",
    "result_binding",
]

_HEADER_PREFIX = 2048  # bytes of a result file that hold its header (a uid has at most 1024)


class KeyLookup(Protocol):
    """Finds a peer organization's public key for a sealed codec, pinned by fingerprint.

    The client's looks keys up in the collaboration's listing on the server, the node's asks the
    server for one organization at a time; both pin what they see (a changed key raises
    :class:`~vantage6nb.common.errors.KeyMismatch` naming the organization) and raise
    :class:`~vantage6nb.common.errors.MissingKey` for an organization without a key.
    """

    def peer_key(
        self,
        org_id: int,
        binding: Mapping[str, Any],
        *,
        fresh: bool = False,
        key_id: bytes | None = None,
    ) -> bytes:
        """The raw public key of ``org_id``.

        ``fresh``: ask the server again first, so a key rotated there shows up (a lookup may do
        that once per task uid); ``key_id``: the id a received header names, to ask again when
        the known key is another one. ``binding`` is the codec call's mapping, passed through.
        """
        ...


class TaskClaims(Protocol):
    """Remembers the task uids a node ran, to refuse a replayed task (the node's ``TaskMemory``)."""

    def claim(self, uid: str, run_id: int) -> None:
        """Record that ``run_id`` executes task ``uid``; a CryptoError for a replay."""
        ...


class Codec(Protocol):
    """Turns task inputs and results into what travels through the server, and back.

    ``encrypted`` says whether it seals. The client encodes inputs and decodes results; the node
    decodes its run's input and encodes its result, and its proxy encodes subtask inputs and
    decodes subtask results for a central algorithm. Errors are
    :class:`~vantage6nb.common.errors.CryptoError` subclasses.
    """

    encrypted: bool

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str:
        """An input object for organization ``org_id``, as the text it receives."""
        ...

    def decode_input(self, text: str, binding: Mapping[str, Any]) -> bytes:
        """A run's input text, as the JSON bytes written to ``INPUT_FILE``."""
        ...

    def encode_input_file(
        self, org_id: int, data: bytes, dst: Path, binding: Mapping[str, Any]
    ) -> int:
        """Like :meth:`encode_input` for the input's JSON bytes ``data``, into the file ``dst``
        in the binary wire form (large inputs, uploaded as bytes); returns its size."""
        ...

    def decode_input_file(self, src: Path, dst: Path, binding: Mapping[str, Any]) -> None:
        """Like :meth:`decode_input`, from a file in the binary wire form into ``dst``."""
        ...

    def encode_result(self, data: bytes, binding: Mapping[str, Any]) -> str:
        """A run's output (the JSON bytes of ``OUTPUT_FILE``) for the task's initiating organization."""
        ...

    def encode_result_file(self, src: Path, dst: Path, binding: Mapping[str, Any]) -> None:
        """Like :meth:`encode_result`, file to file in the binary wire form (large outputs)."""
        ...

    def decode_result(self, org_id: int, text: str | None, binding: Mapping[str, Any]) -> Any:
        """The parsed result that organization ``org_id`` produced (None stays None)."""
        ...

    def decode_result_file(self, org_id: int, path: Path, binding: Mapping[str, Any]) -> Any:
        """Like :meth:`decode_result`, from a file in the binary wire form (large results)."""
        ...


def _uid(binding: Mapping[str, Any]) -> str:
    uid = binding.get("task_uid")
    if not uid:
        raise DecryptionError("the task has no uid to bind its ciphertexts to")
    return str(uid)


def input_binding(binding: Mapping[str, Any], *, sender: int, recipient: int) -> crypto.Binding:
    """The binding of a task input: its task uid, sender and recipient organization (no run yet).

    Examples
    --------
    >>> input_binding({"task_uid": "7f3a", "collaboration_id": 1}, sender=1, recipient=2)
    Binding(kind='input', task_uid='7f3a', sender_org_id=1, recipient_org_id=2, run_id=None)
    """
    return crypto.Binding("input", _uid(binding), int(sender), int(recipient))


def result_binding(binding: Mapping[str, Any], *, sender: int, recipient: int) -> crypto.Binding:
    """The binding of a result: its task uid, ``binding["run_id"]``, sender and recipient.

    Examples
    --------
    >>> result_binding({"task_uid": "7f3a", "run_id": 9}, sender=2, recipient=1).describe()
    "result of task '7f3a' run 9, from org 2 to org 1"
    """
    return crypto.Binding(
        "result", _uid(binding), int(sender), int(recipient), int(binding["run_id"])
    )


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode("utf-8")


def _not_json(org_id: int, exc: Exception, hint: str = "") -> DecryptionError:
    then = f"; {hint}" if hint else "."
    return DecryptionError(f"The result of organization {org_id} is not JSON ({exc}){then}")


def _run_input(text: Any) -> str:
    if not isinstance(text, str):
        raise DecryptionError("the run has no input text")
    return text


class PlainCodec:
    """JSON text in and out, for collaborations without encryption.

    ``hint`` ends the error for a result that is not JSON (the client's and the node's
    subclasses say how to switch encryption on where they stand).

    Examples
    --------
    >>> codec = PlainCodec()
    >>> codec.encode_input(1, {"method": "m", "args": [], "kwargs": {}}, {})
    '{"method": "m", "args": [], "kwargs": {}}'
    >>> codec.decode_result(1, '{"n": 3}', {})
    {'n': 3}
    """

    encrypted = False
    hint = "if the collaboration is encrypted, its payloads need the organization's key"

    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str:
        return json.dumps(obj, allow_nan=True)

    def decode_input(self, text: str, binding: Mapping[str, Any]) -> bytes:
        return _run_input(text).encode("utf-8")

    def encode_input_file(
        self, org_id: int, data: bytes, dst: Path, binding: Mapping[str, Any]
    ) -> int:
        Path(dst).write_bytes(data)
        return len(data)

    def decode_input_file(self, src: Path, dst: Path, binding: Mapping[str, Any]) -> None:
        shutil.copyfile(src, dst)

    def encode_result(self, data: bytes, binding: Mapping[str, Any]) -> str:
        return data.decode("utf-8")

    def encode_result_file(self, src: Path, dst: Path, binding: Mapping[str, Any]) -> None:
        shutil.copyfile(src, dst)

    def decode_result(self, org_id: int, text: str | None, binding: Mapping[str, Any]) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text)
        except (TypeError, ValueError) as exc:
            raise _not_json(org_id, exc, self.hint) from None

    def decode_result_file(self, org_id: int, path: Path, binding: Mapping[str, Any]) -> Any:
        try:
            with open(path, "rb") as fh:
                return json.load(fh)
        except ValueError as exc:
            raise _not_json(org_id, exc, self.hint) from None


class SealedCodec:
    """Seals for one organization and opens what was sealed for this one (``org_id``, ``key``).

    ``peers`` looks up (and pins) the other organizations' public keys; ``memory`` (a node's)
    refuses a task uid that already ran as another run. Inputs are bound to the task uid and
    the two organizations, results also to the run id (docs/security.md).

    Examples
    --------
    >>> from vantage6nb.common.keys import KeyRing
    >>> class Ring(KeyRing):  # a fixed key lookup, for the example
    ...     def peer_key(self, org_id, binding, *, fresh=False, key_id=None):
    ...         return self.public_key(org_id)
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> ring = Ring()
    >>> _ = ring.add(1, a.public_key), ring.add(2, b.public_key)
    >>> text = SealedCodec(a, 1, ring).encode_input(2, {"method": "m"}, {"task_uid": "t1"})
    >>> SealedCodec(b, 2, ring).decode_input(text, {"task_uid": "t1", "init_org_id": 1})
    b'{"method": "m"}'
    """

    encrypted = True

    def __init__(
        self, key: OrgKey, org_id: int, peers: KeyLookup, memory: TaskClaims | None = None
    ) -> None:
        self.key, self.org_id, self.peers, self.memory = key, int(org_id), peers, memory

    # -- inputs ------------------------------------------------------------------------------------
    def encode_input(self, org_id: int, obj: Any, binding: Mapping[str, Any]) -> str:
        bind = input_binding(binding, sender=self.org_id, recipient=org_id)
        data = _json_bytes(obj)
        recipient_pk = self.peers.peer_key(bind.recipient_org_id, binding, fresh=True)
        return crypto.seal_text(data, bind, self.key, recipient_pk)

    def decode_input(self, text: str, binding: Mapping[str, Any]) -> bytes:
        text = _run_input(text)
        crypto.read_header(text)  # not sealed at all: say so before asking the server for keys
        expect = input_binding(binding, sender=binding["init_org_id"], recipient=self.org_id)
        sender_pk = self.peers.peer_key(expect.sender_org_id, binding, fresh=True)
        data = crypto.open_text(text, expect, self.key, sender_pk)
        if self.memory is not None:
            self.memory.claim(expect.task_uid, int(binding["run_id"]))
        return data

    def encode_input_file(
        self, org_id: int, data: bytes, dst: Path, binding: Mapping[str, Any]
    ) -> int:
        """Seal the input's JSON bytes chunk by chunk into ``dst`` (no base64, and no copy of
        the ciphertext in memory)."""
        bind = input_binding(binding, sender=self.org_id, recipient=org_id)
        recipient_pk = self.peers.peer_key(bind.recipient_org_id, binding, fresh=True)
        src = io.BytesIO(data)  # shares the buffer of ``data``
        with open(dst, "wb") as fout:
            crypto.seal_stream(src, fout, bind, self.key, recipient_pk)
            return fout.tell()

    def decode_input_file(self, src: Path, dst: Path, binding: Mapping[str, Any]) -> None:
        """Open a sealed input file into ``dst``, every chunk authenticated before it is written;
        on failure ``dst`` is removed."""
        with open(src, "rb") as fh:
            crypto.read_header(fh.read(_HEADER_PREFIX))  # not sealed: say so before key lookups
        expect = input_binding(binding, sender=binding["init_org_id"], recipient=self.org_id)
        sender_pk = self.peers.peer_key(expect.sender_org_id, binding, fresh=True)
        try:
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                crypto.open_stream(fin, fout, expect, self.key, sender_pk)
        except BaseException:
            Path(dst).unlink(missing_ok=True)
            raise
        if self.memory is not None:
            self.memory.claim(expect.task_uid, int(binding["run_id"]))

    # -- results -----------------------------------------------------------------------------------
    def _outgoing(self, binding: Mapping[str, Any]) -> tuple[crypto.Binding, bytes]:
        bind = result_binding(binding, sender=self.org_id, recipient=binding["init_org_id"])
        return bind, self.peers.peer_key(bind.recipient_org_id, binding)

    def encode_result(self, data: bytes, binding: Mapping[str, Any]) -> str:
        bind, recipient_pk = self._outgoing(binding)
        return crypto.seal_text(data, bind, self.key, recipient_pk)

    def encode_result_file(self, src: Path, dst: Path, binding: Mapping[str, Any]) -> None:
        bind, recipient_pk = self._outgoing(binding)
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            crypto.seal_stream(fin, fout, bind, self.key, recipient_pk)

    def _incoming(
        self, org_id: int, head: str | bytes, binding: Mapping[str, Any]
    ) -> tuple[crypto.Binding, bytes]:
        """The binding a result from ``org_id`` must have, and its sender's key (by ``head``)."""
        receiver = binding.get("receiver_org_id")
        if receiver is not None and int(receiver) != self.org_id:
            raise DecryptionError(
                f"This task was created by organization {receiver}: its results are encrypted "
                "for that organization, and only its members can read them."
            )
        header = crypto.read_header(head)  # not sealed at all: say so before asking for keys
        expect = result_binding(binding, sender=org_id, recipient=self.org_id)
        sender_pk = self.peers.peer_key(expect.sender_org_id, binding, key_id=header.sender_key_id)
        return expect, sender_pk

    def decode_result(self, org_id: int, text: str | None, binding: Mapping[str, Any]) -> Any:
        if text is None:
            return None
        expect, sender_pk = self._incoming(org_id, text, binding)
        data = crypto.open_text(text, expect, self.key, sender_pk)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise _not_json(org_id, exc) from None

    def decode_result_file(self, org_id: int, path: Path, binding: Mapping[str, Any]) -> Any:
        """Decrypt a sealed result file chunk by chunk into a temporary file, then parse it.

        Every chunk is authenticated before it is written; on failure the partial plaintext is
        removed. Memory: the parsed value (one copy), not the ciphertext or its base64.
        """
        path = Path(path)
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_PREFIX)
        expect, sender_pk = self._incoming(org_id, head, binding)
        plain = path.with_name(path.name + ".plain")
        try:
            with open(path, "rb") as fin, open(plain, "wb") as fout:
                crypto.open_stream(fin, fout, expect, self.key, sender_pk)
            with open(plain, "rb") as fh:
                return json.load(fh)
        except DecryptionError:
            raise
        except ValueError as exc:
            raise _not_json(org_id, exc) from None
        finally:
            plain.unlink(missing_ok=True)
