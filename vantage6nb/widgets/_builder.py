"""TaskBuilder: a form generated from the algorithm's store metadata; runs the task or writes its code."""

from __future__ import annotations

import html
import json
import pprint
import re
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import traitlets

from ..catalog import Algorithm, Method, Parameter, known_algorithms
from ..client._validate import TaskCheckFailed
from ..common import store_metadata as sm
from ..common.errors import ValidationError
from ._monitor import TaskMonitor
from ._output import ErrorOutput
from ._result import ResultView, results_to_frame

__all__ = ["CheckboxGroup", "TaskBuilder", "parameter_widget"]

_LABEL_WIDTH = "12em"
_WIDE = widgets.Layout(width="46em")


def _doc_html(doc: str) -> str:
    """A description as HTML: ``code`` and `code` as <code>, the rest escaped."""
    text = html.escape(doc)
    text = re.sub(r"``(.+?)``", r"<code>\1</code>", text)
    return re.sub(r"`([^`]+?)`", r"<code>\1</code>", text)


class CheckboxGroup(widgets.VBox):
    """One checkbox per option (no ctrl-click); ``value`` is the tuple of checked option values.

    Examples
    --------
    >>> group = CheckboxGroup(options=[("Leiden", 1), ("Utrecht", 2)])
    >>> group.value = (2,)
    >>> [box.value for box in group.boxes]
    [False, True]
    """

    value = traitlets.Tuple(help="The checked options' values, in option order.")

    def __init__(self, options: Sequence[tuple[str, Any]] = (), **kwargs: Any) -> None:
        self.boxes: list[widgets.Checkbox] = []
        self._values: list[Any] = []
        self._syncing = False
        super().__init__(**kwargs)
        self.options = list(options)
        self.observe(self._to_boxes, names=["value"])

    @property
    def options(self) -> list[tuple[str, Any]]:
        """``(label, value)`` pairs, one checkbox each."""
        return [(b.description, v) for b, v in zip(self.boxes, self._values, strict=True)]

    @options.setter
    def options(self, options: Sequence[tuple[str, Any]]) -> None:
        self._values = [v for _, v in options]
        self.boxes = [
            widgets.Checkbox(value=False, description=str(label), indent=False)
            for label, _ in options
        ]
        for box in self.boxes:
            box.observe(self._from_boxes, names=["value"])
        self.children = self.boxes
        self.value = tuple(v for v in self.value if v in self._values)
        self._to_boxes()  # new boxes show the value even when it did not change

    def _from_boxes(self, _change: Any = None) -> None:
        if not self._syncing:
            self.value = tuple(v for b, v in zip(self.boxes, self._values, strict=True) if b.value)

    def _to_boxes(self, _change: Any = None) -> None:
        self._syncing = True
        try:
            for box, v in zip(self.boxes, self._values, strict=True):
                box.value = v in self.value
        finally:
            self._syncing = False


def parameter_widget(
    param: Parameter,
    columns: Sequence[str] = (),
    organizations: Sequence[tuple[str, int]] = (),
) -> widgets.Widget:
    """The input widget for one typed parameter (its ``description`` is left to the row's label).

    ``column`` arguments get a column picker with the reported ``columns`` as suggestions,
    ``column_list`` ones a multi-picker (tags); organizations are picked from ``organizations``.

    Examples
    --------
    >>> parameter_widget(Parameter("ddof", "int", default=1)).value
    1
    >>> parameter_widget(Parameter("by", "list[str]", type="column_list"), ["age"]).allowed_tags
    ['age']
    """
    placeholder = "required" if param.required else ("optional" if param.optional else "")
    kind, store = param.kind, param.store_type
    layout = widgets.Layout(width="28em")
    if store == "column" and kind != "choice":
        return widgets.Combobox(
            value="" if param.default is None else str(param.default),
            options=list(columns),
            ensure_option=False,
            placeholder=f"column ({placeholder})" if placeholder else "column",
            layout=layout,
        )
    if store == "column_list":
        tags = list(param.default) if isinstance(param.default, list | tuple) else []
        return widgets.TagsInput(
            value=tags,
            allowed_tags=list(columns),
            allow_duplicates=False,
            placeholder=f"columns ({placeholder})" if placeholder else "columns",
            layout=layout,
        )
    if store == "organization" and organizations:
        return widgets.Dropdown(options=[("", None), *organizations], value=None, layout=layout)
    if store == "organization_list" and organizations:
        return CheckboxGroup(options=list(organizations))
    if kind == "bool":
        return widgets.Checkbox(value=bool(param.default), indent=False)
    if kind == "choice":
        return widgets.Dropdown(
            options=list(param.choices),
            value=param.default if param.default in param.choices else param.choices[0],
            layout=layout,
        )
    if kind in ("int", "float") and not (param.optional or param.required):
        cls = widgets.IntText if kind == "int" else widgets.FloatText
        return cls(value=param.default or 0, layout=layout)
    if kind.startswith("list["):
        default = (
            ", ".join(map(str, param.default)) if isinstance(param.default, list | tuple) else ""
        )
        return widgets.Text(
            value=default, placeholder=f"comma separated ({placeholder or 'list'})", layout=layout
        )
    if kind == "json":
        default = "" if param.default is None else json.dumps(param.default)
        return widgets.Textarea(
            value=default, placeholder=f"JSON ({placeholder or 'value'})", layout=layout
        )
    default = "" if param.default is None else str(param.default)
    return widgets.Text(value=default, placeholder=placeholder, layout=layout)


