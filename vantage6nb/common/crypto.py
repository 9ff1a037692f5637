"""End-to-end encryption between organizations (PyNaCl). See docs/security.md."""

from __future__ import annotations

import base64
import hashlib

__all__ = ["fingerprint"]


def fingerprint(public_key: bytes) -> str:
    """A short, stable fingerprint of a public key, shown to people: ``SHA256:<base64, no padding>``."""
    digest = hashlib.sha256(public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")
