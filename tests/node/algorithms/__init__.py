"""Tiny test algorithms for the runtime contract tests (importable, no dependencies but the stdlib)."""
