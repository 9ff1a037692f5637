"""The node's audit log format: one JSON line per event, each hash-chained to the one before.

A line is the canonical JSON (sorted keys, no spaces) of ``{"seq", "time", "event", ..., "prev",
"hash"}``: ``seq`` counts from 1, ``prev`` is the previous line's ``hash`` (64 zeros for the first)
and ``hash`` is SHA-256 over ``prev`` and the canonical JSON of the line without its ``hash``. An
edited line breaks its own hash; a removed or reordered line breaks ``seq`` and ``prev``. A chain
alone cannot see its last lines cut off, so the writer also keeps a *head* (the last ``seq`` and
``hash``, written after each line): a log shorter than its head, or one whose line at the head's
``seq`` has another hash, was cut. The head may lag behind the log (a crash between the two
writes), never run ahead of it. This module does no I/O: the node writes (``node_app.audit``), the
researcher library reads (``vantage6nb.audit``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["GENESIS", "canonical", "chain_line", "line_hash", "verify_lines"]

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """The one JSON spelling of ``obj`` that is hashed (sorted keys, no spaces, UTF-8 kept).

    Examples
    --------
    >>> canonical({"b": 1, "a": [1, "é"]})
    '{"a":[1,"é"],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def line_hash(record: Mapping[str, Any]) -> str:
    """The hash of a record (its ``hash`` field, if any, left out)."""
    body = {k: v for k, v in record.items() if k != "hash"}
    data = f"{record.get('prev', '')}\n{canonical(body)}".encode()
    return hashlib.sha256(data).hexdigest()


def chain_line(prev: str, seq: int, event: Mapping[str, Any]) -> tuple[str, str]:
    """The line (without newline) that follows a line hashed ``prev``, and its own hash.

    Examples
    --------
    >>> line, h = chain_line(GENESIS, 1, {"event": "start", "time": "t"})
    >>> verify_lines([line]), len(h)
    ([], 64)
    """
    if "hash" in event or "prev" in event or "seq" in event:
        raise ValueError("an audit event may not set seq, prev or hash")
    record = {**event, "seq": seq, "prev": prev}
    digest = line_hash(record)
    return canonical({**record, "hash": digest}), digest


def verify_lines(lines: Iterable[str], head: Mapping[str, Any] | None = None) -> list[str]:
    """What is wrong with a log (its lines, in file order, and its head): [] when it is intact.

    Each problem names the line (1-based) and what broke; no content is echoed.

    Examples
    --------
    >>> a, h1 = chain_line(GENESIS, 1, {"event": "x"})
    >>> b, h2 = chain_line(h1, 2, {"event": "y"})
    >>> verify_lines([b, a])[0]
    'line 1: seq 2 where 1 was expected (a line was removed or moved)'
    >>> verify_lines([a], head={"seq": 2, "hash": h2})
    ['the log ends at seq 1 but its head says 2: its last lines were removed']
    """
    problems: list[str] = []
    prev, expected = GENESIS, 1
    hashes: dict[int, str] = {}
    for number, text in enumerate(lines, start=1):
        text = text.rstrip("\n")
        if not text:
            problems.append(f"line {number}: empty")
            continue
        try:
            record = json.loads(text)
        except ValueError:
            problems.append(f"line {number}: not JSON")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number}: not an audit record")
            continue
        seq = record.get("seq")
        if seq != expected:
            problems.append(
                f"line {number}: seq {seq} where {expected} was expected "
                "(a line was removed or moved)"
            )
        elif record.get("prev") != prev:
            problems.append(f"line {number}: does not follow the line before it")
        if record.get("hash") != line_hash(record) or canonical(record) != text:
            problems.append(f"line {number}: edited (its hash does not match)")
        prev = str(record.get("hash"))
        expected = (seq + 1) if isinstance(seq, int) else expected + 1
        if isinstance(seq, int):
            hashes[seq] = prev
    if head:
        last = expected - 1
        hseq = head.get("seq")
        if isinstance(hseq, int) and hseq > last:
            problems.append(
                f"the log ends at seq {last} but its head says {hseq}: its last lines were removed"
            )
        elif isinstance(hseq, int) and hseq in hashes and hashes[hseq] != head.get("hash"):
            problems.append(f"line {hseq}: differs from the head written after it")
    return problems