def _label(text: str, help_text: str = "") -> widgets.HTML:
    title = f' title="{html.escape(help_text)}"' if help_text else ""
    # a label longer than the column wraps: at the widget's line height (one row each) its
    # lines would stand a row apart
    style = ' style="display:inline-block;line-height:1.3;vertical-align:middle"'
    return widgets.HTML(
        f"<span{title}{style}>{html.escape(text)}</span>",
        layout=widgets.Layout(width=_LABEL_WIDTH, min_width=_LABEL_WIDTH),
    )


def _message(text: str) -> str:
    return f'<span style="color:#c62828">{html.escape(text)}</span>' if text else ""


def _argument(param: Parameter) -> sm.Argument:
    return sm.Argument(
        name=param.name,
        type=param.store_type,
        has_default=not param.required,
        default=None if param.required else param.default,
        allowed_values=tuple(param.choices),
    )


# Without ipylab: JupyterLab runs this (an application/javascript output of a widget is
# executed); its app is reachable only when exposed (--LabApp.expose_app_in_browser=True), else
# the code goes to the clipboard.
_COPY_JS = """
(function () {
  const code = %s;
  const app = window.jupyterapp || window.jupyterlab;
  if (app && app.commands) {
    app.commands.execute('notebook:insert-cell-below').then(() =>
      app.commands.execute('notebook:replace-selection', {text: code}));
  } else if (navigator.clipboard) {
    navigator.clipboard.writeText(code).catch(() => {});
  }
})();
"""


def _frontend() -> Any:
    """ipylab's handle on JupyterLab (its commands insert cells), or None without ipylab or a kernel."""
    try:
        from IPython import get_ipython

        if get_ipython() is None or not hasattr(get_ipython(), "kernel"):
            return None
        from ipylab import JupyterFrontEnd
    except ImportError:
        return None
    try:
        return JupyterFrontEnd()
    except Exception:  # noqa: BLE001 - no frontend: the text area and the clipboard remain
        return None


