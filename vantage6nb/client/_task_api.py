"""``client.task``: create, get and list tasks."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..common.contract import make_input
from ..common.errors import CryptoError, ValidationError
from ..common.events import RUN_STATUS
from ..common.schemas import RunStatus, task_status
from . import _frames, _validate
from ._session import Session
from ._task import Task

__all__ = ["BINARY_INPUT_KB", "TaskAPI"]

#: inputs whose JSON is larger than this (KiB) travel as bytes (``TaskAPI.binary_input_kb``)
BINARY_INPUT_KB = 64


class TaskAPI:
    """Task operations, reached as ``client.task``.

    Examples
    --------
    >>> task = client.task.create(image="v6nb/summary", method="partial_summary",
    ...                           kwargs={"columns": ["age"]}, databases=["default"])  # doctest: +SKIP
    >>> client.task.list()[["id", "name", "status"]]  # doctest: +SKIP
    """

    #: inputs whose JSON is larger than this many KiB are sealed into a file and uploaded as
    #: bytes (``POST /api/task/input``) instead of travelling as text inside the task's JSON
    binary_input_kb: int = BINARY_INPUT_KB

    def __init__(self, session: Session) -> None:
        self._session = session

    def create(
        self,
        collaboration: int | str | Mapping[str, Any] | None = None,
        organizations: Sequence[int | str] | int | str | None = None,
        image: str = "",
        method: str = "",
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        databases: Sequence[str | dict[str, Any]] | str | None = None,
        name: str | None = None,
        description: str | None = None,
        input_: Mapping[str, Any] | None = None,
        check: bool = True,
    ) -> Task:
        """Send an algorithm to organizations of a collaboration; returns the new :class:`Task`.

        vantage6's calling style works too: ``input_={"method": ..., "args": [...], "kwargs":
        {...}}`` instead of ``method``, ``args`` and ``kwargs``, with ``organizations=[ids]`` and
        ``databases=[{"label": ...}]``; the task reads like vantage6's answer (``task["id"]``,
        ``task.get("id")``), and ``task.results()`` gives each run's result as the algorithm
        returned it (``task.results_frame()`` as a DataFrame where the shape allows).

        Parameters
        ----------
        collaboration : int, str or dict, optional
            Id or name; None means the only collaboration of your organization. A collaboration
            from :meth:`Client.collaboration` is used as it is (not looked up again).
        organizations : sequence of int or str, optional
            Ids or names of the organizations that run it; None means all of the collaboration.
            With a collaboration from :meth:`Client.collaboration`, ids of its members are taken
            as they are.
        image, method : str
            The algorithm image (e.g. ``"v6nb/summary"``) and the method it runs.
        args, kwargs : optional
            Arguments for the method (JSON-serialisable).
        databases : sequence of str or dict, optional
            Database labels each node hands the algorithm, e.g. ``["default"]``.
        name, description : str, optional
            Shown in task lists and monitors.
        input_ : dict, optional
            vantage6's form of ``method``, ``args`` and ``kwargs`` in one object.
        check : bool
            Before any task exists, check the method, the argument names and types and the
            column names against the algorithm's store metadata and the columns the nodes
            report (``TaskCheckFailed`` says what is wrong, with a close match). False sends
            without that check; the nodes check as always.

        Examples
        --------
        >>> task = client.task.create(organizations=["Leiden"], image="v6nb/summary",
        ...                           method="summary", kwargs={"organizations": [1, 2]},
        ...                           databases=["default"])  # doctest: +SKIP

        The same in vantage6's style:

        >>> task = client.task.create(collaboration=1, organizations=[1], image="v6nb/summary",
        ...     input_={"method": "summary", "kwargs": {"organizations": [1, 2]}},
        ...     databases=[{"label": "default"}])  # doctest: +SKIP
        >>> task.get("id")  # doctest: +SKIP
        12
        """
        if input_ is not None:
            method, args, kwargs = _from_input(input_, method, args, kwargs)
        if not image or not isinstance(image, str):
            raise ValidationError(
                "image is required, e.g. image='v6nb/summary'.", errors={"image": "required"}
            )
        if not method or not isinstance(method, str):
            raise ValidationError(
                "method is required, e.g. method='summary'.", errors={"method": "required"}
            )
        session = self._session
        collab, org_ids = self._target(collaboration, organizations)
        # method, argument names and types, column names: before any task exists
        if check:
            _validate.before_send(session, collab, org_ids, image, method, args, kwargs, databases)
        codec = session.codec_for(collab)
        uid = secrets.token_hex(16)
        sender = session.organization_id
        if not isinstance(args, (list, tuple, type(None))):
            raise ValidationError(
                f"args must be a list, e.g. args=[1, 2]; got {type(args).__name__}.",
                errors={"args": "expected a list"},
            )
        if not isinstance(kwargs, (dict, type(None))):
            raise ValidationError(
                f"kwargs must be a dict, e.g. kwargs={{'columns': ['age']}}; got "
                f"{type(kwargs).__name__}.",
                errors={"kwargs": "expected a dict"},
            )
        document = make_input(method, list(args or []), dict(kwargs or {}))
        try:
            data = json.dumps(document, allow_nan=True).encode("utf-8")
        except (TypeError, ValueError) as exc:  # not JSON: a set, a DataFrame, a cycle ...
            raise ValidationError(
                f"args and kwargs must be JSON-serialisable (lists, dicts, str, numbers, "
                f"bool, None): {exc}. Convert them first, e.g. df.to_dict() or list(s).",
                errors={"kwargs": "not JSON-serialisable"},
            ) from exc
        as_bytes = len(data) > self.binary_input_kb * 1024
        if not as_bytes:
            del data  # the text form is made from the document
        bindings = {
            org_id: {
                "collaboration_id": int(collab["id"]),
                "task_uid": uid,
                "image": image,
                "method": method,
                "sender_org_id": sender,
                "receiver_org_id": org_id,
            }
            for org_id in org_ids
        }
        peers = getattr(codec, "peers", None) if codec.encrypted else None
        if as_bytes and peers is not None:  # every key first: a missing one uploads nothing
            for org_id, binding in bindings.items():
                peers.peer_key(org_id, binding, fresh=True)
        inputs = []
        for org_id, binding in bindings.items():
            if as_bytes:
                upload = self._upload_input(codec, int(collab["id"]), org_id, data, binding)
                inputs.append({"id": org_id, "input_upload": upload})
            else:
                inputs.append(
                    {"id": org_id, "input": codec.encode_input(org_id, document, binding)}
                )
        body: dict[str, Any] = {
            "collaboration_id": int(collab["id"]),
            "organizations": inputs,
            "image": image,
            "method": method,
            "uid": uid,
        }
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        if databases is not None:
            body["databases"] = _databases(databases)
        # Events of the new task may arrive before the answer: catch them from before the POST
        # (when connected), so waiting needs no first re-read of the runs.
        events = session.events
        generation = events.generation if events.connected else None
        early: list[Any] = []
        stop_early = (
            events.on(RUN_STATUS, early.append, connect=False) if generation is not None else None
        )
        try:
            data = session.transport.request("POST", "/task", json=body)
        except BaseException:
            if stop_early is not None:
                stop_early()
            raise
        if data.get("uid", uid) != uid:
            raise CryptoError(
                f"The server stored task {data.get('id')} with uid {data.get('uid')!r}, not the "
                f"uid {uid!r} this client sent: its results could not be told apart from another "
                "task's, so this client will refuse them. Report this to the server's operator.",
                errors={"uid": "changed by the server"},
            )
        data["uid"] = uid
        data.setdefault("organization_ids", org_ids)
        # what results of this task must be bound to, whatever the server says later
        session.state.remember_task(
            {
                "id": int(data["id"]),
                "uid": uid,
                "collaboration_id": int(collab["id"]),
                "init_org_id": sender,
                "organization_ids": org_ids,
                "runs": {
                    int(r["id"]): int(r["organization_id"])
                    for r in data.get("runs") or []
                    if r.get("id") is not None and r.get("organization_id") is not None
                },
            }
        )
        task = Task(session, data)
        if stop_early is not None and generation is not None:
            task._follow(early, stop_early, generation)
        task._warn_offline()  # at once: a run for an offline node waits until it is started
        return task

    def _upload_input(
        self, codec: Any, collaboration_id: int, org_id: int, data: bytes, binding: Any
    ) -> str:
        """Seal (or write) one organization's input into a temporary file and upload it as
        bytes; returns the upload id ``POST /api/task`` names. The file goes right after."""
        fd, name = tempfile.mkstemp(prefix="v6nb-input-")
        os.close(fd)
        path = Path(name)
        try:
            codec.encode_input_file(org_id, data, path, binding)
            answer = self._session.transport.upload(
                "/task/input",
                path,
                params={"collaboration_id": collaboration_id, "organization_id": org_id},
            )
        finally:
            path.unlink(missing_ok=True)
        return str(answer["input_upload"])

    def _target(
        self,
        collaboration: int | str | Mapping[str, Any] | None,
        organizations: Sequence[int | str] | int | str | None,
    ) -> tuple[dict[str, Any], list[int]]:
        """The collaboration and organization ids a task goes to, resolved once."""
        directory = self._session.directory
        if not isinstance(collaboration, Mapping):
            return directory.resolve(collaboration, organizations)
        # already resolved by the caller (client.collaboration(...)): member ids need no look-up
        collab = dict(collaboration)
        members = [int(i) for i in collab.get("organization_ids") or []]
        refs = [organizations] if isinstance(organizations, (int, str)) else organizations
        if refs and all(
            isinstance(r, int) and not isinstance(r, bool) and r in members for r in refs
        ):
            return collab, list(dict.fromkeys(int(r) for r in refs)) or members
        return collab, directory.organizations_in(collab, organizations)

    def get(self, task_id: int) -> Task:
        """The task with this id (with its current run status).

        Examples
        --------
        >>> client.task.get(12).status()  # doctest: +SKIP
        """
        data = self._session.transport.request("GET", f"/task/{int(task_id)}")
        return Task(self._session, data).refresh()

    def list(
        self,
        collaboration: int | str | None = None,
        *,
        status: str | None = None,
        parent_id: int | None = None,
        job_id: int | None = None,
        init_org_id: int | None = None,
    ) -> pd.DataFrame:
        """Tasks you can see, newest last, as a DataFrame (filters are optional).

        ``status`` is each task's status as its repr and monitor show it
        (:func:`~vantage6nb.common.schemas.task_status`): a task whose runs were killed is
        ``killed``, one refused by a disclosure policy ``refused``, other failures ``failed``.

        Examples
        --------
        >>> client.task.list(status="completed")[["id", "name", "image"]]  # doctest: +SKIP
        """
        # the server knows killed and refused tasks as failed: those are told apart here
        ended = status in _FAILED_KINDS
        params: dict[str, Any] = {
            "status": RunStatus.FAILED.value if ended else status,
            "parent_id": parent_id,
            "job_id": job_id,
            "init_org_id": init_org_id,
        }
        if collaboration is not None:
            params["collaboration_id"] = self._session.directory.collaboration(collaboration)["id"]
        rows = [_listed(r) for r in self._session.transport.paginate("/task", params)]
        if ended:
            rows = [r for r in rows if r.get("status") == status]
        return _frames.frame("task", rows)


_FAILED_KINDS = frozenset({RunStatus.FAILED.value, RunStatus.KILLED.value, RunStatus.REFUSED.value})


def _listed(row: Mapping[str, Any]) -> dict[str, Any]:
    """A task of a list, without its runs, its status derived from them as everywhere else."""
    out = {k: v for k, v in row.items() if k != "runs"}
    runs = row.get("runs")
    if isinstance(runs, list) and runs:
        out["status"] = task_status(r.get("status") for r in runs)
    return out


def _from_input(
    input_: Any, method: str, args: Any, kwargs: Any
) -> tuple[str, list[Any] | None, dict[str, Any] | None]:
    """``method``, ``args`` and ``kwargs`` from vantage6's ``input_`` (refused next to them)."""
    if method or args is not None or kwargs is not None:
        raise ValidationError(
            "give either input_={'method': ..., 'kwargs': ...} (vantage6's style) or method=, "
            "args= and kwargs=, not both.",
            errors={"input_": "given with method/args/kwargs"},
        )
    if not isinstance(input_, Mapping) or not isinstance(input_.get("method"), str):
        raise ValidationError(
            "input_ must be a dict with a 'method', e.g. input_={'method': 'central', "
            "'kwargs': {'column': 'age'}}.",
            errors={"input_": "expected {method, args?, kwargs?}"},
        )
    return input_["method"], input_.get("args"), input_.get("kwargs")


def _databases(databases: Sequence[str | dict[str, Any]] | str) -> list[dict[str, Any]]:
    if isinstance(databases, str):
        databases = [databases]
    out = []
    for db in databases:
        if isinstance(db, str):
            out.append({"label": db})
        elif isinstance(db, dict) and isinstance(db.get("label"), str):
            out.append(dict(db))
        else:
            raise ValidationError(
                f"Each database is a label or a dict with a 'label', got {db!r}.",
                errors={"databases": "expected labels"},
            )
    return out
