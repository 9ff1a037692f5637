"""Tokens: user login (lockout, rate limit, two-factor), node login, rotating refresh, logout,
two-factor enrolment, and container tokens for a node's running algorithm."""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
import time
from functools import lru_cache
from typing import Any

import pyotp
from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy import delete, select, update

from vantage6nb.common.errors import (
    AuthenticationError,
    Conflict,
    PermissionDenied,
    TotpRequired,
    ValidationError,
)

from ..audit import record, record_now
from ..bootstrap import hash_password, verify_password
from ..db import session
from ..error_handlers import error_response
from ..lifecycle import is_open
from ..login_limits import (
    LoginGuard,
    TooManyAttempts,
    account_failed,
    account_succeeded,
    account_wait,
    address_error,
    locked_error,
)
from ..models import Node, Organization, RefreshToken, Run, Task, User, username_key, utcnow
from ..permissions import (
    Identity,
    allowed,
    identity_from_claims,
    is_node_run,
    require,
    require_type,
)
from ..request_parsing import get_or_404, json_body, validated
from ..serializers import node_json, user_json
from ..sessions import (
    SESSION_ENDED,
    SessionCache,
    end_sessions,
    forget_after_commit,
    forget_all_after_commit,
    totp_active,
)
from ..state import state
from ..tokens import hash_api_key, new_token_id

__all__ = [
    "TotpRequired",
    "bp",
    "issue_container_token",
    "issue_user_tokens",
    "login_guard",
    "node_claims",
    "user_claims",
    "user_identity",
]

bp = Blueprint("auth", __name__)
log = logging.getLogger("server_app.auth")

WRONG_CREDENTIALS = "Wrong username or password (or two-factor code): check them and try again."
_PENDING = "pending:"


@bp.record_once
def _setup(setup: BlueprintSetupState) -> None:
    # one session cache and login guard per app, shared by the REST resources and socket.io
    app: Flask = setup.app
    st = app.extensions["v6nb"]
    cfg = st.config
    cache = SessionCache(st.db, ttl=float(cfg["session_cache_s"]))
    app.extensions["v6nb_sessions"] = cache
    st.hub.sessions = cache
    app.extensions["v6nb_login"] = LoginGuard(
        max_failures=cfg["login_max_failures"],
        lockout_s=cfg["login_lockout_s"],
        rate_per_minute=cfg["login_rate_per_minute"],
    )
    _dummy_hash()  # made now, so even the first unknown username costs one hash, not two


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # unknown usernames are checked against this, so they cost what a real account costs
    return hash_password(secrets.token_urlsafe(16))


def login_guard() -> LoginGuard:
    return current_app.extensions["v6nb_login"]


def user_claims(user: User, family: str) -> dict[str, Any]:
    """Claims of a user's tokens (``sv``: the session version; ``fam``: the login)."""
    return {
        "sub": user.id,
        "type": "user",
        "org": user.organization_id,
        "admin": user.is_admin,
        "name": user.username,
        "sv": user.session_version or 0,
        "fam": family,
    }


def user_identity(user: User) -> Identity:
    """The Identity a token of ``user`` would carry (for the audit of a login)."""
    return identity_from_claims(user_claims(user, ""))


def node_claims(node: Node) -> dict[str, Any]:
    """Claims of a node's tokens."""
    return {
        "sub": node.id,
        "type": "node",
        "org": node.organization_id,
        "node_id": node.id,
        "collaboration_id": node.collaboration_id,
        "name": node.name,
    }


def issue_user_tokens(s: Any, user: User, family: str | None = None) -> dict[str, str]:
    """A new access and refresh token for ``user`` in ``family`` (None: a new login); the refresh
    token's row is added to ``s`` (committed by the caller)."""
    tokens = state().tokens
    fam, jti, now = family or new_token_id(), new_token_id(), utcnow()
    s.add(
        RefreshToken(
            jti=jti,
            user_id=user.id,
            family=fam,
            issued_at=now,
            expires_at=now + dt.timedelta(seconds=tokens.lifetimes["refresh"]),
        )
    )
    claims = user_claims(user, fam)
    return {
        "access_token": tokens.issue(claims, kind="access"),
        "refresh_token": tokens.issue({**claims, "jti": jti}, kind="refresh"),
    }


def _too_many(err: TooManyAttempts) -> tuple[Response, int]:
    resp, status = error_response(err)
    resp.headers["Retry-After"] = str(err.retry_after)
    return resp, status


def _failed(username: str, address: str, reason: str) -> None:
    log.warning("login failed for %r from %s: %s", username[:255], address, reason)
    record_now(
        state().db,
        "login_failed",
        target=f"user {username[:200]}",
        outcome="denied",
        detail={"reason": reason},
        address=address,
    )


