"""The TaskBuilder generated from store metadata, on the session's demo network (no browser):
entry points, column pickers, organization checkboxes, conditional fields, inline messages and
copy-as-code that really creates the task."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import pytest

from tests.support.waiting import wait_for
from vantage6nb import catalog
from vantage6nb.widgets import TaskBuilder
from vantage6nb.widgets._builder import CheckboxGroup, _doc_html

pytestmark = [pytest.mark.integration]

CUSTOM = {
    "name": "custom",
    "image": "v6nb/diagnostics",
    "functions": [
        {
            "name": "sleep",
            "display_name": "Sleep a while",
            "type": "federated",
            "description": "Sleep `seconds`, then answer.",
            "arguments": [
                {
                    "name": "seconds",
                    "display_name": "Seconds to sleep",
                    "type": "float",
                    "has_default_value": True,
                    "default_value": "0.1",
                },
                {
                    "name": "chatter",
                    "type": "boolean",
                    "has_default_value": True,
                    "default_value": "false",
                },
            ],
        },
        {
            "name": "blob",
            "type": "federated",
            "arguments": [
                {
                    "name": "megabytes",
                    "type": "float",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "tag",
                    "type": "string",
                    "has_default_value": True,
                    "default_value": "t",
                    "conditional_on": "megabytes",
                    "conditional_operator": ">",
                    "conditional_value": "0.5",
                },
            ],
        },
    ],
}


@pytest.fixture(scope="module")
def client(shared_demo_net):
    c = shared_demo_net.client()
    # nodes report their columns at start: wait for every organization's report
    wait_for(
        lambda: set(c.columns()["organization"]) >= set(shared_demo_net.datasets),
        timeout=60,
        what="column reports",
    )
    yield c
    c.close()


def _count(client: Any) -> int:
    return len(client.task.list())


def test_only_entry_points_with_full_labels_and_the_default_method(client):
    builder = TaskBuilder(client)
    for image, algo in builder.algorithms.items():
        builder.algorithm_input.value = image
        values = [v for _, v in builder.method_input.options]
        assert values == [m.name for m in algo.entry_points], image
        assert not any(v.endswith("_partial") for v in values)
        assert builder.method_input.value == algo.default_method
    labels = [label for label, _ in builder.algorithm_input.options]
    assert "table 1 (v6nb/table1)" in labels and "Kaplan-Meier (v6nb/survival)" in labels
    builder.algorithm_input.value = "v6nb/table1"
    assert builder.method_input.value == "table1"  # not a partial


def test_column_pickers_are_fed_by_the_reported_columns(shared_demo_net, client):
    builder = TaskBuilder(client)
    reported = list(dict.fromkeys(client.columns()["column"]))
    columns = builder.argument_inputs["columns"]
    assert isinstance(columns, widgets.TagsInput) and columns.allowed_tags == reported
    builder.algorithm_input.value = "v6nb/crosstab"
    row = builder.argument_inputs["row"]
    assert isinstance(row, widgets.Combobox) and list(row.options) == reported
    assert "species" in reported


def test_organizations_are_checkboxes(client):
    builder = TaskBuilder(client)
    group = builder.organizations_input
    assert isinstance(group, CheckboxGroup)
    ids = set(client.organizations()["id"])
    assert set(group.value) == ids and all(b.value for b in group.boxes)
    group.boxes[0].value = False
    assert set(group.value) == ids - {group.options[0][1]}


def test_conditional_fields_appear_when_their_condition_holds(client):
    builder = TaskBuilder(client)
    builder.algorithm_input.value = "v6nb/glm"
    rows = builder.argument_rows
    assert rows["exposure"].layout.display == "none" and rows["success"].layout.display == "none"
    builder.argument_inputs["family"].value = "poisson"
    assert rows["exposure"].layout.display == "" and rows["success"].layout.display == "none"
    builder.argument_inputs["family"].value = "binomial"
    assert rows["exposure"].layout.display == "none" and rows["success"].layout.display == ""


def test_typed_fields_from_a_store_document(client):
    algo = catalog.algorithm_from_store(CUSTOM)
    builder = TaskBuilder(client, algorithms={"custom": algo})
    # no central function: the federated ones are the entry points
    assert [v for _, v in builder.method_input.options] == ["sleep", "blob"]
    assert builder.method_input.options[0][0] == "Sleep a while"
    seconds = builder.argument_inputs["seconds"]
    assert isinstance(seconds, widgets.FloatText) and seconds.value == 0.1
    assert isinstance(builder.argument_inputs["chatter"], widgets.Checkbox)
    assert "<code>seconds</code>" in builder.method_doc.value
    assert "`" not in builder.method_doc.value
    builder.method_input.value = "blob"
    tag = builder.argument_rows["tag"]
    assert tag.layout.display == "none"  # megabytes is unset: 'megabytes > 0.5' does not hold
    builder.argument_inputs["megabytes"].value = "2"
    assert tag.layout.display == ""
    builder.argument_inputs["megabytes"].value = "lots"
    assert "expected float" in builder.argument_messages["megabytes"].value
    assert builder.run() is None and "megabytes" in builder.errors.messages[0]


def test_a_typod_column_is_marked_inline_and_nothing_is_sent(client):
    builder = TaskBuilder(client)
    builder.algorithm_input.value = "v6nb/crosstab"
    assert builder.argument_messages["row"].value == ""  # required, but not nagged before typing
    builder.argument_inputs["row"].value = "specie"
    assert "did you mean &#x27;species&#x27;?" in builder.argument_messages["row"].value
    before = _count(client)
    assert builder.run() is None
    assert "row (no column 'specie' reported" in builder.errors.messages[0]
    assert _count(client) == before and builder.task_id == 0


def test_copy_as_code_is_a_call_that_creates_the_task(shared_demo_net, client):
    builder = TaskBuilder(client)
    builder.algorithm_input.value = "v6nb/crosstab"
    builder.argument_inputs["row"].value = "species"
    builder.argument_inputs["col"].value = "island"
    text = builder.copy_code()
    assert text is not None and builder.code_output.value == text
    assert builder.code_output.layout.display == ""
    assert text.startswith("task = client.task.create(\n") and "method='crosstab'" in text
    js = builder._js.outputs[0]["data"]["application/javascript"]
    assert "notebook:insert-cell-below" in js and "clipboard" in js
    before = set(client.task.list()["id"])
    scope: dict[str, Any] = {"client": client}
    exec(text, scope)  # the researcher's new cell
    task = scope["task"]
    new = client.task.list().set_index("id").drop(index=list(before))
    # one task from the code, and the subtasks its central part created
    assert int(task.id) in new.index
    assert set(new.drop(index=[int(task.id)])["parent_id"]) <= {int(task.id)}
    assert task.image == "v6nb/crosstab"
    assert set(task.status()["status"]) == {"completed"}
    assert task.name == "crosstab: crosstab"


def test_doc_html_renders_backticks_as_code():
    assert _doc_html("Pool ``a`` and `b` <x>") == "Pool <code>a</code> and <code>b</code> &lt;x&gt;"
