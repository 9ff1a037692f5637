"""What the node keeps of an algorithm's output: a bounded tail of its log, NULs replaced."""

from __future__ import annotations

from typing import Any

__all__ = ["Captured", "LOG_TAIL_BYTES", "LOG_TAIL_LINES", "drain", "log_tail"]

LOG_TAIL_LINES = 200
LOG_TAIL_BYTES = 64 * 1024


def log_tail(data: bytes, *, lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last ``lines`` lines (at most ``max_bytes``) of captured output, decoded leniently.

    Examples
    --------
    >>> log_tail(b"a\\nb\\nc\\n", lines=2)
    'b\\nc\\n'
    """
    data = data[-max_bytes:]
    # NUL cannot be stored as text (the server refuses it): shown as the replacement character
    text = data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    parts = text.splitlines(keepends=True)
    return "".join(parts[-lines:])


class Captured:
    """A container's stdout and stderr, each kept as a bounded tail.

    Docker copies the two through separate pipes, so their relative order is not reliable; a
    crash's traceback (stderr) must not be pushed out of the log tail by stdout that arrives after
    it. The log is the stdout tail, then the stderr tail after a marker line.
    """

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()

    def add(self, buffer: bytearray, chunk: bytes | None) -> None:
        if chunk:
            buffer.extend(chunk)
            if len(buffer) > 2 * LOG_TAIL_BYTES:
                del buffer[: len(buffer) - LOG_TAIL_BYTES]

    def output(self) -> bytes:
        if not self.err:
            return bytes(self.out)
        if not self.out:
            return bytes(self.err)
        return bytes(self.out).rstrip(b"\n") + b"\n--- stderr ---\n" + bytes(self.err)


def drain(stream: Any, captured: Captured) -> None:
    """Collect a container's (demultiplexed) output until the container's streams close."""
    try:
        for out, err in stream:
            captured.add(captured.out, out)
            captured.add(captured.err, err)
    except Exception:  # the container went away mid-stream: keep what arrived
        pass
