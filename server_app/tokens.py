"""Signed tokens (itsdangerous, HMAC-SHA256): issuing and verifying them never touches the database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from vantage6nb.common.errors import AuthenticationError, TokenExpired

__all__ = [
    "CONTAINER_SUBJECT_KEYS",
    "TokenService",
    "hash_api_key",
    "load_or_create_secret",
    "new_api_key",
    "new_token_id",
]

#: What vantage6's ``AlgorithmClient`` reads from a container token's ``sub``.
CONTAINER_SUBJECT_KEYS = (
    "vantage6_client_type",
    "image",
    "databases",
    "node_id",
    "collaboration_id",
    "organization_id",
    "task_id",
    "study_id",
    "store_id",
)
_JWT_HEADER = {"alg": "HS256", "typ": "JWT"}


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

        # a key of its own for JWTs, so neither kind of token can pass for the other
        self._jwt_key = hmac.new(
            secret.encode("utf-8"), b"v6nb-container-jwt", hashlib.sha256
        ).digest()

    def issue(self, claims: dict[str, Any], *, kind: str, lifetime: int | None = None) -> str:
        """Sign ``claims`` as a token of ``kind`` ("access" or "refresh").

        Claims of ``type`` "container" become a JWT whose ``sub`` is vantage6's container
        identity (see the class docstring).

        Examples
        --------
        >>> ts = TokenService("s" * 32, access_minutes=5, refresh_hours=1)
        >>> tok = ts.issue({"sub": 7, "type": "container", "org": 2, "run_id": 9, "task_id": 4,
        ...                 "node_id": 7, "collaboration_id": 1, "image": "v6/avg"}, kind="access")
        >>> tok.count("."), ts.verify(tok)["run_id"], ts.verify(tok)["sub"]
        (2, 9, 7)
        """
        seconds = lifetime if lifetime is not None else self.lifetimes[kind]
        now = int(time.time())
        payload = dict(claims, kind=kind, exp=now + seconds)
        if claims.get("type") == "container":
            return self._jwt(payload, now)
        return self._serializer.dumps(payload)

    def _jwt(self, payload: dict[str, Any], now: int) -> str:
        subject = {
            "vantage6_client_type": "container",
            "image": payload.get("image"),
            "databases": payload.get("databases") or [],
            "node_id": payload.get("node_id"),
            "collaboration_id": payload.get("collaboration_id"),
            "organization_id": payload.get("org"),
            "task_id": payload.get("task_id"),
            "study_id": None,
            "store_id": None,
        }
        body = {**payload, "node": payload.get("sub"), "sub": subject, "iat": now, "nbf": now}
        body.pop("databases", None)  # once, in sub
        signing_input = _b64(_json(_JWT_HEADER)) + "." + _b64(_json(body))
        signature = hmac.new(self._jwt_key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    def _verify_jwt(self, token: str) -> dict[str, Any]:
        invalid = AuthenticationError("Invalid token: log in again to get a new one.")
        head, body, signature = token.split(".")
        try:
            signed = f"{head}.{body}".encode("ascii")
            expected = hmac.new(self._jwt_key, signed, hashlib.sha256).digest()
            given = _unb64(signature)
            if not hmac.compare_digest(given, expected):
                raise invalid
            header = json.loads(_unb64(head))
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError) as exc:
            raise invalid from exc
        if header != _JWT_HEADER or not isinstance(payload, dict):  # only what we issue
            raise invalid
        subject = payload.get("sub")
        if not isinstance(subject, dict):
            raise invalid
        claims = {k: v for k, v in payload.items() if k not in ("sub", "node", "iat", "nbf")}
        claims["sub"] = payload.get("node")
        claims["databases"] = subject.get("databases") or []
        return claims

    def verify(self, token: str, *, kind: str = "access") -> dict[str, Any]:
        """Return the claims of a valid, unexpired token of ``kind``; raise AuthenticationError else."""
        try:
            # a JWT (a container token) has three parts; itsdangerous has two, or three when
            # compressed, and then it starts with "."
            if token.count(".") == 2 and not token.startswith("."):
                claims = self._verify_jwt(token)
            else:
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


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or len(text) > 64 * 1024:
        raise ValueError("bad token segment")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