class TaskBuilder(widgets.VBox):
    """Build and run a task: the form is generated from the algorithm's store metadata.

    Only entry points are offered (the federated parts run as their subtasks). ``column``
    arguments pick from the columns the nodes report (``client.columns()``), ``column_list``
    ones take several; organizations are checkboxes. Each field is checked as it is filled in
    (the message shows beside it), conditional fields appear when their condition holds, and
    "Copy as code" writes the equivalent ``client.task.create(...)`` call into a new cell
    (and always into :attr:`code_output`, to copy by hand). A central method runs at one
    organization (yours when it takes part) and gets the picked organizations as its
    ``organizations`` argument; any other method runs at every picked organization. After Run, a
    :class:`TaskMonitor` follows the task and a :class:`ResultView` shows the result (also in
    :attr:`dataframe`).

    Examples
    --------
    >>> builder = TaskBuilder(client)  # doctest: +SKIP
    >>> builder.algorithm_input.value = "v6nb/crosstab"  # doctest: +SKIP
    >>> builder.argument_inputs["row"].value = "species"  # doctest: +SKIP
    >>> print(builder.code())  # doctest: +SKIP
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
        self._columns: Any = None  # client.columns() of the collaboration (None: unknown)
        self.collaboration_input = widgets.Dropdown(layout=_WIDE)
        self.organizations_input = CheckboxGroup()
        self.organizations_input.add_class("v6nb-organizations")
        self.algorithm_input = widgets.Dropdown(
            options=[(f"{a.name} ({a.image})", image) for image, a in self.algorithms.items()],
            value=next(iter(self.algorithms), None),
            layout=_WIDE,
        )
        self.method_input = widgets.Dropdown(layout=_WIDE)
        self.method_doc = widgets.HTML()
        self.databases_input = widgets.Text(
            value="default", placeholder="labels, comma separated", layout=_WIDE
        )
        self.arguments_box = widgets.VBox()
        self.argument_inputs: dict[str, widgets.Widget] = {}
        self.argument_rows: dict[str, widgets.HBox] = {}
        self.argument_messages: dict[str, widgets.HTML] = {}
        self.run_button = widgets.Button(description="Run", button_style="success", icon="play")
        self.run_button.add_class("v6nb-run-button")
        self.run_button.on_click(lambda _b: self.run())
        self.code_button = widgets.Button(description="Copy as code", icon="code")
        self.code_button.add_class("v6nb-code-button")
        self.code_button.on_click(lambda _b: self.copy_code())
        self.code_output = widgets.Textarea(  # wide and high enough for code() without wrapping
            layout=widgets.Layout(width="60em", height="15em", display="none")
        )
        self.code_output.add_class("v6nb-code")
        self._js = widgets.Output(layout=widgets.Layout(display="none"))
        self._lab = _frontend()  # made now: it must be ready before the first click
        self.output = widgets.VBox()
        self.output.add_class("v6nb-task-output")
        row = widgets.HBox
        super().__init__(
            [
                row([_label("Collaboration"), self.collaboration_input]),
                row([_label("Organizations"), self.organizations_input]),
                row([_label("Algorithm"), self.algorithm_input]),
                row([_label("Method"), self.method_input]),
                self.method_doc,
                self.arguments_box,
                row([_label("Databases"), self.databases_input]),
                row([self.run_button, self.code_button]),
                self.code_output,
                self._js,
                self.errors.widget,
                self.output,
            ],
            **kwargs,
        )
        self.add_class("v6nb-task-builder")
        self.collaboration_input.observe(self._on_collaboration, names=["value"])
        self.algorithm_input.observe(self._on_algorithm, names=["value"])
        self.method_input.observe(self._on_method, names=["value"])
        self.databases_input.observe(self._on_databases, names=["value"])
        self._load_network()
        self._on_algorithm()

    # -- network and columns --------------------------------------------------------------------
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

    def _member_ids(self) -> list[int]:
        collab = self._collabs.get(self.collaboration_input.value) or {}
        return [int(i) for i in collab.get("organization_ids") or []]

    def _on_collaboration(self, _change: Any = None) -> None:
        ids = self._member_ids()
        self.organizations_input.options = [(self._org_names.get(i, str(i)), i) for i in ids]
        self.organizations_input.value = tuple(ids)
        self.refresh_columns()

    def refresh_columns(self) -> None:
        """Read the columns the nodes report (``client.columns()``) and offer them in the pickers."""
        self._columns = None
        reader = getattr(self.client, "columns", None)
        if reader is not None and self.collaboration_input.value is not None:
            try:
                self._columns = reader(int(self.collaboration_input.value))
            except Exception:  # noqa: BLE001 - no reports: the pickers take free text
                self._columns = None
        self._update_pickers()

    def column_names(self) -> list[str]:
        """The reported columns of the form's databases at any organization, in report order."""
        frame = self._columns
        if frame is None or len(frame) == 0:
            return []
        labels = self.database_labels()
        if labels:
            frame = frame[frame["database"].isin(labels)]
        return list(dict.fromkeys(str(c) for c in frame["column"]))

    def database_labels(self) -> list[str]:
        """The database labels the form holds."""
        return [x.strip() for x in self.databases_input.value.split(",") if x.strip()]

    def _on_databases(self, _change: Any = None) -> None:
        self._update_pickers()

    def _update_pickers(self) -> None:
        names = self.column_names()
        method = self.method
        for p in method.parameters if method else ():
            box = self.argument_inputs.get(p.name)
            if isinstance(box, widgets.Combobox):
                box.options = names
            elif isinstance(box, widgets.TagsInput):
                box.allowed_tags = names
                box.value = [v for v in box.value if not names or v in names]
        self._check_fields()

    # -- form -----------------------------------------------------------------------------------
    def _on_algorithm(self, _change: Any = None) -> None:
        algo = self.algorithm
        if algo is None:
            self.method_input.options = []
            return
        entry = algo.entry_points or algo.methods
        self.method_input.options = [(m.label, m.name) for m in entry]
        names = [m.name for m in entry]
        if names:
            self.method_input.value = (
                algo.default_method if algo.default_method in names else names[0]
            )
        self.databases_input.value = ", ".join(algo.databases)
        self._on_method()

    def _on_method(self, _change: Any = None) -> None:
        method = self.method
        params = method.parameters if method else ()
        columns = self.column_names()
        orgs = [(self._org_names.get(i, str(i)), i) for i in self._member_ids()]
        self.argument_inputs = {p.name: parameter_widget(p, columns, orgs) for p in params}
        self.argument_messages = {p.name: widgets.HTML() for p in params}
        self.argument_rows = {
            p.name: widgets.HBox(
                [
                    _label(p.label + ("" if not p.required else " *"), p.help),
                    self.argument_inputs[p.name],
                    self.argument_messages[p.name],
                ]
            )
            for p in params
        }
        for p in params:
            self.argument_rows[p.name].add_class(f"v6nb-arg-{p.name}")
            self.argument_inputs[p.name].observe(self._on_field, names=["value"])
        docs = [
            widgets.HTML(f'<small style="opacity:0.75">{_doc_html(p.help)}</small>') for p in params
        ]
        self.arguments_box.children = [
            widgets.VBox([self.argument_rows[p.name], doc])
            if p.help
            else self.argument_rows[p.name]
            for p, doc in zip(params, docs, strict=True)
        ]
        if method is None:
            self.method_doc.value = ""
            return
        where = (
            "runs at one organization and sends subtasks to the others"
            if method.central
            else "runs at every picked organization"
        )
        self.method_doc.value = f"<small>{_doc_html(method.doc)} <i>({where})</i></small>"
        self._check_fields(quiet_required=True)

    def _on_field(self, _change: Any = None) -> None:
        self._check_fields()

    def _raw_values(self) -> dict[str, Any]:
        out = {}
        method = self.method
        for p in method.parameters if method else ():
            try:
                out[p.name] = p.parse(self.argument_inputs[p.name].value)
            except ValidationError:
                out[p.name] = None
        return out

    def visible(self, name: str) -> bool:
        """Whether the argument's field is shown (its condition holds, or it has none)."""
        method = self.method
        param = next((p for p in method.parameters if p.name == name), None) if method else None
        if param is None or not param.conditional_on:
            return True
        arg = sm.Argument(
            name=param.name,
            type=param.store_type,
            has_default=True,
            conditional_on=param.conditional_on,
            conditional_operator=param.conditional_operator,
            conditional_value=param.conditional_value,
        )
        others = tuple(_argument(p) for p in method.parameters) if method else ()
        return arg.shown(self._raw_values(), others)

    def _field_problem(self, param: Parameter, *, quiet_required: bool = False) -> str:
        value = self.argument_inputs[param.name].value
        try:
            parsed = param.parse(value)
        except ValidationError as exc:
            reason = str(exc.errors.get(param.name, exc.msg))
            return "" if quiet_required and reason == "required" else reason
        if parsed is None:
            return ""
        unfit = sm.check_value(_argument(param), parsed)
        if unfit:
            return unfit
        known = set(self.column_names())
        if param.store_type in sm.COLUMN_TYPES and known:
            items = [parsed] if isinstance(parsed, str) else list(parsed)
            bad = [c for c in items if c not in known]
            if bad:
                import difflib

                close = difflib.get_close_matches(bad[0], sorted(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                return f"no column '{bad[0]}' reported{hint}"
        return ""

    def _check_fields(self, *, quiet_required: bool = False) -> dict[str, str]:
        """Show each field's problem beside it and its row only when its condition holds."""
        method = self.method
        problems: dict[str, str] = {}
        for p in method.parameters if method else ():
            if p.name not in self.argument_rows:  # the form is being rebuilt
                continue
            shown = self.visible(p.name)
            self.argument_rows[p.name].layout.display = "" if shown else "none"
            problem = self._field_problem(p, quiet_required=quiet_required) if shown else ""
            self.argument_messages[p.name].value = _message(problem)
            if problem:
                problems[p.name] = problem
        return problems

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

        Hidden (conditional) fields are left out. Raises
        :class:`~vantage6nb.errors.ValidationError` naming every bad field (each also shown
        beside its field).
        """
        method = self.method
        problems = self._check_fields()
        if problems:
            # the message names each field already: TaskCheckFailed does not repeat ``errors``
            raise TaskCheckFailed(
                "Fix the arguments: " + ", ".join(f"{k} ({v})" for k, v in problems.items()) + ".",
                errors=problems,
            )
        out: dict[str, Any] = {}
        for p in method.parameters if method else ():
            if not self.visible(p.name):
                continue
            value = p.parse(self.argument_inputs[p.name].value)
            if p.required or (value is not None and value != p.default):
                out[p.name] = value  # defaults are left to the algorithm
        return out

    # -- the task -------------------------------------------------------------------------------
    def task_arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``client.task.create`` the form stands for."""
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
        return {
            "collaboration": int(self.collaboration_input.value),
            "organizations": targets,
            "image": algo.image,
            "method": method.name,
            "kwargs": kwargs,
            "databases": self.database_labels() or None,
            "name": f"{algo.name}: {method.name}",
        }

    def code(self, client_name: str = "client") -> str:
        """The ``client.task.create(...)`` call the form stands for, as Python source.

        Raises :class:`~vantage6nb.errors.ValidationError` when the form is incomplete.
        """
        call = self.task_arguments()
        lines = []
        for key, value in call.items():
            text = pprint.pformat(value, width=88 - 5 - len(key), sort_dicts=False)
            lines.append(f"    {key}=" + text.replace("\n", "\n" + " " * (5 + len(key))) + ",")
        return f"task = {client_name}.task.create(\n" + "\n".join(lines) + "\n)\ntask.wait()\n"

    def copy_code(self) -> str | None:
        """Put the equivalent call in a new cell below (JupyterLab) and show it in :attr:`code_output`.

        IPython's ``set_next_input`` does nothing from a widget callback (it answers an execute
        request, and a click is a comm message), so the cell is inserted by JupyterLab's own
        commands (``notebook:insert-cell-below``, ``notebook:replace-selection``): through ipylab
        where it is installed (the ``notebook`` extra), else from a Javascript output through
        ``window.jupyterapp`` where JupyterLab exposes it, else the code goes to the clipboard.
        The text area below the buttons always holds it.
        """
        self.errors.clear()
        with self.errors.catch("writing the code"):
            text = self.code()
            self.code_output.value = text
            self.code_output.layout.display = ""
            if self._lab is not None:
                self._lab.commands.execute("notebook:insert-cell-below")
                self._lab.commands.execute("notebook:replace-selection", {"text": text})
            else:
                from IPython.display import Javascript

                self._js.outputs = ()
                self._js.append_display_data(Javascript(_COPY_JS % json.dumps(text)))
            return text
        return None

    def run(self) -> Any:
        """Create the task from the form and follow it; returns the Task (None when the form is invalid)."""
        self.errors.clear()
        with self.errors.catch("starting the task"):
            call = self.task_arguments()
            try:
                task = self.client.task.create(**call)
            except ValidationError as exc:  # the check before sending: mark the fields too
                for name, reason in exc.errors.items():
                    if name in self.argument_messages:
                        self.argument_messages[name].value = _message(str(reason))
                raise
            self._algo = self.algorithm
            self._start(task, call["kwargs"])
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
