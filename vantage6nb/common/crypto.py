"""Sealed payloads between organizations: the binding, the wire format, seal and open.

See docs/security.md. Keys are in :mod:`.keys`, the ``v6nb1:`` text form in :mod:`.textform`,
and what travels for a task input or result (plain or sealed) in :mod:`.envelope`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import struct
from dataclasses import dataclass
from typing import Literal, Protocol

import nacl.bindings as sodium
import nacl.exceptions
import nacl.utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError, ValidationError
from .keys import KeyRing, OrgKey, fingerprint, key_id
from .textform import TEXT_PREFIX, TextReader, TextWriter, from_text, is_sealed

__all__ = [
    "Binding",
    "DEFAULT_CHUNK_SIZE",
    "Header",
    "TEXT_PREFIX",
    "VERSION",
    "fingerprint",
    "is_sealed",
    "open",
    "open_stream",
    "open_text",
    "read_exact",
    "read_header",
    "seal",
    "seal_stream",
    "seal_text",
]

VERSION = 2  # what seal writes; open reads versions 1 and 2 (_READABLE)
DEFAULT_CHUNK_SIZE = 64 * 1024
Kind = Literal["input", "result"]

_KIND_CODE: dict[str, int] = {"input": 1, "result": 2}
_KIND_NAME: dict[int, Kind] = {1: "input", 2: "result"}
_FLAG_RUN = 0x01
# version, kind, flags, log2(chunk size), sender org, recipient org, run id,
# sender key id, recipient key id, task uid length
_FIXED = struct.Struct(">BBBBQQQ8s8sH")
_MAX_UID = 1024
_NONCE = sodium.crypto_box_NONCEBYTES  # 24
_KEY = sodium.crypto_secretstream_xchacha20poly1305_KEYBYTES  # 32
_DIGEST = 32
_WRAPPED = 16 + _KEY + _DIGEST  # Poly1305 tag + key + header digest = 80
_READABLE = (1, 2)
# version 2 body: AES-256-GCM per chunk (OpenSSL, through cryptography), the nonce = chunk index
# (11 bytes) || last-chunk flag (1 byte): the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár)
_TAG = 16
_INTO = hasattr(AESGCM, "encrypt_into")  # cryptography >= 47 seals into our buffers (no copy)
_COUNTER = 11
_LAST = b"\x01"
_NOT_LAST = b"\x00"
# version 1 body (read only): libsodium secretstream XChaCha20-Poly1305
_SS_HEADER = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES  # 24
_ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES  # 17
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_MIN_LOG2, _MAX_LOG2 = 10, 24


class Readable(Protocol):
    """Anything with ``read(n) -> bytes`` (files opened "rb", sockets' makefile, BytesIO)."""

    def read(self, n: int, /) -> bytes | None: ...


class Writable(Protocol):
    """Anything with ``write(bytes)`` (files opened "wb", BytesIO)."""

    def write(self, data: bytes | memoryview, /) -> int | None: ...


@dataclass(frozen=True)
class Binding:
    """What a payload belongs to; sealed into the header and checked on opening.

    These five fields (with the key ids of both organizations) are all that is bound: not the
    collaboration, the server's task id, the image or the method the server shows
    (docs/security.md, "What is bound"). ``run_id`` is None for inputs (encrypted before the
    server assigns runs; the recipient organization then identifies the run within the task)
    and set for results.

    Examples
    --------
    >>> Binding("result", "7f3a", sender_org_id=2, recipient_org_id=1, run_id=9).describe()
    "result of task '7f3a' run 9, from org 2 to org 1"
    """

    kind: Kind
    task_uid: str
    sender_org_id: int
    recipient_org_id: int
    run_id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KIND_CODE:
            raise ValidationError(f"binding kind must be 'input' or 'result', not {self.kind!r}")
        if not isinstance(self.task_uid, str) or not 0 < len(self.task_uid.encode()) <= _MAX_UID:
            raise ValidationError(f"binding task_uid must be a string of 1..{_MAX_UID} bytes")
        for name in ("sender_org_id", "recipient_org_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 2**64:
                raise ValidationError(f"binding {name} must be an integer >= 0, not {value!r}")
        if self.run_id is not None and (
            not isinstance(self.run_id, int) or not 0 < self.run_id < 2**64
        ):
            raise ValidationError("binding run_id must be a positive integer or None")

    def describe(self) -> str:
        """Human description used in error messages."""
        run = "" if self.run_id is None else f" run {self.run_id}"
        return (
            f"{self.kind} of task {self.task_uid!r}{run}, "
            f"from org {self.sender_org_id} to org {self.recipient_org_id}"
        )


@dataclass(frozen=True)
class Header:
    """The clear (but authenticated) metadata at the start of a sealed payload."""

    version: int
    binding: Binding
    chunk_size: int
    sender_key_id: bytes
    recipient_key_id: bytes
    raw: bytes  # the header bytes that are authenticated


def _short(kid: bytes) -> str:
    return "SHA256:" + base64.b64encode(kid).decode("ascii")[:10] + "…"


def _digest(header: bytes) -> bytes:
    return hashlib.blake2b(header, digest_size=_DIGEST, person=b"v6nb-header-v1").digest()


def _encode_header(b: Binding, chunk_size: int, sender_pk: bytes, recipient_pk: bytes) -> bytes:
    log2 = chunk_size.bit_length() - 1
    if chunk_size != 1 << log2 or not _MIN_LOG2 <= log2 <= _MAX_LOG2:
        raise ValidationError("chunk_size must be a power of two between 1 KiB and 16 MiB")
    uid = b.task_uid.encode("utf-8")
    fixed = _FIXED.pack(
        VERSION,
        _KIND_CODE[b.kind],
        _FLAG_RUN if b.run_id is not None else 0,
        log2,
        b.sender_org_id,
        b.recipient_org_id,
        b.run_id or 0,
        key_id(sender_pk),
        key_id(recipient_pk),
        len(uid),
    )
    return fixed + uid


def read_exact(src: Readable, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads; fewer only at the end of the stream.

    Examples
    --------
    >>> import io
    >>> read_exact(io.BytesIO(b"abc"), 2), read_exact(io.BytesIO(b"abc"), 9)
    (b'ab', b'abc')
    """
    first = src.read(n)
    if first is None or len(first) == n:
        return bytes(first or b"")
    parts = [first]
    got = len(first)
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _fill(src: Readable, buf: bytearray) -> int:
    """Fill ``buf`` from ``src`` as far as the stream goes; the number of bytes read.

    Uses ``readinto`` where the source has it (files, BytesIO: no intermediate copy), else
    ``read``; short reads are looped over, so fewer than ``len(buf)`` means the stream ended.
    """
    view = memoryview(buf)
    size = len(buf)
    got = 0
    readinto = getattr(src, "readinto", None)
    while got < size:
        if readinto is not None:
            try:
                n = readinto(view[got:]) or 0
            except NotImplementedError:  # io.RawIOBase subclasses that define only read()
                readinto = None
                continue
        else:
            more = src.read(size - got)
            n = len(more) if more else 0
            view[got : got + n] = more or b""
        if not n:
            break
        got += n
    return got


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(_COUNTER, "big") + (_LAST if last else _NOT_LAST)


def _parse_header(src: Readable) -> Header:
    fixed = read_exact(src, _FIXED.size)
    if fixed[:1] and fixed[0] not in _READABLE:
        raise DecryptionError(
            f"unsupported sealed payload version {fixed[0]} (this library reads versions "
            f"{', '.join(map(str, _READABLE))}); upgrade vantage6nb or check that this is a "
            "vantage6nb payload"
        )
    if len(fixed) < _FIXED.size:
        raise DecryptionError("sealed payload is truncated inside its header")
    ver, kind, flags, log2, sender, recipient, run, skid, rkid, uid_len = _FIXED.unpack(fixed)
    if kind not in _KIND_NAME or flags & ~_FLAG_RUN or not _MIN_LOG2 <= log2 <= _MAX_LOG2:
        raise DecryptionError("sealed payload header is malformed (kind, flags or chunk size)")
    if not 0 < uid_len <= _MAX_UID:
        raise DecryptionError("sealed payload header is malformed (task uid length)")
    uid = read_exact(src, uid_len)
    if len(uid) < uid_len:
        raise DecryptionError("sealed payload is truncated inside its header")
    has_run = bool(flags & _FLAG_RUN)
    if has_run != (run != 0):
        raise DecryptionError("sealed payload header is malformed (run id)")
    try:
        binding = Binding(
            _KIND_NAME[kind], uid.decode("utf-8"), sender, recipient, run if has_run else None
        )
    except (UnicodeDecodeError, ValidationError) as exc:
        raise DecryptionError(f"sealed payload header is malformed ({exc})") from None
    return Header(ver, binding, 1 << log2, skid, rkid, fixed + uid)


def read_header(sealed: bytes | str) -> Header:
    """Read the clear metadata of a sealed payload (binary or text form) without decrypting.

    Useful to find the sender organization before looking up its key. Nothing here is
    trusted until :func:`open` succeeds.

    Examples
    --------
    >>> from vantage6nb.common.keys import OrgKey
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> bind = Binding("input", "t-1", sender_org_id=1, recipient_org_id=2)
    >>> read_header(seal_text(b"{}", bind, a, b.public_key)).binding == bind
    True
    """
    blob = from_text(sealed) if isinstance(sealed, str) else sealed
    return _parse_header(io.BytesIO(blob))


def seal_stream(
    src: Readable,
    dst: Writable,
    binding: Binding,
    sender_key: OrgKey,
    recipient_public_key: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    _fixed: tuple[bytes, bytes] | None = None,
) -> int:
    """Encrypt ``src`` into ``dst`` for one recipient organization, chunk by chunk.

    Memory use is three chunk buffers regardless of payload size. Returns the bytes written.
    ``dst.write`` is given views of a buffer that is reused for the next chunk: it must copy
    (files, sockets and BytesIO do). ``_fixed`` = (payload key, box nonce) is for known-answer
    tests only.

    Examples
    --------
    >>> import io
    >>> from vantage6nb.common.keys import OrgKey
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> bind = Binding("result", "t-1", sender_org_id=2, recipient_org_id=1, run_id=5)
    >>> out = io.BytesIO()
    >>> n = seal_stream(io.BytesIO(b"42"), out, bind, b, a.public_key)
    >>> n == len(out.getvalue())
    True
    """
    recipient_public_key = bytes(recipient_public_key)
    if len(recipient_public_key) != sodium.crypto_box_PUBLICKEYBYTES:
        raise ValidationError("recipient_public_key must be the raw 32-byte public key")
    header = _encode_header(binding, chunk_size, sender_key.public_key, recipient_public_key)
    digest = _digest(header)
    payload_key, nonce = _fixed or (nacl.utils.random(_KEY), nacl.utils.random(_NONCE))
    wrapped = sodium.crypto_box(
        payload_key + digest, nonce, recipient_public_key, bytes(sender_key.private_key)
    )
    written = dst.write(header + nonce + wrapped) or 0
    aead = AESGCM(payload_key)
    current, ahead = bytearray(chunk_size), bytearray(chunk_size)
    sealed = bytearray(chunk_size + _TAG)
    out = memoryview(sealed)
    n = _fill(src, current)
    index = 0
    while True:
        m = _fill(src, ahead) if n == chunk_size else 0
        last = m == 0  # a full chunk is the last one when nothing follows it
        chunk = memoryview(current)[:n]
        if _INTO:
            aead.encrypt_into(_nonce(index, last), chunk, digest, out[: n + _TAG])
            written += dst.write(out[: n + _TAG]) or 0
        else:
            written += dst.write(aead.encrypt(_nonce(index, last), chunk, digest)) or 0
        if last:
            return written
        current, ahead, n = ahead, current, m
        index += 1


def _lookup(sender_public_key: bytes | KeyRing, org_id: int) -> bytes:
    if isinstance(sender_public_key, (bytes, bytearray)):
        return bytes(sender_public_key)
    return sender_public_key.public_key(org_id)


def open_stream(
    src: Readable,
    dst: Writable,
    expect: Binding,
    recipient_key: OrgKey,
    sender_public_key: bytes | KeyRing,
) -> int:
    """Decrypt ``src`` into ``dst``, checking binding, sender and every chunk.

    ``sender_public_key`` is the raw key of ``expect.sender_org_id`` or a
    :class:`~vantage6nb.common.keys.KeyRing` to look it up in. Each chunk is authenticated
    before it is written; on :class:`DecryptionError` ``dst`` may hold a prefix of the
    plaintext that the caller must discard. Returns the plaintext bytes written.

    Examples
    --------
    >>> import io
    >>> from vantage6nb.common.keys import OrgKey
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> bind = Binding("input", "t-1", sender_org_id=1, recipient_org_id=2)
    >>> box = io.BytesIO()
    >>> _ = seal_stream(io.BytesIO(b"hi"), box, bind, a, b.public_key)
    >>> out = io.BytesIO()
    >>> open_stream(io.BytesIO(box.getvalue()), out, bind, b, a.public_key), out.getvalue()
    (2, b'hi')
    """
    header = _parse_header(src)
    got = header.binding
    if got != expect:
        fields = [f for f in expect.__dataclass_fields__ if getattr(got, f) != getattr(expect, f)]
        raise DecryptionError(
            f"payload is bound to {got.describe()}, not to {expect.describe()} "
            f"(differs in: {', '.join(fields)}); it was moved from elsewhere",
            errors={"mismatch": fields},
        )
    sender_pk = _lookup(sender_public_key, expect.sender_org_id)
    own_pk = recipient_key.public_key
    if header.recipient_key_id != key_id(own_pk):
        raise DecryptionError(
            f"payload was sealed for another key of org {got.recipient_org_id} "
            f"({_short(header.recipient_key_id)}), not the local key ({fingerprint(own_pk)}); "
            "was the organization's key replaced after the payload was made?"
        )
    if header.sender_key_id != key_id(sender_pk):
        raise DecryptionError(
            f"payload claims a sender key of org {got.sender_org_id} ({_short(header.sender_key_id)}) "
            f"that is not the known key of that organization ({fingerprint(sender_pk)}); "
            "it was forged, or the sender's key changed"
        )
    nonce = read_exact(src, _NONCE)
    wrapped = read_exact(src, _WRAPPED)
    if len(wrapped) < _WRAPPED:
        raise DecryptionError("sealed payload is truncated inside its key box")
    try:
        opened = sodium.crypto_box_open(wrapped, nonce, sender_pk, bytes(recipient_key.private_key))
    except nacl.exceptions.CryptoError:
        raise DecryptionError(
            f"the payload key does not authenticate as coming from org {got.sender_org_id}: "
            "the wrapped key or nonce was modified, or the payload was forged by someone "
            "without that organization's private key"
        ) from None
    payload_key, digest = opened[:_KEY], opened[_KEY:]
    if not hmac.compare_digest(digest, _digest(header.raw)):
        raise DecryptionError("the payload header was modified after sealing (binding or keys)")
    if header.version == 1:
        return _open_body_v1(src, dst, header.chunk_size, payload_key, digest)
    return _open_body(src, dst, header.chunk_size, payload_key, digest)


def _open_body(src: Readable, dst: Writable, chunk_size: int, key: bytes, digest: bytes) -> int:
    """Version 2: each chunk opened (and authenticated) before it is written to ``dst``."""
    aead = AESGCM(key)
    full = chunk_size + _TAG
    current, ahead = bytearray(full), bytearray(full)
    plain = memoryview(bytearray(chunk_size))
    n = _fill(src, current)
    if n == 0:
        raise DecryptionError("sealed payload is truncated before its first chunk")
    written = 0
    index = 0
    while True:
        if n < _TAG:
            raise DecryptionError(f"sealed payload is truncated inside chunk {index}")
        m = _fill(src, ahead) if n == full else 0
        last = m == 0
        body = memoryview(current)[:n]
        try:
            if _INTO:
                aead.decrypt_into(_nonce(index, last), body, digest, plain[: n - _TAG])
                opened: bytes | memoryview = plain[: n - _TAG]
            else:
                opened = aead.decrypt(_nonce(index, last), body, digest)
        except InvalidTag:
            raise DecryptionError(_why_chunk_fails(aead, index, last, body, digest)) from None
        written += dst.write(opened) or 0
        if last:
            return written
        current, ahead, n = ahead, current, m
        index += 1


def _why_chunk_fails(aead: AESGCM, index: int, last: bool, body: memoryview, digest: bytes) -> str:
    """The error for a chunk that does not authenticate (only on the failure path)."""
    with contextlib.suppress(InvalidTag):
        aead.decrypt(_nonce(index, not last), bytes(body), digest)
        if last:  # it is a genuine middle chunk: the chunks after it are missing
            return (
                f"sealed payload is truncated: it ends after chunk {index} without the final chunk"
            )
        return "unexpected data after the final chunk of a sealed payload"
    return (
        f"chunk {index} failed authentication: the ciphertext was modified, reordered or truncated"
    )


def _open_body_v1(src: Readable, dst: Writable, chunk_size: int, key: bytes, digest: bytes) -> int:
    """Version 1 (libsodium secretstream), read so payloads made before version 2 still open."""
    ss_header = read_exact(src, _SS_HEADER)
    if len(ss_header) < _SS_HEADER:
        raise DecryptionError("sealed payload is truncated before its first chunk")
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    try:
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, ss_header, key)
    except nacl.exceptions.CryptoError:
        raise DecryptionError("the stream header is invalid") from None
    pull = sodium.crypto_secretstream_xchacha20poly1305_pull
    full = chunk_size + _ABYTES
    written = 0
    index = 0
    while True:
        chunk = read_exact(src, full)
        if not chunk:
            raise DecryptionError(
                f"sealed payload is truncated: it ends after chunk {index - 1} "
                "without the final chunk"
            )
        if len(chunk) < _ABYTES:
            raise DecryptionError(f"sealed payload is truncated inside chunk {index}")
        try:
            plain, tag = pull(state, chunk, digest)
        except nacl.exceptions.CryptoError:
            raise DecryptionError(
                f"chunk {index} failed authentication: the ciphertext was modified, "
                "reordered or truncated"
            ) from None
        written += dst.write(plain) or 0
        if tag == _TAG_FINAL:
            if src.read(1):
                raise DecryptionError("unexpected data after the final chunk of a sealed payload")
            return written
        if len(chunk) < full:
            raise DecryptionError(f"sealed payload is truncated inside chunk {index}")
        index += 1


class _Sink:
    """A write-only sink collecting (copies of) chunks, joined once at the end."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes | memoryview) -> int:
        self.parts.append(bytes(data))
        return len(data)


def seal(
    data: bytes,
    binding: Binding,
    sender_key: OrgKey,
    recipient_public_key: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Encrypt bytes for one recipient organization (binary wire format).

    Examples
    --------
    >>> from vantage6nb.common.keys import OrgKey
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> bind = Binding("input", "t-1", sender_org_id=1, recipient_org_id=2)
    >>> open(seal(b"x", bind, a, b.public_key), bind, b, a.public_key)
    b'x'
    """
    sink = _Sink()
    seal_stream(
        io.BytesIO(data), sink, binding, sender_key, recipient_public_key, chunk_size=chunk_size
    )
    return b"".join(sink.parts)


def open(  # noqa: A001 - mirrors seal/open; call it as crypto.open
    sealed: bytes,
    expect: Binding,
    recipient_key: OrgKey,
    sender_public_key: bytes | KeyRing,
) -> bytes:
    """Decrypt and verify a payload made by :func:`seal`; raises :class:`DecryptionError`.

    Examples
    --------
    >>> from vantage6nb.common.keys import OrgKey
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> bind = Binding("input", "t-1", sender_org_id=1, recipient_org_id=2)
    >>> open(seal(b"", bind, a, b.public_key), bind, b, a.public_key)
    b''
    """
    sink = _Sink()
    open_stream(io.BytesIO(sealed), sink, expect, recipient_key, sender_public_key)
    return b"".join(sink.parts)


def seal_text(
    data: bytes,
    binding: Binding,
    sender_key: OrgKey,
    recipient_public_key: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> str:
    """Like :func:`seal`, as ``v6nb1:<base64>`` text for JSON transport.

    Examples
    --------
    >>> from vantage6nb.common.keys import OrgKey
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> bind = Binding("input", "t-1", sender_org_id=1, recipient_org_id=2)
    >>> is_sealed(seal_text(b"{}", bind, a, b.public_key))
    True
    """
    sink = TextWriter()
    seal_stream(
        io.BytesIO(data), sink, binding, sender_key, recipient_public_key, chunk_size=chunk_size
    )
    return sink.getvalue()


def open_text(
    text: str,
    expect: Binding,
    recipient_key: OrgKey,
    sender_public_key: bytes | KeyRing,
) -> bytes:
    """Decrypt the text form made by :func:`seal_text`.

    Examples
    --------
    >>> from vantage6nb.common.keys import OrgKey
    >>> a, b = OrgKey.generate(), OrgKey.generate()
    >>> bind = Binding("input", "t-1", sender_org_id=1, recipient_org_id=2)
    >>> open_text(seal_text(b"{}", bind, a, b.public_key), bind, b, a.public_key)
    b'{}'
    """
    sink = _Sink()
    open_stream(TextReader(text), sink, expect, recipient_key, sender_public_key)
    return b"".join(sink.parts)
