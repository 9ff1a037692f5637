"""Signed tokens (itsdangerous, HMAC-SHA256): issuing and verifying them never touches the database."""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from vantage6nb.common.errors import AuthenticationError, TokenExpired

__all__ = ["TokenService", "hash_api_key", "load_or_create_secret", "new_api_key", "new_token_id"]


class TokenService:
    """Issue and verify access, refresh and container tokens.

    A token is the signed JSON of its claims (``sub``, ``type``, ``org``, ``kind``, ``exp``; for
    users ``sv``, the session version, and ``fam``, the login it comes from, plus ``jti`` on refresh
    tokens; for containers ``run_id``, ``task_id``, ``node_id``, ``collaboration_id``, ``job_id``).
    Verifying one checks only its signature, kind and expiry: whether its session still stands is
    ``server_app.sessions``' check.

    Examples
    --------
    >>> ts = TokenService("s" * 32, access_minutes=5, refresh_hours=1)
    >>> tok = ts.issue({"sub": 1, "type": "user", "org": 1}, kind="access")
    >>> ts.verify(tok)["sub"]
    1
    """

    def __init__(
        self, secret: str, *, access_minutes: int, refresh_hours: int, container_hours: int = 24
    ) -> None:
        self._serializer = URLSafeSerializer(
            secret, salt="v6nb-token", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.lifetimes = {
            "access": access_minutes * 60,
            "refresh": refresh_hours * 3600,
            "container": container_hours * 3600,
        }

    def issue(self, claims: dict[str, Any], *, kind: str, lifetime: int | None = None) -> str:
        """Sign ``claims`` as a token of ``kind`` ("access" or "refresh")."""
        seconds = lifetime if lifetime is not None else self.lifetimes[kind]
        payload = dict(claims, kind=kind, exp=int(time.time()) + seconds)
        return self._serializer.dumps(payload)

    def verify(self, token: str, *, kind: str = "access") -> dict[str, Any]:
        """Return the claims of a valid, unexpired token of ``kind``; raise AuthenticationError else."""
        try:
            claims = self._serializer.loads(token)
        except BadSignature as exc:
            raise AuthenticationError("Invalid token: log in again to get a new one.") from exc
        if not isinstance(claims, dict) or claims.get("kind") != kind:
            raise AuthenticationError(
                f"This is not an {kind} token: send the {kind} token you got at login."
            )
        if int(claims.get("exp", 0)) < time.time():
            raise TokenExpired(
                f"The {kind} token has expired: "
                + (
                    "use your refresh token at /api/token/refresh."
                    if kind == "access"
                    else "log in again."
                )
            )
        return claims


def new_token_id() -> str:
    """A fresh random id for a refresh token (``jti``) or a session family (``fam``)."""
    return secrets.token_urlsafe(24)


def new_api_key() -> str:
    """A fresh node API key (32 random bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """SHA-256 hex of an API key: what the database stores.

    Examples
    --------
    >>> len(hash_api_key("abc"))
    64
    """
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def load_or_create_secret(data_dir: Path) -> str:
    """The token secret kept in ``data_dir/secret_key`` (mode 0600), created on first use."""
    path = data_dir / "secret_key"
    if path.exists():
        secret = path.read_text(encoding="ascii").strip()
        if secret:
            return secret
    secret = secrets.token_urlsafe(48)
    write_private_file(path, secret + "\n")
    return secret


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (0600 from creation on)."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
