"""First-start set-up: the data folder, the token secret, the default roles and the root administrator account."""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .db import Database
from .models import Organization, User
from .rules import ensure_defaults, role_ids_of, set_roles
from .tokens import load_or_create_secret, write_private_file

__all__ = [
    "ROOT_ORGANIZATION",
    "ensure_root",
    "hash_password",
    "prepare_data_dir",
    "secret_for",
    "verify_password",
]

log = logging.getLogger("server_app.bootstrap")

ROOT_ORGANIZATION = "root"
_HASH_METHOD = "scrypt:16384:8:1"


def hash_password(password: str) -> str:
    """A salted scrypt hash (werkzeug format)."""
    return generate_password_hash(password, method=_HASH_METHOD)


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches the stored hash."""
    return check_password_hash(stored, password)


def prepare_data_dir(cfg: dict[str, Any]) -> Path:
    """Create the data folder (mode 0700 when new)."""
    path = Path(cfg["data_dir"])
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def secret_for(cfg: dict[str, Any], data_dir: Path) -> str:
    """The configured secret key, else the one kept in the data folder."""
    return str(cfg["secret_key"]) if cfg["secret_key"] else load_or_create_secret(data_dir)


def ensure_root(db: Database, cfg: dict[str, Any], data_dir: Path) -> None:
    """Create the root administrator (and its organization) once; apply a configured password."""
    for attempt in range(1, 6):
        try:
            _ensure_root(db, cfg, data_dir)
            return
        except IntegrityError:
            # Another instance on the same database created a rule, a role, the organization or
            # the account at the same moment: look again, and use what it made.
            if attempt == 5:
                raise
            time.sleep(0.1 * attempt)


def _ensure_root(db: Database, cfg: dict[str, Any], data_dir: Path) -> None:
    username, password = str(cfg["root_username"]), str(cfg["root_password"])
    with db.new_session() as s:
        roles = ensure_defaults(s)  # the rule table and default roles of this release
        s.commit()
        user = s.scalar(select(User).where(User.username == username))
        if user is not None:
            if roles["root"].id not in role_ids_of(s, user.id):
                # the root account always holds root (as it always had is_admin)
                set_roles(s, user, [*role_ids_of(s, user.id), roles["root"].id])
                s.commit()
            if password and not verify_password(user.password_hash, password):
                user.password_hash, user.is_admin = hash_password(password), True
                s.commit()
                log.warning(
                    "root account '%s': password reset to the configured root_password", username
                )
            return
        org = s.scalar(select(Organization).where(Organization.name == ROOT_ORGANIZATION))
        if org is None:
            org = Organization(name=ROOT_ORGANIZATION, domain=None)
            s.add(org)
            s.flush()
        if not password:
            password = secrets.token_urlsafe(18)
            path = data_dir / "root_password.txt"
            write_private_file(path, password + "\n")
            log.warning(
                "created root account '%s'; its generated password is in %s", username, path
            )
        else:
            log.info("created root account '%s' with the configured root_password", username)
        user = User(
            username=username,
            password_hash=hash_password(password),
            organization_id=org.id,
            is_admin=True,
        )
        s.add(user)
        s.flush()
        set_roles(s, user, [roles["root"].id])
        s.commit()