def _count_failure(user: User | None, key: str, address: str) -> None:
    guard = login_guard()
    guard.address_failed(address)
    if user is None:
        guard.ghost_failed(key)
    else:
        cfg = state().config
        account_failed(
            state().db,
            user.id,
            max_failures=cfg["login_max_failures"],
            lockout_s=cfg["login_lockout_s"],
        )


def totp_step(secret: str | None, code: Any) -> int | None:
    """The 30-second step whose 6-digit code of ``secret`` ``code`` is (the current step or an
    adjacent one, for clock drift); None when it is none of them."""
    if not secret or not isinstance(code, str):
        return None
    code = code.replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret.removeprefix(_PENDING))
    now = time.time()
    for offset in (0, -1, 1):
        at = now + offset * totp.interval
        if hmac.compare_digest(totp.at(at), code):
            return int(at // totp.interval)
    return None


def totp_matches(secret: str | None, code: Any) -> bool:
    """Whether ``code`` is the current (or an adjacent) 6-digit code of ``secret``."""
    return totp_step(secret, code) is not None


@bp.post("/token/user")
def login_user() -> Any:
    body = validated(
        json_body(),
        {"username": str, "password": str},
        {"totp": str},
        strings={"username": 255, "password": 1024, "totp": 32},
    )
    address = request.remote_addr or "unknown"
    username, key = body["username"], username_key(body["username"].strip())
    if (wait := login_guard().address_wait(address)) is not None:
        _failed(username, address, "too many failures from this address")
        return _too_many(address_error(wait))
    s = session()
    user = s.scalar(select(User).where(User.username_key == key))
    # the same work whether or not the account exists: one password hash check
    good = verify_password(user.password_hash if user else _dummy_hash(), body["password"])
    good = good and user is not None
    wait = account_wait(user) if user is not None else login_guard().ghost_wait(key)
    if wait is not None:
        if not good:
            login_guard().address_failed(address)
        _failed(username, address, "account locked")
        return _too_many(locked_error(wait))
    if not good:
        _count_failure(user, key, address)
        _failed(username, address, "unknown username" if user is None else "wrong password")
        raise AuthenticationError(WRONG_CREDENTIALS)
    assert user is not None
    if totp_active(user.totp_secret):
        if not body.get("totp"):
            raise TotpRequired(
                "This account uses two-factor login: send the 6-digit code from your "
                "authenticator app as 'totp' with your username and password.",
                errors={"totp": "required"},
            )
        step = totp_step(user.totp_secret, body["totp"])
        if step is None:
            _count_failure(user, key, address)
            _failed(username, address, "wrong two-factor code")
            raise AuthenticationError(WRONG_CREDENTIALS)
        if user.totp_last_step is not None and step <= user.totp_last_step:
            _failed(username, address, "two-factor code used again")
            raise AuthenticationError(
                "This two-factor code has been used already: wait for the next one (codes "
                "change every 30 seconds) and log in with it.",
                errors={"totp": "used already"},
            )
        user.totp_last_step = step  # single use: a replayed code is refused
    account_succeeded(user)
    # refresh tokens expired for longer than an access token lives can no longer matter
    cutoff = utcnow() - dt.timedelta(seconds=state().tokens.lifetimes["access"])
    s.execute(
        delete(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.expires_at < cutoff
        )
    )
    pair = issue_user_tokens(s, user)
    record(s, "login", actor=user_identity(user), target=f"user {user.id}", address=address)
    org = s.get(Organization, user.organization_id)
    must_enrol = bool(org and org.require_totp) and not totp_active(user.totp_secret)
    s.commit()
    out: dict[str, Any] = {**pair, "user": user_json(user)}
    if must_enrol:
        out["totp_enrolment_required"] = True
        out["msg"] = (
            "Your organization requires two-factor login: enrol with "
            f"POST /api/user/{user.id}/totp before anything else."
        )
    return out


@bp.post("/token/node")
def login_node() -> Any:
    body = validated(json_body(), {"api_key": str}, strings={"api_key": 1024})
    node = session().scalar(select(Node).where(Node.api_key_hash == hash_api_key(body["api_key"])))
    if node is None:
        raise AuthenticationError(
            "Unknown API key: check api_key in the node configuration (it is shown once, when the node is created)."
        )
    tokens = state().tokens
    claims = node_claims(node)
    return {
        "access_token": tokens.issue(claims, kind="access"),
        "refresh_token": tokens.issue(claims, kind="refresh"),
        "node": node_json(node),
    }


@bp.post("/token/refresh")
def refresh() -> Any:
    body = validated(json_body(), {"refresh_token": str}, strings={"refresh_token": 4096})
    claims = state().tokens.verify(body["refresh_token"], kind="refresh")
    s = session()
    sub = claims.get("sub")
    if claims.get("type") == "node" and isinstance(sub, int):
        node = s.get(Node, sub)
        if node is None:
            raise AuthenticationError("This node no longer exists on the server.")
        return {"access_token": state().tokens.issue(node_claims(node), kind="access")}
    if claims.get("type") != "user" or not isinstance(sub, int):
        raise AuthenticationError("This refresh token cannot be refreshed: log in again.")
    user = s.get(User, sub)
    if user is None:
        raise AuthenticationError("This account no longer exists: log in again with one that does.")
    row = s.scalar(select(RefreshToken).where(RefreshToken.jti == str(claims.get("jti", ""))))
    if row is None or row.user_id != user.id or row.revoked:
        raise AuthenticationError(SESSION_ENDED)
    if claims.get("sv") != user.session_version:
        raise AuthenticationError(SESSION_ENDED)
    now = utcnow()
    marked = s.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if marked != 1:
        # A used refresh token again: a copy is in other hands (or a client kept an old one).
        s.execute(
            update(RefreshToken)
            .where(RefreshToken.family == row.family)
            .values(revoked=True)
            .execution_options(synchronize_session=False)
        )
        forget_after_commit(s, user.id)
        record(
            s,
            "token_reuse",
            actor=user_identity(user),
            target=f"user {user.id}",
            outcome="denied",
            detail={"family": row.family[:8]},
        )
        s.commit()
        log.warning("refresh token of user %s used twice: session family revoked", user.id)
        raise AuthenticationError(
            "This refresh token was used before, so a copy of it may be in other hands: every "
            "token of this session has been revoked. Log in again (and change your password if "
            "you did not refresh twice yourself)."
        )
    pair = issue_user_tokens(s, user, family=row.family)
    s.commit()
    return pair


def _optional_body() -> dict[str, Any]:
    return json_body() if request.get_data(cache=True).strip() else {}


@bp.post("/token/revoke")
def revoke_token() -> Any:
    ident = require_type("user")
    body = validated(
        _optional_body(), {}, {"refresh_token": str, "all": bool}, strings={"refresh_token": 4096}
    )
    s = session()
    user = get_or_404(s, User, ident.id)
    family = ident.claims.get("fam")
    if "refresh_token" in body:
        other = state().tokens.verify(body["refresh_token"], kind="refresh")
        if other.get("type") != "user" or other.get("sub") != user.id:
            raise PermissionDenied(
                "This refresh token is not yours: send your own, or leave it out to end the "
                "session of your access token."
            )
        family = other.get("fam")
    revoked = 0
    if not body.get("all") and isinstance(family, str) and family:
        revoked = s.execute(
            update(RefreshToken)
            .where(RefreshToken.family == family, RefreshToken.user_id == user.id)
            .values(revoked=True)
            .execution_options(synchronize_session=False)
        ).rowcount
        forget_after_commit(s, user.id)
    everything = bool(body.get("all")) or not revoked
    if everything:
        end_sessions(s, user)
    record(s, "logout", actor=ident, target=f"user {user.id}", detail={"all": everything})
    s.commit()
    what = "every session of your account has" if everything else "this session has"
    return {"msg": f"Logged out: {what} ended; log in again to continue."}


# two-factor login ------------------------------------------------------------------------------


def _own_user(user_id: int) -> tuple[Identity, User]:
    ident = require_type("user")
    if ident.id != user_id:
        raise PermissionDenied(
            "Only the account's owner can enrol it in two-factor login: log in as that user."
        )
    return ident, get_or_404(session(), User, user_id)


@bp.post("/user/<int:user_id>/totp")
def totp_start(user_id: int) -> Any:
    ident, user = _own_user(user_id)
    validated(_optional_body(), {}, {})
    if totp_active(user.totp_secret):
        raise Conflict(
            "Two-factor login is already on for this account: to replace it, turn it off with "
            f"DELETE /api/user/{user_id}/totp (sending the current code as 'totp'), then enrol again.",
            errors={"totp": "already on"},
        )
    secret = pyotp.random_base32()
    user.totp_secret = _PENDING + secret
    session().commit()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name="vantage6nb")
    return {
        "secret": secret,
        "uri": uri,
        "msg": "Add this secret (or the URI, as a QR code) to your authenticator app, then send "
        f"its 6-digit code to POST /api/user/{user_id}/totp/confirm as 'code'.",
    }


