"""The node's disclosure gate: guarded functions before a run, the output check after it.

Before a run: a request naming a denied column, or a federated part asked for directly (not as
a subtask of an entry point of the same image), is refused. After it: the output is checked
against the node's :class:`~vantage6nb.common.disclosure.DisclosurePolicy`
(:func:`~vantage6nb.common.release.check_output`) before anything is encrypted, and only what
the check released is returned. Every decision goes into the audit log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vantage6nb.common.disclosure import ENTRY_POINT, FEDERATED, DisclosurePolicy, Refusal
from vantage6nb.common.images import image_matches, parse_image
from vantage6nb.common.release import check_output, check_request, is_typed

from .audit import AuditLog

__all__ = ["DisclosureGate", "Screened"]

log = logging.getLogger(__name__)


@dataclass
class Screened:
    """A run's standing before it starts: refused (``refusal``), and whether it is an entry point."""

    refusal: Refusal | None = None
    entry_point: bool = False
    role: str | None = None


class DisclosureGate:
    """Applies one node's policy to its runs.

    Parameters
    ----------
    policy
        The node's disclosure policy.
    functions
        ``(image, digest) -> {function: role} | None``: what the image declares (the runtime's
        :meth:`~node_app.runtimes.base.Runtime.functions`).
    parent_image
        ``(task_id) -> image``: the image of a parent task (asked of the server).
    audit
        The node's audit log.
    """

    def __init__(
        self,
        policy: DisclosurePolicy,
        *,
        functions: Callable[[str, str | None], dict[str, str] | None],
        parent_image: Callable[[int], str | None],
        audit: AuditLog | None = None,
    ) -> None:
        self.policy = policy
        self.functions = functions
        self.parent_image = parent_image
        self.audit = audit

    def screen(
        self,
        rid: int,
        task: dict[str, Any],
        method: str | None,
        asked: bytes,
        digest: str | None,
    ) -> Screened:
        """Decide, before the algorithm starts, whether the run may start at all."""
        image = str(task.get("image") or "")
        if not self.policy.enabled:
            return Screened()
        refusal = check_request(asked, self.policy)
        if refusal is not None:
            self._record(rid, task, "denied_column", False, refusal.what)
            return Screened(refusal)
        roles = self.functions(image, digest) or {}
        role = roles.get(method or "") if method else None
        screened = Screened(entry_point=role == ENTRY_POINT, role=role)
        if role != FEDERATED:
            return screened
        if image_matches(image, self.policy.direct_parts):
            self._record(rid, task, "direct_part", True, "allowed by disclosure.direct_parts")
            return screened
        parent_id = task.get("parent_id")
        parent = self.parent_image(int(parent_id)) if parent_id is not None else None
        if parent is not None and parse_image(parent).name == parse_image(image).name:
            self._record(rid, task, "direct_part", True, f"subtask of task {parent_id}")
            return screened
        entries = sorted(n for n, r in roles.items() if r == ENTRY_POINT)
        hint = f" ({', '.join(entries)})" if entries else ""
        screened.refusal = Refusal(
            "direct_part",
            None,
            f"'{method}' is a federated part of {parse_image(image).name}: it runs only as a "
            f"subtask of one of the image's entry points{hint}; ask for that instead (the "
            "node's administrator can allow direct calls with `disclosure.direct_parts`)",
        )
        self._record(rid, task, "direct_part", False, screened.refusal.what)
        return screened

    def release(
        self, rid: int, image: str, output: Path, screened: Screened, asked: bytes
    ) -> tuple[Path | None, Refusal | None]:
        """Check a completed run's ``output``: the file to return (the output itself, or the
        released form next to it), or the refusal."""
        with output.open("rb") as fh:
            head = fh.read(64)
        if self.policy.enabled and is_typed(head):
            data = output.read_bytes()
        else:  # untyped or unchecked: the decision needs no more than the head
            data = head
        release = check_output(
            data, self.policy, image=image, entry_point=screened.entry_point, asked=asked
        )
        if self.audit is not None:
            self.audit.record(
                "disclosure",
                run_id=rid,
                image=image,
                outcome="refused" if release.refusal else "released",
                rule=release.refusal.rule if release.refusal else None,
                decisions=release.decisions,
                columns=release.columns,
                detail=release.refusal.local if release.refusal else "",
            )
        if release.refusal is not None:
            log.warning(
                "run %s: nothing released: %s%s",
                rid,
                release.refusal.what,
                f" [{release.refusal.local}]" if release.refusal.local else "",
            )
            return None, release.refusal
        if release.data is data and data is head:  # untyped and trusted, or the policy is off
            if not self.policy.enabled:
                log.warning("run %s: released unchecked (disclosure.enabled is false)", rid)
            return output, None
        released = output.with_name("released.json")
        tmp = released.with_name(released.name + ".partial")
        tmp.write_bytes(release.data or b"")
        os.replace(tmp, released)
        return released, None

    def _record(self, rid: int, task: dict[str, Any], rule: str, allowed: bool, why: str) -> None:
        if self.audit is not None:
            self.audit.record(
                "decision",
                run_id=rid,
                task_id=task.get("id"),
                rule=rule,
                image=task.get("image"),
                allowed=allowed,
                reason=why,
            )
