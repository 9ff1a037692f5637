"""``Directory``: collaborations, organizations and nodes by id or name, with the short-lived cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..common.errors import NotFound, ValidationError
from ._http import Transport

__all__ = ["COLLABORATIONS_TTL_S", "Directory"]

# How long a task creation trusts the last collaboration listing (saves a request per task in a
# loop; a name or organization it does not know triggers a fresh listing at once).
COLLABORATIONS_TTL_S = 5.0


class Directory:
    """Resolves the names a researcher types into the ids the server wants, caching listings.

    Parameters
    ----------
    transport : Transport
        Where the listings come from.
    logged_in : callable
        Returns True once a user is logged in; organization names are fetched only then.
    observe : callable, optional
        Called with every collaboration (listing or single record) the server sends, e.g. to
        remember the encrypted ones.

    Examples
    --------
    >>> directory = Directory(transport, logged_in=lambda: True)  # doctest: +SKIP
    >>> collab = directory.collaboration("Demo")  # doctest: +SKIP
    >>> directory.organizations_in(collab, ["Leiden"])  # doctest: +SKIP
    [1]
    """

    def __init__(
        self,
        transport: Transport,
        *,
        logged_in: Callable[[], bool],
        observe: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self._transport = transport
        self._logged_in = logged_in
        self._observe = observe or (lambda rows: None)
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- collaborations -------------------------------------------------------------------------
    def collaborations(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The collaborations listing, reused for ``COLLABORATIONS_TTL_S`` unless ``fresh``."""
        now = time.monotonic()
        hit = self._cache.get("collaborations")
        if not fresh and hit is not None and now - hit[0] < COLLABORATIONS_TTL_S:
            return [dict(c) for c in hit[1]]
        rows = list(self._transport.paginate("/collaboration"))
        self._observe(rows)
        self._store("collaborations", (now, rows))
        return [dict(c) for c in rows]

    def collaboration(self, ref: int | str | None, *, fresh: bool = False) -> dict[str, Any]:
        """The collaboration by id or name; None means the only one of your organization.

        A listing a few seconds old may answer (``fresh=True``: never); an unknown name or id is
        always looked up again.
        """
        if isinstance(ref, bool):
            raise ValidationError("collaboration must be an id or a name.")
        if isinstance(ref, int):
            for c in [] if fresh else self.collaborations():
                if c["id"] == ref:
                    return c
            one = dict(self._transport.request("GET", f"/collaboration/{ref}"))
            self._observe([one])
            return one
        mine = self.collaborations(fresh=fresh)
        if isinstance(ref, str) and not fresh and all(c["name"] != ref for c in mine):
            mine = self.collaborations(fresh=True)
        names = ", ".join(repr(c["name"]) for c in mine) or "none"
        if ref is None:
            if len(mine) == 1:
                return dict(mine[0])
            if not mine:
                raise NotFound(
                    "Your organization is in no collaboration: ask an administrator to add it to one."
                )
            raise ValidationError(
                f"Your organization is in {len(mine)} collaborations ({names}): pass collaboration=<name or id>.",
                errors={"collaboration": "required when there is more than one"},
            )
        for c in mine:
            if c["name"] == ref:
                return dict(c)
        raise NotFound(
            f"No collaboration named '{ref}'. Yours are: {names}.",
            errors={"collaboration": "unknown name"},
        )

    def resolve(
        self,
        collaboration: int | str | None,
        organizations: Sequence[int | str] | int | str | None,
    ) -> tuple[dict[str, Any], list[int]]:
        """The collaboration and the ids of the organizations picked in it.

        A membership a few seconds old may be out of date: an organization it does not know is
        looked up again in a fresh listing before it is refused.
        """
        collab = self.collaboration(collaboration)
        try:
            return collab, self.organizations_in(collab, organizations)
        except NotFound:
            collab = self.collaboration(collaboration, fresh=True)
            return collab, self.organizations_in(collab, organizations)

    # -- organizations --------------------------------------------------------------------------
    def organizations_in(
        self, collaboration: dict[str, Any], refs: Sequence[int | str] | int | str | None
    ) -> list[int]:
        """Organization ids (by id or name) that must belong to ``collaboration``; None: all."""
        members = [int(i) for i in collaboration.get("organization_ids") or []]
        if refs is None:
            return members
        if isinstance(refs, (int, str)):
            refs = [refs]
        names = self.organization_names(need=members)
        by_name = {names.get(i): i for i in members}
        out: list[int] = []
        for ref in refs:
            org_id = by_name.get(ref) if isinstance(ref, str) else ref
            if org_id is None or org_id not in members:
                listing = ", ".join(f"'{names.get(i, i)}' ({i})" for i in members)
                raise NotFound(
                    f"Organization {ref!r} is not in collaboration '{collaboration.get('name')}'. "
                    f"Its organizations are: {listing}.",
                    errors={"organizations": f"unknown organization {ref!r}"},
                )
            if org_id not in out:
                out.append(int(org_id))
        if not out:
            raise ValidationError("organizations is empty: name at least one organization.")
        return out

    def organization_names(
        self, *, refresh: bool = True, need: Sequence[int] = ()
    ) -> dict[int, str]:
        """``{organization id: name}``; listed again when ``need`` names an id it does not know."""
        names = self._cache.get("organization_names")
        stale = names is None or any(i not in names for i in need)
        if stale and refresh and self._logged_in():
            rows = self._transport.paginate("/organization")
            names = self.remember_organizations(rows)
        return dict(names or {})

    def remember_organizations(self, rows: Sequence[dict[str, Any]]) -> dict[int, str]:
        """Keep the names of a full organization listing (one the caller already has)."""
        return dict(self._store("organization_names", {int(r["id"]): r["name"] for r in rows}))

    # -- nodes ----------------------------------------------------------------------------------
    def nodes_by_organization(self, collaboration_id: int) -> dict[int, dict[str, Any]]:
        """The nodes of a collaboration by organization id (never cached: status changes)."""
        rows = self._transport.paginate("/node", {"collaboration_id": collaboration_id})
        return {
            int(r["organization_id"]): r
            for r in rows
            if r.get("collaboration_id") == collaboration_id
        }

    def node_names(self, collaboration_id: int) -> dict[int, str]:
        """``{node id: name}`` of a collaboration's nodes."""
        return {
            int(n["id"]): n.get("name") or ""
            for n in self.nodes_by_organization(collaboration_id).values()
        }

    # -- cache ----------------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every listing (on login as someone else)."""
        with self._lock:
            self._cache.clear()

    def _store(self, key: str, value: Any) -> Any:
        with self._lock:
            self._cache[key] = value
        return value
