"""``import vantage6nb as v6``: light, with the client, analysis, demo and widgets one attribute away."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import vantage6nb as v6
from vantage6nb.common.version import __version__


def _run(code: str) -> list:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_submodules_are_attributes_and_load_on_first_use():
    code = (
        "import sys, json, vantage6nb as v6\n"
        "heavy = ('pandas', 'ipywidgets', 'requests', 'socketio')\n"
        "seen = [sorted(m for m in heavy if m in sys.modules)]\n"
        "seen.append([callable(v6.demo.start), callable(v6.analysis.summary)])\n"
        "seen.append('ipywidgets' in sys.modules)\n"
        "seen.append(v6.widgets.TaskMonitor.__name__)\n"
        "print(json.dumps(seen))"
    )
    assert _run(code) == [[], [True, True], False, "TaskMonitor"]


def test_all_names_resolve_and_version_is_the_shared_one():
    assert v6.__all__ == sorted(v6.__all__)
    for name in v6.__all__:
        assert getattr(v6, name) is not None
    assert v6.__version__ == __version__
    assert {"analysis", "demo", "widgets"} <= set(dir(v6))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        v6.nothing  # noqa: B018
