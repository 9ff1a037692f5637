"""demo.running() attaches only to a network that answers."""

from __future__ import annotations

import json

from vantage6nb import demo


def test_running_is_none_without_an_info_file(tmp_path):
    assert demo.running(tmp_path / "absent.json") is None


def test_running_is_none_when_the_network_is_gone(tmp_path):
    info = tmp_path / "demo.json"
    info.write_text(
        json.dumps(
            {"url": f"http://127.0.0.1:{demo.free_port()}", "username": "u", "password": "p"}
        )
    )
    assert demo.running(info) is None


def test_running_is_none_for_a_malformed_info_file(tmp_path):
    info = tmp_path / "demo.json"
    info.write_text("{not json")
    assert demo.running(info) is None
