"""TaskBuilder: a form to pick collaboration, organizations, algorithm, method and typed arguments, then run."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import ipywidgets as widgets
import traitlets

from ..catalog import Algorithm, Method, Parameter, known_algorithms
from ..common.errors import ValidationError
from ._monitor import TaskMonitor
from ._output import ErrorOutput
from ._result import ResultView, results_to_frame

__all__ = ["TaskBuilder", "parameter_widget"]


def _doc_html(doc: str) -> str:
    return re.sub(r"``(.+?)``", r"<code>\1</code>", html.escape(doc))


def parameter_widget(param: Parameter) -> widgets.Widget:
    """The input widget for one typed parameter (its ``description`` is the parameter's name).

    Examples
    --------
    >>> parameter_widget(Parameter("ddof", "int", default=1)).value
    1
    """
    style = {"description_width": "9em"}
    common: dict[str, Any] = {"description": param.name, "style": style}
    placeholder = "required" if param.required else ("optional" if param.optional else "")
    if param.kind == "bool":
        return widgets.Checkbox(value=bool(param.default), indent=False, **common)
    if param.kind == "choice":
        return widgets.Dropdown(
            options=list(param.choices),
            value=param.default if param.default in param.choices else param.choices[0],
            **common,
        )
    if param.kind in ("int", "float") and not (param.optional or param.required):
        cls = widgets.IntText if param.kind == "int" else widgets.FloatText
        return cls(value=param.default or 0, **common)
    if param.kind.startswith("list["):
        default = (
            ", ".join(map(str, param.default)) if isinstance(param.default, list | tuple) else ""
        )
        return widgets.Text(
            value=default, placeholder=f"comma separated ({placeholder or 'list'})", **common
        )
    if param.kind == "json":
        default = "" if param.default is None else json.dumps(param.default)
        return widgets.Textarea(
            value=default, placeholder=f"JSON ({placeholder or 'value'})", **common
        )
    default = "" if param.default is None else str(param.default)
    return widgets.Text(value=default, placeholder=placeholder, **common)


class TaskBuilder(widgets.VBox):
    """Build and run a task: the argument form is generated from the algorithm's declaration.

    A central method (one that creates subtasks) runs at one organization (yours when it takes
    part) and gets the picked organizations as its ``organizations`` argument; any other method
    runs at every picked organization. After Run, a :class:`TaskMonitor` follows the task and,
    when it completes, a :class:`ResultView` shows the result (also in :attr:`dataframe`).

    Examples
    --------
    >>> builder = TaskBuilder(client)  # doctest: +SKIP
    >>> builder.algorithm_input.value = "v6nb/crosstab"  # doctest: +SKIP
    >>> builder.argument_inputs["row"].value = "species"  # doctest: +SKIP
    >>> builder.run()  # doctest: +SKIP
    """

    task_id = traitlets.Int(0, help="Id of the last task started (0: none yet).")
    status = traitlets.Unicode(
        "", help="Status of the last task: running, completed, failed, refused, killed."
    )

    def __init__(
        self, client: Any, *, algorithms: dict[str, Algorithm] | None = None, **kwargs: Any
    ) -> None:
        self.client = client
        self.algorithms = dict(algorithms) if algorithms is not None else known_algorithms()
        self.task: Any = None
        self.monitor: TaskMonitor | None = None
        self.result_view: ResultView | None = None
        self._kwargs: dict[str, Any] = {}
        self._algo: Algorithm | None = None
        self.errors = ErrorOutput()
        self._collabs: dict[int, dict[str, Any]] = {}
        self._org_names: dict[int, str] = {}
        wide = {"description_width": "9em"}
        self.collaboration_input = widgets.Dropdown(description="Collaboration", style=wide)
        self.organizations_input = widgets.SelectMultiple(
            description="Organizations", rows=4, style=wide
        )
        self.algorithm_input = widgets.Dropdown(
            description="Algorithm",
            options=[(f"{a.name} ({a.image})", image) for image, a in self.algorithms.items()],
            value=next(iter(self.algorithms), None),
            style=wide,
        )
        self.method_input = widgets.Dropdown(description="Method", style=wide)
        self.method_doc = widgets.HTML()
        self.databases_input = widgets.Text(
            value="default",
            description="Databases",
            style=wide,
            placeholder="labels, comma separated",
        )
        self.arguments_box = widgets.VBox()
        self.argument_inputs: dict[str, widgets.Widget] = {}
        self.run_button = widgets.Button(description="Run", button_style="success", icon="play")
        self.run_button.add_class("v6nb-run-button")
        self.run_button.on_click(lambda _b: self.run())
        self.output = widgets.VBox()
        self.output.add_class("v6nb-task-output")
        super().__init__(
            [
                self.collaboration_input,
                self.organizations_input,
                self.algorithm_input,
                self.method_input,
                self.method_doc,
                self.arguments_box,
                self.databases_input,
                self.run_button,
                self.errors.widget,
                self.output,
            ],
            **kwargs,
        )
        self.add_class("v6nb-task-builder")
        self.collaboration_input.observe(self._on_collaboration, names=["value"])
        self.algorithm_input.observe(self._on_algorithm, names=["value"])
        self.method_input.observe(self._on_method, names=["value"])
        self._load_network()
        self._on_algorithm()

    # -- form -----------------------------------------------------------------------------------
    def _load_network(self) -> None:
        with self.errors.catch("reading collaborations"):
            self._org_names = {
                int(o["id"]): str(o["name"]) for o in self.client.organizations().to_dict("records")
            }
            self._collabs = {
                int(c["id"]): c for c in self.client.collaborations().to_dict("records")
            }
            self.collaboration_input.options = [
                (str(c["name"]), cid) for cid, c in self._collabs.items()
            ]
            if self._collabs:  # a Dropdown given options keeps value None: pick the first
                self.collaboration_input.value = next(iter(self._collabs))
            self._on_collaboration()

    def _on_collaboration(self, _change: Any = None) -> None:
        collab = self._collabs.get(self.collaboration_input.value) or {}
        ids = [int(i) for i in collab.get("organization_ids") or []]
        self.organizations_input.options = [(self._org_names.get(i, str(i)), i) for i in ids]
        self.organizations_input.value = tuple(ids)

    def _on_algorithm(self, _change: Any = None) -> None:
        algo = self.algorithm
        if algo is None:
            self.method_input.options = []
            return
        names = [m.name for m in algo.methods]
        self.method_input.options = names
        if names:
            self.method_input.value = (
                algo.default_method if algo.default_method in names else names[0]
            )
        self.databases_input.value = ", ".join(algo.databases)
        self._on_method()

    def _on_method(self, _change: Any = None) -> None:
        method = self.method
        self.argument_inputs = {
            p.name: parameter_widget(p) for p in (method.parameters if method else ())
        }
        self.arguments_box.children = list(self.argument_inputs.values())
        if method is None:
            self.method_doc.value = ""
            return
        where = (
            "runs at one organization and sends subtasks to the others"
            if method.central
            else "runs at every picked organization"
        )
        self.method_doc.value = f"<small>{_doc_html(method.doc)} <i>({where})</i></small>"

    @property
    def algorithm(self) -> Algorithm | None:
        return self.algorithms.get(self.algorithm_input.value)

    @property
    def method(self) -> Method | None:
        algo = self.algorithm
        if algo is None or not self.method_input.value:
            return None
        return algo.method(self.method_input.value)

    def arguments(self) -> dict[str, Any]:
        """The method's keyword arguments as the form holds them, parsed to their declared types.

        Raises :class:`~vantage6nb.errors.ValidationError` naming every bad field.
        """
        method = self.method
        out: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for p in method.parameters if method else ():
            try:
                value = p.parse(self.argument_inputs[p.name].value)
            except ValidationError as exc:
                errors.update(exc.errors)
                continue
            if value is not None or p.required:
                out[p.name] = value
        if errors:
            raise ValidationError(
                "Fix the arguments: " + ", ".join(f"{k} ({v})" for k, v in errors.items()) + ".",
                errors=errors,
            )
        return out

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> Any:
        """Create the task from the form and follow it; returns the Task (None when the form is invalid)."""
        self.errors.clear()
        with self.errors.catch("starting the task"):
            algo, method = self.algorithm, self.method
            if algo is None or method is None:
                raise ValidationError(
                    "Pick an algorithm and a method.", errors={"algorithm": "required"}
                )
            picked = [int(i) for i in self.organizations_input.value]
            if not picked:
                raise ValidationError(
                    "Pick at least one organization.", errors={"organizations": "empty"}
                )
            kwargs = self.arguments()
            targets = picked
            if method.central:
                own = (self.client.whoami or {}).get("organization_id")
                targets = [own] if own in picked else picked[:1]
                if method.takes_organizations:
                    kwargs["organizations"] = picked
            labels = [x.strip() for x in self.databases_input.value.split(",") if x.strip()]
            task = self.client.task.create(
                collaboration=int(self.collaboration_input.value),
                organizations=targets,
                image=algo.image,
                method=method.name,
                kwargs=kwargs,
                databases=labels or None,
                name=f"{algo.name}: {method.name}",
            )
            self._algo = algo
            self._start(task, kwargs)
            return task
        return None

    def _start(self, task: Any, kwargs: dict[str, Any]) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        self.task, self._kwargs, self.result_view = task, kwargs, None
        self.monitor = TaskMonitor(task, client=self.client)
        self.output.children = [self.monitor]
        self.task_id = int(task.id)
        self.status = self.monitor.status
        self.monitor.observe(self._on_status, names=["status"])
        self.monitor.observe(self._on_done, names=["done"])
        if self.monitor.done:  # finished before we subscribed
            self._on_done()

    def _on_status(self, change: Any) -> None:
        if not (self.monitor and self.monitor.progress.done):
            self.status = change["new"]  # final statuses are set by _on_done, after the result

    def _on_done(self, _change: Any = None) -> None:
        monitor, task = self.monitor, self.task
        if monitor is None or task is None:
            return
        if monitor.progress.succeeded and self.result_view is None:
            with self.errors.catch("reading the results"):
                task.refresh()
                by_org = task.results_by_organization()
                names, results = list(by_org), list(by_org.values())
                algo = self._algo
                if algo is not None and algo.to_frame is not None:
                    df = algo.to_frame(results, self._kwargs)
                else:
                    df = results_to_frame(results, names)
                everyone = sorted({r.organization for r in monitor.progress.snapshot()} - {""})
                df.attrs.update(
                    task_id=int(task.id), image=task.image, organizations=everyone or names
                )
                self.result_view = ResultView(df, kind=(algo.kind or None) if algo else None)
                self.output.children = [monitor, self.result_view]
        self.status = monitor.status

    @property
    def dataframe(self) -> Any:
        """The last completed task's result as a DataFrame (None before one completes)."""
        return None if self.result_view is None else self.result_view.dataframe
