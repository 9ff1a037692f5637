"""The node's disclosure gate and its settings: guarded functions, the output check, the policy CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from node_app.audit import AuditLog
from node_app.config import load_config
from node_app.disclosure import DisclosureGate, Screened
from vantage6nb.common.disclosure import DisclosurePolicy
from vantage6nb.common.errors import ConfigurationError

ROLES = {"summary": "entry_point", "summary_partial": "federated"}


def gate(
    policy: DisclosurePolicy | None = None,
    *,
    parents: dict[int, str] | None = None,
    audit: AuditLog | None = None,
) -> DisclosureGate:
    return DisclosureGate(
        policy or DisclosurePolicy(),
        functions=lambda image, digest: ROLES if "summary" in image else None,
        parent_image=lambda task_id: (parents or {}).get(task_id),
        audit=audit,
    )


def task(**kw: Any) -> dict[str, Any]:
    return {"id": 9, "image": "v6nb/summary", "parent_id": None, **kw}


def test_a_federated_part_asked_for_directly_is_refused_with_the_entry_point_named(
    tmp_path: Path,
) -> None:
    audit = AuditLog(tmp_path / "audit")
    screened = gate(audit=audit).screen(1, task(), "summary_partial", b"{}", None)
    assert screened.refusal is not None and screened.refusal.rule == "direct_part"
    assert "summary_partial" in screened.refusal.what and "(summary)" in screened.refusal.what
    lines = [json.loads(x) for x in (tmp_path / "audit" / "audit.log").read_text().splitlines()]
    assert lines[-1]["rule"] == "direct_part" and lines[-1]["allowed"] is False


def test_a_federated_part_runs_as_a_subtask_of_its_own_image() -> None:
    parents = {4: "127.0.0.1:5000/v6nb/summary:1.0", 5: "v6nb/crosstab"}
    g = gate(parents=parents)
    assert g.screen(1, task(parent_id=4), "summary_partial", b"{}", None).refusal is None
    other = g.screen(1, task(parent_id=5), "summary_partial", b"{}", None)
    assert other.refusal is not None and other.refusal.rule == "direct_part"
    gone = g.screen(1, task(parent_id=6), "summary_partial", b"{}", None)  # parent deleted
    assert gone.refusal is not None


def test_direct_parts_allows_direct_calls_and_entry_points_are_known() -> None:
    g = gate(DisclosurePolicy(direct_parts=("v6nb/summary",)))
    assert g.screen(1, task(), "summary_partial", b"{}", None).refusal is None
    screened = gate().screen(1, task(), "summary", b"{}", None)
    assert screened.refusal is None and screened.entry_point
    undeclared = gate().screen(1, task(image="other/img"), "anything", b"{}", None)
    assert undeclared.refusal is None and not undeclared.entry_point


def test_a_denied_column_in_the_request_is_refused_before_the_run() -> None:
    asked = json.dumps({"method": "summary", "kwargs": {"columns": ["ssn"]}}).encode()
    screened = gate(DisclosurePolicy(denied_columns=("ssn",))).screen(
        1, task(), "summary", asked, None
    )
    assert screened.refusal is not None and screened.refusal.rule == "denied_column"


def test_release_writes_the_checked_form_and_audits_each_decision(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit")
    output = tmp_path / "output.json"
    output.write_text(
        json.dumps({"v6nb.result": 1, "value": {"rows": {"@type": "count", "n": 3}}}),
        encoding="utf-8",
    )
    path, refusal = gate(audit=audit).release(2, "v6nb/summary", output, Screened(), b"{}")
    assert refusal is None and path == tmp_path / "released.json"
    assert json.loads(path.read_text())["value"]["rows"]["@type"] == "suppressed"
    event = json.loads((tmp_path / "audit" / "audit.log").read_text().splitlines()[-1])
    assert event["event"] == "disclosure" and event["outcome"] == "released"
    assert {"rule": "min_count", "outcome": "suppressed", "count": 1} in event["decisions"]


def test_release_of_untyped_output_depends_on_trust(tmp_path: Path) -> None:
    output = tmp_path / "output.json"
    output.write_bytes(b'{"raw": [1, 2, 3]}' + b" " * 100_000)
    path, refusal = gate().release(2, "v6nb/diagnostics", output, Screened(), b"")
    assert path is None and refusal is not None and refusal.rule == "untyped"
    trusted = gate(DisclosurePolicy(untyped_images=("v6nb/diagnostics",)))
    path, refusal = trusted.release(2, "v6nb/diagnostics", output, Screened(), b"")
    assert refusal is None and path == output  # released as it is, never parsed


def test_policy_settings_layer_and_fail_clearly(tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump({"api_key": "k", "disclosure": {"min_count": 10}}))
    env = {
        "V6NB_NODE_DISCLOSURE_EXTREMES": "round",
        "V6NB_NODE_DISCLOSURE_DENIED_COLUMNS": '["ssn"]',
    }
    policy = load_config(cfg, environ=env).disclosure
    assert (policy.min_count, policy.extremes, policy.denied_columns) == (10, "round", ("ssn",))
    assert (
        load_config(None, environ={}, overrides={"api_key": "k"}).disclosure == DisclosurePolicy()
    )
    cfg.write_text(yaml.safe_dump({"api_key": "k", "disclosure": {"min_cell_count": 5}}))
    with pytest.raises(ConfigurationError, match="min_cell_count"):
        load_config(cfg, environ={})


def test_v6nb_node_policy_prints_the_effective_policy(tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump({"api_key": "k", "disclosure": {"small_cells": "suppress"}}))
    env = {"V6NB_NODE_DISCLOSURE_MIN_COUNT": "7", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "node_app", "policy", "--config", str(cfg), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    ).stdout
    policy = json.loads(out)["disclosure"]
    assert policy["min_count"] == 7 and policy["small_cells"] == "suppress"
    assert policy["extremes"] == "deny" and policy["dominance"] == {"n": 2, "k": 0.9}
    text = subprocess.run(
        [sys.executable, "-m", "node_app", "policy", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.returncode == 0 and "small_cells: suppress" in text.stdout
    cfg.write_text(yaml.safe_dump({"api_key": "k", "disclosure": {"extremes": "maybe"}}))
    bad = subprocess.run(
        [sys.executable, "-m", "node_app", "policy", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "disclosure.extremes" in bad.stderr
