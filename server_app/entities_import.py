"""``v6nb server import``: create organizations, collaborations, users and nodes from a YAML file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from vantage6nb.common.errors import ConfigurationError

from .bootstrap import hash_password
from .models import Collaboration, Node, Organization, User
from .rules import give_default_roles
from .tokens import hash_api_key, new_api_key

__all__ = ["import_entities"]


def _items(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = doc.get(key) or []
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and i.get("name" if key != "users" else "username") for i in items
    ):
        raise ConfigurationError(
            f"'{key}' must be a list of mappings, each with a name.", errors={key: "bad entries"}
        )
    return items


def import_entities(cfg: dict[str, Any], path: str | Path) -> Iterator[str]:
    """Create what ``path`` describes (existing names are kept) and yield one line per created entity.

    The YAML holds ``organizations: [{name, domain?}]``, ``collaborations: [{name, organizations:
    [names], encrypted?}]``, ``users: [{username, password, organization, is_admin?, email?}]``; every
    member of a collaboration gets a node, whose API key is printed once.

    Examples
    --------
    >>> for line in import_entities(load_config("server.yaml"), "entities.yaml"):  # doctest: +SKIP
    ...     print(line)
    """
    from .app import create_app

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"Cannot read entities file {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigurationError(f"Entities file {path} must hold a mapping.")
    app = create_app(cfg)
    db = app.extensions["v6nb_db"]
    with db.new_session() as s:
        orgs = {o.name: o for o in s.scalars(select(Organization))}
        for item in _items(doc, "organizations"):
            if item["name"] not in orgs:
                org = Organization(name=str(item["name"]), domain=item.get("domain"))
                s.add(org)
                s.flush()
                orgs[org.name] = org
                yield f"organization {org.id}: {org.name}"

        def org_named(name: str) -> Organization:
            if name not in orgs:
                raise ConfigurationError(
                    f"Unknown organization {name!r} in {path}: list it under organizations."
                )
            return orgs[name]

        for item in _items(doc, "users"):
            if s.scalar(select(User).where(User.username == str(item["username"]))) is None:
                user = User(
                    username=str(item["username"]),
                    password_hash=hash_password(str(item["password"])),
                    organization_id=org_named(str(item["organization"])).id,
                    is_admin=bool(item.get("is_admin", False)),
                    email=item.get("email"),
                )
                s.add(user)
                give_default_roles(s, user, is_admin=user.is_admin)
                yield f"user {user.id}: {user.username}"
        for item in _items(doc, "collaborations"):
            collab = s.scalar(select(Collaboration).where(Collaboration.name == str(item["name"])))
            if collab is None:
                collab = Collaboration(
                    name=str(item["name"]), encrypted=bool(item.get("encrypted", False))
                )
                s.add(collab)
                yield f"collaboration: {collab.name}"
            for name in item.get("organizations") or []:
                org = org_named(str(name))
                if org not in collab.organizations:
                    collab.organizations.append(org)
            s.flush()
            for org in collab.organizations:
                exists = s.scalar(
                    select(Node).where(
                        Node.organization_id == org.id, Node.collaboration_id == collab.id
                    )
                )
                if exists is None:
                    key = new_api_key()
                    node = Node(
                        name=f"{org.name} @ {collab.name}",
                        organization_id=org.id,
                        collaboration_id=collab.id,
                        api_key_hash=hash_api_key(key),
                    )
                    s.add(node)
                    s.flush()
                    yield f"node {node.id} ({node.name}): api_key {key}"
        s.commit()
