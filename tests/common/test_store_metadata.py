"""Algorithm metadata in vantage6's algorithm-store format: reading, writing, entry points, values."""

from __future__ import annotations

import json

import pytest

from vantage6nb import catalog
from vantage6nb.common import store_metadata as sm

# An algorithm as a vantage6 algorithm store answers GET /algorithm/<id> (4.x output schema:
# ids, conditional_on_id, allowed_values as [{"value": ...}], string default values, standalone,
# ui_visualizations), written from vantage6-algorithm-store's model and output schema.
STORE_ANSWER = json.loads(
    """
{
  "id": 7, "name": "Average", "image": "harbor2.vantage6.ai/demo/average",
  "description": "Average of a column", "partitioning": "horizontal",
  "vantage6_version": "4.7", "code_url": "https://github.com/IKNL/v6-average-py",
  "documentation_url": "https://docs.example/average", "status": "approved",
  "digest": "sha256:0123", "submitted_at": "2024-05-01", "developer_id": 1, "reviews": [],
  "functions": [
    {"id": 11, "name": "central_average", "display_name": "Average", "type": "central",
     "standalone": true, "description": "Pooled `mean` of a column",
     "databases": [{"id": 3, "name": "default", "description": "data"}],
     "arguments": [
       {"id": 21, "name": "column_name", "display_name": "Column", "type": "column",
        "description": "Column to average", "has_default_value": false, "default_value": null,
        "conditional_on_id": null, "conditional_operator": null, "conditional_value": null,
        "is_frontend_only": false, "allowed_values": []},
       {"id": 22, "name": "method", "display_name": "Method", "type": "string",
        "has_default_value": true, "default_value": "mean", "conditional_on_id": null,
        "allowed_values": [{"value": "mean"}, {"value": "median"}], "is_frontend_only": false},
       {"id": 23, "name": "trim", "display_name": "Trim fraction", "type": "float",
        "has_default_value": true, "default_value": "0.1", "conditional_on_id": 22,
        "conditional_operator": "==", "conditional_value": "mean", "is_frontend_only": false,
        "allowed_values": []},
       {"id": 24, "name": "organizations", "display_name": "Organizations",
        "type": "organization_list", "has_default_value": true, "default_value": null,
        "conditional_on_id": null, "is_frontend_only": false, "allowed_values": []},
       {"id": 25, "name": "by", "type": "column_list", "has_default_value": true,
        "default_value": "[\\"sex\\"]", "conditional_on_id": null, "allowed_values": []},
       {"id": 26, "name": "strict", "type": "boolean", "has_default_value": true,
        "default_value": "false", "conditional_on_id": null, "allowed_values": []}
     ],
     "ui_visualizations": [
       {"id": 31, "name": "Average", "type": "table", "description": "",
        "schema": {"location": ["table"], "columns": ["mean", "n"]}},
       {"id": 32, "name": "Trend", "type": "line", "schema": {"x": "year", "y": "mean"}}
     ]},
    {"id": 12, "name": "partial_average", "display_name": "", "type": "federated",
     "standalone": false, "description": "Sum and count at one node",
     "databases": [{"id": 4, "name": "default", "description": ""}],
     "arguments": [{"id": 27, "name": "column_name", "type": "column",
                    "has_default_value": false, "conditional_on_id": null, "allowed_values": []}],
     "ui_visualizations": []}
  ]
}
"""
)


def test_reads_a_store_answer():
    meta = sm.algorithm_from_store(STORE_ANSWER)
    assert meta.image == "harbor2.vantage6.ai/demo/average" and meta.name == "Average"
    assert [f.name for f in meta.entry_points] == ["central_average"]
    central = meta.function("central_average")
    assert central is not None and central.type == "central"
    by_name = {a.name: a for a in central.arguments}
    assert by_name["column_name"].required and by_name["column_name"].type == "column"
    assert by_name["method"].allowed_values == ("mean", "median")
    assert by_name["method"].default == "mean"
    assert by_name["trim"].default == 0.1 and by_name["trim"].conditional_on == "method"
    assert by_name["by"].default == ["sex"] and by_name["strict"].default is False
    assert by_name["organizations"].has_default and by_name["organizations"].default is None
    assert [(v.type, dict(v.schema)) for v in central.visualizations] == [
        ("table", {"location": ["table"], "columns": ["mean", "n"]}),
        ("line", {"x": "year", "y": "mean"}),
    ]
    assert central.databases == (sm.Database("default", "data"),)


def test_write_then_read_gives_the_same_objects():
    meta = sm.algorithm_from_store(STORE_ANSWER)
    body = sm.algorithm_to_store(meta)
    # the store's POST body: conditional_on by name, no ids, defaults as text
    trim = body["functions"][0]["arguments"][2]
    assert trim["conditional_on"] == "method" and "conditional_on_id" not in trim
    assert trim["default_value"] == "0.1"
    assert body["functions"][0]["arguments"][4]["default_value"] == '["sex"]'
    assert [f["standalone"] for f in body["functions"]] == [True, False]
    assert sm.algorithm_from_store(json.dumps(body)) == meta


