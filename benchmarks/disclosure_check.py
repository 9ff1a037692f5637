"""Cost of the node's disclosure check (``check_output``) and of its audit record, per run.

Three outputs as an algorithm writes them, checked against the default policy: a two-dimensional
``count_table`` of 1,000 cells (25 x 40 levels, every cell at least ``min_count``, so every cell
is walked and released), a summary of 50 ``moments`` columns with their evidence, and the table
again with ``small_cells: suppress`` and one cell in ten below the minimum. Then the audit write
the node does after each check (``AuditLog.record("disclosure", ...)`` with the decisions, one
fsynced line) in a temporary folder, and the two together, which is what a run pays.

Run: ``python benchmarks/disclosure_check.py [--repeat 200] [--dir /path/on/the/node/disk]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import load_note, machine, percentile  # noqa: E402

from node_app.audit import AuditLog  # noqa: E402
from vantage6nb.common.disclosure import DisclosurePolicy  # noqa: E402
from vantage6nb.common.release import Release, check_output  # noqa: E402

TARGET_MS = 5.0  # check + audit write of the 1,000-cell table


def _typed(value: Any) -> bytes:
    return json.dumps({"v6nb.result": 1, "value": value}).encode()


def table_output(rows: int = 25, cols: int = 40, small_every: int = 0) -> bytes:
    """A crosstab part's output: ``rows`` x ``cols`` non-zero cells and the row count."""
    cells = []
    for i in range(rows):
        for j in range(cols):
            k = i * cols + j
            n = 2 if small_every and k % small_every == 0 else 5 + k % 17
            cells.append([f"r{i:02d}", 1990 + j, n])
    total = sum(c[-1] for c in cells)
    table = {"@type": "count_table", "names": ["row", "col"], "cells": cells, "total": total}
    return _typed({"table": table, "rows": {"@type": "count", "n": total}})


def summary_output(columns: int = 50) -> bytes:
    """A summary part's output: ``columns`` moments with evidence, and the row count."""
    stats = {}
    for c in range(columns):
        stats[f"x{c:02d}"] = {
            "@type": "moments",
            "column": f"x{c:02d}",
            "count": 340,
            "missing": 4,
            "mean": 43.9 + c,
            "mean_correction": 1.2e-15,
            "m2": 10123.4 + c,
            "min": 32.1,
            "max": 59.6 + c,
            "evidence": {"abs_sum": 340 * (43.9 + c), "top": [59.6 + c, 58.3 + c]},
        }
    return _typed({"columns": stats, "rows": {"@type": "count", "n": 344}})


def _time(fn: Callable[[], Any], repeat: int) -> list[float]:
    fn()  # warm-up: imports, caches
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _row(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"| {name} | {statistics.median(ms):.3f} ms | {percentile(ms, 0.95):.3f} ms |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200, help="timed repetitions per row")
    ap.add_argument("--dir", default=None, help="folder for the audit log (default: a temp folder)")
    args = ap.parse_args()

    policy = DisclosurePolicy()  # 25 and 40 levels are within max_levels 40
    suppress = DisclosurePolicy(small_cells="suppress")
    table, summary = table_output(), summary_output()
    mixed = table_output(small_every=10)

    def check(data: bytes, pol: DisclosurePolicy, image: str) -> Release:
        release = check_output(data, pol, image=image, asked=b'{"row": "row", "col": "col"}')
        assert release.refusal is None, release.refusal
        return release

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        audit = AuditLog(Path(tmp) / "audit")
        decisions = check(table, policy, "v6nb/crosstab").decisions
        run = iter(range(1, 10**9))

        def record(found: list[dict[str, Any]]) -> None:
            audit.record(
                "disclosure",
                run_id=next(run),
                image="v6nb/crosstab",
                released=True,
                rule=None,
                decisions=found,
                detail="",
            )

        def both() -> None:
            record(check(table, policy, "v6nb/crosstab").decisions)

        rows = [
            (
                "check_output, count_table 25 x 40 = 1,000 cells",
                _time(lambda: check(table, policy, "v6nb/crosstab"), args.repeat),
            ),
            (
                "check_output, summary of 50 moments columns",
                _time(lambda: check(summary, policy, "v6nb/summary"), args.repeat),
            ),
            (
                "check_output, 1,000 cells, `small_cells: suppress`, 100 suppressed",
                _time(lambda: check(mixed, suppress, "v6nb/crosstab"), args.repeat),
            ),
            (
                "audit write (one fsynced line, the table's decisions)",
                _time(lambda: record(decisions), args.repeat),
            ),
            ("**check + audit write, 1,000-cell table**", _time(both, args.repeat)),
        ]
    print(f"# {machine()}; {load_note()}")
    print(
        f"# inputs: table {len(table) / 1024:.1f} KiB, summary {len(summary) / 1024:.1f} KiB; "
        f"{args.repeat} repetitions per row; audit log in {args.dir or tempfile.gettempdir()}"
    )
    print("| measure | median | p95 |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(_row(name, seconds))
    combined = percentile([s * 1000 for s in rows[-1][1]], 0.95)
    verdict = "met" if combined < TARGET_MS else "NOT met"
    print(
        f"# target: check + audit write of the 1,000-cell table < {TARGET_MS:g} ms (p95 {combined:.3f} ms): {verdict}"
    )


if __name__ == "__main__":
    main()