@bp.post("/user/<int:user_id>/totp/confirm")
def totp_confirm(user_id: int) -> Any:
    ident, user = _own_user(user_id)
    body = validated(json_body(), {"code": str}, strings={"code": 32})
    if totp_active(user.totp_secret):
        raise Conflict("Two-factor login is already on for this account.")
    if not user.totp_secret:
        raise Conflict(
            f"No enrolment started: POST /api/user/{user_id}/totp first, then confirm its code.",
            errors={"code": "no enrolment"},
        )
    if not totp_matches(user.totp_secret, body["code"]):
        raise ValidationError(
            "The code does not match: send the current 6-digit code of the secret you were given "
            "(check the clock of the device that shows it).",
            errors={"code": "does not match"},
        )
    s = session()
    user.totp_secret = user.totp_secret.removeprefix(_PENDING)
    forget_after_commit(s, user.id)
    record(s, "totp_enabled", actor=ident, target=f"user {user.id}")
    s.commit()
    return {"msg": "Two-factor login is on: from now on, log in with the code as 'totp'."}


@bp.delete("/user/<int:user_id>/totp")
def totp_off(user_id: int) -> Any:
    ident = require_type("user")
    s = session()
    user = get_or_404(s, User, user_id)
    # someone whose user:edit rule covers the account beyond their own needs no code
    manages = allowed(ident, "user", "edit", org_id=user.organization_id)
    if not manages and ident.id != user_id:
        raise PermissionDenied("You may only turn off two-factor login for your own account.")
    if not manages:
        body = validated(_optional_body(), {}, {"totp": str}, strings={"totp": 32})
        if totp_active(user.totp_secret) and not totp_matches(user.totp_secret, body.get("totp")):
            raise PermissionDenied(
                "Send the current 6-digit code as 'totp' to turn two-factor login off (lost the "
                "device? ask an administrator).",
                errors={"totp": "required" if not body.get("totp") else "does not match"},
            )
    user.totp_secret = None
    forget_after_commit(s, user.id)
    record(s, "user_updated", actor=ident, target=f"user {user.id}", detail={"totp": "off"})
    s.commit()
    return {"msg": f"Two-factor login is off for user {user_id}."}