@pytest.mark.parametrize("image", sorted(catalog.known_algorithms()))
def test_every_shipped_algorithm_round_trips(image):
    algo = catalog.get_algorithm(image)
    assert algo.metadata is not None
    doc = algo.to_store()
    again = catalog.algorithm_from_store(json.loads(json.dumps(doc)))
    assert again.to_store() == doc  # standalone is written out: the objects agree but for it
    assert again.methods == algo.methods
    assert [m.name for m in again.methods] == [m.name for m in algo.methods]
    assert again.default_method == algo.default_method
    for f in doc["functions"]:
        for a in f.get("arguments", []):
            assert a["type"] in sm.ARGUMENT_TYPES


def test_shipped_entry_points_are_the_central_functions():
    entry = {i: [m.name for m in a.entry_points] for i, a in catalog.known_algorithms().items()}
    assert entry["v6nb/summary"] == ["summary"]
    assert entry["v6nb/table1"] == ["table1"]
    assert entry["v6nb/glm"] == ["glm"] and entry["v6nb/survival"] == ["kaplan_meier"]
    assert all(len(v) == 1 for v in entry.values())
    diag = catalog.find_algorithm("v6nb/diagnostics")
    assert diag is not None and "blob_central" in [m.name for m in diag.entry_points]
    assert "v6nb/diagnostics" not in catalog.known_algorithms()  # not offered in the builder


def test_federated_functions_are_entry_points_without_a_central_one():
    meta = sm.algorithm_from_store(
        {"name": "x", "image": "me/x", "functions": [{"name": "a", "type": "federated"}]}
    )
    assert [f.name for f in meta.entry_points] == ["a"]
    # vantage6 5's step_type is read as the function type
    meta = sm.algorithm_from_store(
        {
            "image": "me/y",
            "functions": [
                {"name": "agg", "step_type": "central_compute"},
                {"name": "part", "step_type": "federated_compute"},
            ],
        }
    )
    assert [f.name for f in meta.entry_points] == ["agg"]


def test_a_package_can_ship_store_json(tmp_path, monkeypatch):
    pkg = tmp_path / "my_algo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("def avg(df, column):\n    return 1\n")
    body = sm.algorithm_to_store(sm.algorithm_from_store(STORE_ANSWER))
    (pkg / "store.json").write_text(json.dumps(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    algo = catalog.algorithm_from_module("my_algo", image="me/my_algo")
    assert algo.image == "me/my_algo" and algo.default_method == "central_average"
    assert algo.method("central_average").takes_organizations


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"functions": [{"name": "f", "type": "sideways"}]}, "central' or 'federated"),
        ({"functions": [{"name": "f", "arguments": [{"name": "a", "type": "str"}]}]}, "column"),
        (
            {
                "functions": [
                    {
                        "name": "f",
                        "arguments": [
                            {
                                "name": "a",
                                "type": "string",
                                "conditional_on": "zz",
                                "conditional_operator": "==",
                                "has_default_value": True,
                            }
                        ],
                    }
                ]
            },
            "not one of its arguments",
        ),
        ({"name": "nothing"}, "needs 'functions'"),
        ("{not json", "not JSON"),
        (
            {"functions": [{"name": "f", "ui_visualizations": [{"type": "line", "schema": {}}]}]},
            "'x' and 'y'",
        ),
    ],
)
def test_bad_documents_say_what_is_wrong(doc, match):
    with pytest.raises(sm.MetadataError, match=match):
        sm.algorithm_from_store(doc)


@pytest.mark.parametrize(
    ("type_", "value", "ok"),
    [
        ("column", "age", True),
        ("column", 3, False),
        ("column_list", ["a", "b"], True),
        ("column_list", "a", True),
        ("column_list", ["a", 1], False),
        ("integer", 3, True),
        ("integer", True, False),
        ("integer", 3.0, False),
        ("float", 3, True),
        ("float", "3", False),
        ("boolean", False, True),
        ("boolean", 0, False),
        ("integer_list", [1, 2], True),
        ("float_list", [1, 2.5], True),
        ("organization_list", [1, "x"], False),
        ("json", {"a": [1]}, True),
        ("string_list", ("a",), True),
    ],
)
def test_check_value_follows_store_types(type_, value, ok):
    assert (sm.check_value(sm.Argument("a", type_), value) is None) is ok


def test_conditions_compare_typed_values():
    args = (
        sm.Argument("family", "string", has_default=True, default="gaussian"),
        sm.Argument("n", "integer", has_default=True, default=1),
        sm.Argument(
            "exposure",
            "column",
            has_default=True,
            conditional_on="family",
            conditional_operator="==",
            conditional_value="poisson",
        ),
        sm.Argument(
            "k",
            "integer",
            has_default=True,
            conditional_on="n",
            conditional_operator=">",
            conditional_value="2",
        ),
    )
    exposure, k = args[2], args[3]
    assert not exposure.shown({"family": "gaussian"}, args)
    assert exposure.shown({"family": "poisson"}, args)
    assert k.shown({"n": 3}, args) and not k.shown({"n": 2}, args)
    assert not k.shown({"n": None}, args)  # no value: the comparison does not hold
