"""``LocalNetwork``: run an algorithm's central and partial methods in-process, no server or node needed.

Like vantage6's ``MockAlgorithmClient``: each organization gets its own datasets, a central method
gets an :class:`~vantage6nb.algorithm.AlgorithmClient` whose subtasks run right away, in this
process, against each organization's data. Inputs and results go through JSON as they would on
a real network, so a result that cannot travel fails here too, and every output is checked against
a disclosure policy as a node checks it, so a test sees what nodes would release.

Algorithms written with vantage6's own ``vantage6-algorithm-tools`` run as its
``MockAlgorithmClient`` runs them: a method wrapped in its ``@algorithm_client`` gets
``mock_client=`` (this network's client, which speaks vantage6's client API), one wrapped in its
``@data`` gets ``mock_data=`` (the organization's datasets as DataFrames), so neither reads the
node's environment. Their plain-JSON results are released only when the policy trusts the image
(``policy={"untyped_images": [net.image]}``), as on a node; ``@metadata`` has no mock in vantage6
either.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import traceback
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from ..common import contract
from ..common.disclosure import DisclosurePolicy, Refusal
from ..common.errors import (
    REJECTED,
    ConfigurationError,
    DisclosureRefused,
    NotFound,
    ValidationError,
)
from ..common.release import check_output, check_request
from ._client import AlgorithmClient
from ._context import DatabaseSource, LocalContext, _type_from_uri, current_local, local_context
from ._data import _load_source
from ._wrap import dispatch, refusal_result, result_to_json
from .results import unwrap

__all__ = ["LocalNetwork"]


class LocalNetwork:
    """An in-process stand-in for a collaboration, for testing algorithms before sending them.

    Parameters
    ----------
    module
        The algorithm: an importable module name (``"vantage6nb.algorithms.summary"``) or module.
    datasets
        One entry per organization: a DataFrame, a file path (type from its suffix), a dict
        ``{"database": frame_or_uri, "type": ..., "label": ..., "query": ...}``, or a list of
        those when the organization has several databases.
    organization_ids, organization_names
        Defaults ``0, 1, ...`` and ``"org_0", "org_1", ...``.
    environ
        Extra contract variables every run sees (the policy's ``algorithm_env`` comes first).
    policy
        The disclosure policy every node applies (a :class:`DisclosurePolicy` or a mapping as in
        node.yaml's ``disclosure``); default: the default policy. Each partial's output is
        checked as a federated part, the top-level run's as an entry point; a refused run ends
        ``refused``. ``False`` releases every output unchecked.
    image
        The image name the policy sees (``untyped_images``); default: the shipped image of the
        module, else ``local/<module name>``.

    Examples
    --------
    >>> import pandas as pd
    >>> net = LocalNetwork("vantage6nb.algorithms.summary",
    ...                    datasets=[pd.DataFrame({"x": [1, 2, 3, 4, 5]}), pd.DataFrame({"x": [3.0] * 5})])
    >>> net.run("summary")["columns"]["x"]["mean"]
    3.0
    >>> net.run("summary")["columns"]["x"]["min"] is None  # the default policy withholds extremes
    True
    >>> LocalNetwork("vantage6nb.algorithms.summary", [pd.DataFrame({"x": [1, 2]})],
    ...              policy=False).run("summary")["columns"]["x"]["min"]  # integers stay exact
    1
    """

    def __init__(
        self,
        module: str | ModuleType,
        datasets: Sequence[Any],
        *,
        organization_ids: Sequence[int] | None = None,
        organization_names: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
        collaboration_id: int = 1,
        policy: DisclosurePolicy | Mapping[str, Any] | bool | None = None,
        image: str | None = None,
    ) -> None:
        if not datasets:
            raise ValueError("LocalNetwork needs at least one organization's dataset")
        self.module = module
        ids = list(organization_ids) if organization_ids is not None else list(range(len(datasets)))
        names = list(organization_names or [f"org_{i}" for i in ids])
        if len(ids) != len(datasets) or len(names) != len(datasets):
            raise ValueError("give one organization id and name per dataset")
        self.collaboration_id = collaboration_id
        self.organizations = [
            {"id": i, "name": n, "domain": None, "public_key": None, "key_fingerprint": None}
            for i, n in zip(ids, names, strict=True)
        ]
        self._sources = {i: _normalise(d) for i, d in zip(ids, datasets, strict=True)}
        if policy is False:
            self.policy: DisclosurePolicy | None = None
        elif policy is None or policy is True:
            self.policy = DisclosurePolicy()
        elif isinstance(policy, DisclosurePolicy):
            self.policy = policy
        else:
            self.policy = DisclosurePolicy.from_mapping(policy)
        self.image = image or _image_of(module)
        algorithm_env = dict(self.policy.algorithm_env) if self.policy else {}
        self.environ = {**algorithm_env, **dict(environ or {})}
        self.tasks: dict[int, dict[str, Any]] = {}
        self._results: dict[int, Any] = {}
        self._task_ids = itertools.count(1)
        self._run_ids = itertools.count(1)

    def client(
        self, organization: int | None = None, *, parent_id: int | None = None
    ) -> AlgorithmClient:
        """An AlgorithmClient as a run at ``organization`` (default the first) would get it."""
        org = self.organizations[0]["id"] if organization is None else organization
        self._check_org(org)
        return _LocalAlgorithmClient(self, org, parent_id)

    def run(
        self,
        method: str,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        organization: int | None = None,
        databases: Sequence[str] | None = None,
    ) -> Any:
        """Run ``method`` at one organization (default the first), in-process, and return its result.

        The result is what the node releases of the method's output (checked as an entry point),
        without the typed-result marker. The algorithm's own exceptions propagate unchanged, with
        their traceback; a refused output raises :class:`DisclosureRefused` naming the rule.

        Examples
        --------
        >>> net.run("crosstab", kwargs={"row": "species", "col": "island"})  # doctest: +SKIP
        """
        org = self.organizations[0]["id"] if organization is None else organization
        self._check_org(org)
        asked = json.dumps(contract.make_input(method, list(args or []), dict(kwargs or {})))
        request = json.loads(asked)
        sources = self._select(org, databases)
        task_id = next(self._task_ids)
        run = {
            "id": next(self._run_ids),
            "task_id": task_id,
            "organization_id": org,
            "status": "active",
            "reason": None,
            "log": "",
        }
        self.tasks[task_id] = {
            "id": task_id,
            "name": method,
            "parent_id": None,
            "method": method,
            "init_org_id": org,
            "databases": [{"label": s.label} for s in sources],
            "collaboration_id": self.collaboration_id,
            "runs": [run],
            "status": "active",
        }
        ctx = LocalContext(sources, _LocalAlgorithmClient(self, org, task_id), self.environ)
        try:
            with local_context(ctx):
                result, refused = self._produce(request, asked, entry_point=True)
        except BaseException as exc:
            run.update(_ended(exc))
            self.tasks[task_id]["status"] = "failed"
            raise
        if refused is not None:
            run.update(status="refused", reason=refused.reason())
            self.tasks[task_id]["status"] = "failed"
            raise self._refused_error(org, refused, method)
        run["status"] = self.tasks[task_id]["status"] = "completed"
        self._results[run["id"]] = result
        return unwrap(result)

    # --- what a node does around the algorithm ---
    def _produce(
        self, request: Mapping[str, Any], asked: str, *, entry_point: bool
    ) -> tuple[Any, Refusal | None]:
        """What a node releases of a run (parsed JSON), or why it refuses."""
        if self.policy is not None:
            refused = check_request(asked.encode(), self.policy)
            if refused is not None:
                return None, refused
        return self._release(self._call(request), asked, entry_point=entry_point)

    def _call(self, request: Mapping[str, Any]) -> str:
        """The method's output as the wrapper writes it (a passed-on refusal included)."""
        try:
            return result_to_json(dispatch(self.module, _with_vantage6_mocks(self.module, request)))
        except DisclosureRefused as exc:
            if self.policy is None:  # nothing checks a refusal value: keep the exception
                raise
            return result_to_json(refusal_result(exc))

    def _release(self, output: str, asked: str, *, entry_point: bool) -> tuple[Any, Refusal | None]:
        """What a node releases of ``output`` (parsed JSON), or the refusal."""
        if self.policy is None:
            return json.loads(output), None
        release = check_output(
            output.encode("utf-8"),
            self.policy,
            image=self.image,
            entry_point=entry_point,
            asked=asked.encode("utf-8"),
        )
        if release.refusal is not None or release.data is None:
            return None, release.refusal or Refusal("malformed", None, "nothing was released")
        return json.loads(release.data), None

    def _refused_error(self, org: Any, refusal: Refusal, method: str) -> DisclosureRefused:
        names: dict[Any, Any] = {o["id"]: o["name"] for o in self.organizations}
        who = refusal.organization
        name = names.get(int(who), who) if who and who.isdigit() else names.get(org, str(org))
        return DisclosureRefused(
            f"The output of '{method}' (at {names.get(org, org)}) was {refusal.reason()}",
            organization=name,
            rule=refusal.rule,
            threshold=refusal.threshold,
            what=refusal.what,
        )

    # --- the in-memory proxy ---
    def _check_org(self, org: int) -> None:
        if org not in self._sources:
            known = ", ".join(str(o["id"]) for o in self.organizations)
            raise NotFound(f"Organization {org} is not in this local network (ids: {known}).")

    def _select(self, org: int, labels: Sequence[str] | None) -> list[DatabaseSource]:
        sources = self._sources[org]
        if labels is None:
            return list(sources)
        by_label = {s.label: s for s in sources}
        missing = [lb for lb in labels if lb not in by_label]
        if missing:
            raise ValidationError(
                f"Organization {org} has no database labelled {', '.join(missing)}; "
                f"it has {', '.join(by_label)}.",
                errors={"databases": missing},
            )
        return [by_label[lb] for lb in labels]

    def _create_task(
        self, body: Mapping[str, Any], init_org: int, parent_id: int | None
    ) -> dict[str, Any]:
        task_id = next(self._task_ids)
        labels = [d["label"] for d in body.get("databases") or []] or None
        task: dict[str, Any] = {
            "id": task_id,
            "name": body.get("name") or body.get("method"),
            "parent_id": parent_id,
            "method": body.get("method"),
            "init_org_id": init_org,
            "databases": body.get("databases") or [],
            "collaboration_id": self.collaboration_id,
            "runs": [],
        }
        self.tasks[task_id] = task
        for entry in body["organizations"]:
            org = int(entry["id"])
            self._check_org(org)
            run = {
                "id": next(self._run_ids),
                "task_id": task_id,
                "organization_id": org,
                "status": "active",
                "reason": None,
                "log": "",
            }
            task["runs"].append(run)
            self._execute(task, run, entry["input"], labels)
        done = all(r["status"] == "completed" for r in task["runs"])
        task["status"] = "completed" if done else "failed"
        return dict(task)

    def _execute(
        self, task: dict[str, Any], run: dict[str, Any], input_: Any, labels: Sequence[str] | None
    ) -> None:
        org = run["organization_id"]
        asked = input_ if isinstance(input_, str) else json.dumps(input_)
        try:
            request = contract.parse_input(asked)
            ctx = LocalContext(
                self._select(org, labels),
                _LocalAlgorithmClient(self, org, task["id"]),
                self.environ,
            )
            with local_context(ctx):
                result, refused = self._produce(request, asked, entry_point=False)
        except Exception as exc:  # a crashing (or rejecting) partial is an outcome, as on a node
            run.update(_ended(exc))
            return
        if refused is not None:
            run.update(status="refused", reason=refused.reason())
            return
        self._results[run["id"]] = result
        run["status"] = "completed"

    def _result_rows(self, task_id: int) -> list[dict[str, Any]]:
        task = self._task(task_id)
        return [
            {
                "run_id": r["id"],
                "task_id": task_id,
                "organization_id": r["organization_id"],
                "status": r["status"],
                "result": self._results.get(r["id"]),
            }
            for r in task["runs"]
        ]

    def _task(self, task_id: int) -> dict[str, Any]:
        if task_id not in self.tasks:
            raise NotFound(f"Task {task_id} does not exist in this local network.")
        return self.tasks[task_id]


def _ended(exc: BaseException) -> dict[str, Any]:
    """How a run ends that raised ``exc``, as a node ends it: an algorithm that refused its input
    (a ValidationError, or a ConfigurationError such as too few databases) is ``failed`` with
    ``rejected: <message>``; any other exception ``crashed``.

    Examples
    --------
    >>> _ended(ValidationError("no column 'agee'"))["reason"]
    "rejected: no column 'agee'"
    >>> _ended(RuntimeError("boom"))["status"]
    'crashed'
    """
    log = traceback.format_exc() if exc.__traceback__ is not None else ""
    if isinstance(exc, (ValidationError, ConfigurationError)):
        return {"status": "failed", "reason": REJECTED + " ".join(exc.msg.split()), "log": log}
    return {"status": "crashed", "reason": f"{type(exc).__name__}: {exc}", "log": log}


def _with_vantage6_mocks(module: str | ModuleType, request: Mapping[str, Any]) -> Mapping[str, Any]:
    """``request`` plus the ``mock_client``/``mock_data`` vantage6's decorators take, as its
    ``MockAlgorithmClient`` passes them (only to methods wrapped in those decorators)."""
    mod = importlib.import_module(module) if isinstance(module, str) else module
    func = getattr(mod, str(request.get("method")), None)
    ctx = current_local()
    if func is None or ctx is None:
        return request
    extra: dict[str, Any] = {}
    if getattr(func, "wrapped_in_algorithm_client_decorator", False):
        extra["mock_client"] = ctx.client
    if getattr(func, "wrapped_in_data_decorator", False):
        extra["mock_data"] = [_load_source(src, None) for src in ctx.databases]
    if not extra:
        return request
    return {**request, "kwargs": {**(request.get("kwargs") or {}), **extra}}


class _LocalAlgorithmClient(AlgorithmClient):
    """The AlgorithmClient of a run inside a LocalNetwork: same code, in-memory transport."""

    def __init__(self, network: LocalNetwork, organization: int, parent_id: int | None) -> None:
        super().__init__("local://", token="local")
        self.network = network
        self.organization_id = organization
        self.parent_id = parent_id
        # what vantage6's AlgorithmClient reads from its token
        self.collaboration_id = network.collaboration_id
        self.node_id = organization
        self.image = network.image

    def request(
        self,
        endpoint: str,
        json: Any = None,
        method: str = "get",
        params: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        """vantage6's ``client.request(endpoint, ...)``: the same in-memory proxy."""
        return self._request(method.upper(), "/" + endpoint.lstrip("/"), params=params, json=json)

    def _request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        net, params = self.network, params or {}
        if method == "GET" and path == "/organization":
            return {"data": [dict(o) for o in net.organizations]}
        if method == "POST" and path == "/task":
            return net._create_task(json, self.organization_id, self.parent_id)
        parts = path.strip("/").split("/")
        if method == "GET" and parts[0] == "task" and len(parts) == 3 and parts[2] == "status":
            task = net._task(int(parts[1]))  # what vantage6's wait_for_results polls
            return {"id": task["id"], "status": task.get("status")}
        if method == "GET" and path.startswith("/task/"):
            return dict(net._task(int(path.rsplit("/", 1)[1])))
        if method == "GET" and path == "/result":
            return {"data": net._result_rows(int(params["task_id"]))}
        if method == "GET" and path == "/run":
            return {"data": list(net._task(int(params["task_id"]))["runs"])}
        raise NotFound(f"The algorithm proxy has no {method} {path}.")


def _image_of(module: str | ModuleType) -> str:
    from ..algorithms import IMAGES  # the shipped images, by module

    name = module if isinstance(module, str) else getattr(module, "__name__", "algorithm")
    by_module = {m: image for image, m in IMAGES.items()}
    return by_module.get(name, f"local/{name}")


def _normalise(entry: Any) -> list[DatabaseSource]:
    items = list(entry) if isinstance(entry, (list, tuple)) else [entry]
    out = []
    for i, item in enumerate(items):
        label = "default" if i == 0 else f"db{i + 1}"
        typ = query = None
        if isinstance(item, Mapping):
            label = item.get("label", label)
            typ, query = item.get("type"), item.get("query")
            item = item["database"] if "database" in item else item["uri"]
        if isinstance(item, (str, os.PathLike)):
            uri = os.fspath(item)
            out.append(DatabaseSource(label, uri, (typ or _type_from_uri(uri)).lower(), query))
        elif hasattr(item, "columns") and hasattr(item, "copy"):  # a DataFrame
            out.append(DatabaseSource(label, "<in memory>", typ or "csv", query, frame=item))
        else:
            raise TypeError(
                f"dataset entries must be DataFrames or paths, got {type(item).__name__}"
            )
    return out