@bp.post("/organization/<int:org_id>/require-totp")
def require_totp(org_id: int) -> Any:
    ident = require("organization", "edit")
    body = validated(json_body(), {"require_totp": bool})
    s = session()
    org = get_or_404(s, Organization, org_id)
    require("organization", "edit", org_id=org.id, ident=ident)
    org.require_totp = body["require_totp"]
    forget_all_after_commit(s)
    record(
        s,
        "totp_enabled",
        actor=ident,
        target=f"organization {org.id}",
        detail={"require_totp": org.require_totp},
    )
    s.commit()
    state_word = "must now enrol in" if org.require_totp else "no longer need"
    return {
        "id": org.id,
        "require_totp": org.require_totp,
        "msg": f"Users of organization '{org.name}' without two-factor login {state_word} it.",
    }


# container tokens ------------------------------------------------------------------------------


@bp.post("/token/container")
def container_token() -> Any:
    ident = require_type("node")
    body = validated(json_body(), {"run_id": int}, ids=("run_id",))
    s = session()
    run = get_or_404(s, Run, body["run_id"])
    task = s.get(Task, run.task_id)
    assert task is not None
    if not is_node_run(ident, run, task):
        raise PermissionDenied(f"Run {run.id} is not a run of this node.")
    return {"container_token": issue_container_token(ident, run, task)}


def issue_container_token(ident: Identity, run: Run, task: Task) -> str:
    """A container token for ``run`` of this node (``ident``); Conflict when the run is final.

    A JWT that vantage6's ``AlgorithmClient`` decodes (see :class:`server_app.tokens.TokenService`).
    """
    if not is_open(run.status):
        raise Conflict(
            f"Run {run.id} is already {run.status}: no container token for a finished run."
        )
    claims = {
        "sub": ident.id,
        "type": "container",
        "org": ident.org_id,
        "run_id": run.id,
        "task_id": task.id,
        "node_id": ident.id,
        "collaboration_id": task.collaboration_id,
        "job_id": task.job_id,
        "image": task.image,
        # what vantage6's AlgorithmClient hands on to the subtasks it creates (in the JWT's sub)
        "databases": [dict(d) for d in task.databases or [] if isinstance(d, dict)],
    }
    tokens = state().tokens
    return tokens.issue(claims, kind="access", lifetime=tokens.lifetimes["container"])
