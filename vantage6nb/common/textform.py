"""The text form of a sealed payload for JSON transport: ``v6nb1:`` + standard base64, streamed."""

from __future__ import annotations

import binascii
import sys

from .errors import DecryptionError

__all__ = [
    "TEXT_PREFIX",
    "TextReader",
    "TextWriter",
    "check_text",
    "from_text",
    "is_sealed",
    "to_text",
]

TEXT_PREFIX = "v6nb1:"

try:  # SIMD base64 (4-5x CPython's binascii on large payloads); the same text either way
    import pybase64 as _fast
except ImportError:  # pragma: no cover - the pure fallback
    _fast = None  # type: ignore[assignment]


def _b2a(data: bytes | memoryview) -> str:
    if _fast is not None:
        return _fast.b64encode_as_string(data)  # type: ignore[no-any-return]
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def is_sealed(text: str | bytes | None) -> bool:
    """Cheap check whether a transport string is a sealed payload (by its prefix only).

    Examples
    --------
    >>> is_sealed("v6nb1:AQE="), is_sealed('{"method": "m"}')
    (True, False)
    """
    if isinstance(text, (bytes, bytearray)):
        return bytes(text[: len(TEXT_PREFIX)]) == TEXT_PREFIX.encode("ascii")
    return isinstance(text, str) and text.startswith(TEXT_PREFIX)


def check_text(text: str) -> None:
    """Raise :class:`DecryptionError` (saying what was expected) unless ``text`` is sealed."""
    if not is_sealed(text):
        raise DecryptionError(
            f"not a sealed payload (expected text starting with {TEXT_PREFIX!r}); "
            "was it sent to an encrypted collaboration without encryption?"
        )


def _a2b(text: str) -> bytes:
    try:
        if _fast is not None:
            return _fast.b64decode(text, validate=True)  # type: ignore[no-any-return]
        if sys.version_info >= (3, 11):
            return binascii.a2b_base64(text, strict_mode=True)
        return binascii.a2b_base64(text)  # MACs still reject any change to the bytes
    except (binascii.Error, ValueError):
        raise DecryptionError("sealed payload text is not valid base64") from None


def from_text(text: str) -> bytes:
    """The sealed bytes of a whole text form (checked prefix, strict base64)."""
    check_text(text)
    return _a2b(text[len(TEXT_PREFIX) :])


def to_text(data: bytes) -> str:
    """The text form of sealed bytes (``v6nb1:`` + base64), as a JSON field carries them.

    Examples
    --------
    >>> to_text(b"ab")
    'v6nb1:YWI='
    >>> from_text(to_text(b"sealed")) == b"sealed"
    True
    """
    return TEXT_PREFIX + _b2a(data)


class TextReader:
    """Decodes ``v6nb1:<base64>`` text window by window, so the binary form is never whole."""

    _WINDOW = 4 * 32 * 1024  # characters; a multiple of 4 keeps windows independent

    def __init__(self, text: str) -> None:
        check_text(text)
        self._text, self._pos = text, len(TEXT_PREFIX)
        self._buf = b""

    def read(self, n: int) -> bytes:
        while len(self._buf) < n and self._pos < len(self._text):
            window = self._text[self._pos : self._pos + max(self._WINDOW, (n // 3 + 1) * 4)]
            self._pos += len(window)
            self._buf += _a2b(window)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class TextWriter:
    """Base64-encodes sealed bytes as they are written; joined into one string at the end."""

    def __init__(self) -> None:
        self.parts: list[str] = [TEXT_PREFIX]
        self._pending = b""

    def write(self, data: bytes | memoryview) -> int:
        size = len(data)
        data = self._pending + data if self._pending else data
        cut = len(data) - len(data) % 3
        if cut:
            self.parts.append(_b2a(data[:cut]))
        self._pending = bytes(data[cut:])  # data may be a view of a buffer the caller reuses
        return size

    def getvalue(self) -> str:
        if self._pending:
            self.parts.append(_b2a(self._pending))
            self._pending = b""
        return "".join(self.parts)
