"""``LocalNetwork`` runs a vantage6-style algorithm (the real vantage6-algorithm-tools, in their venv)
as vantage6's MockAlgorithmClient does: mock_client and mock_data, no node environment."""

from __future__ import annotations

import json
import subprocess

from tests.data.v6_algorithms.tools import ROOT, venv_python

SCRIPT = """
import json
import pandas as pd
from vantage6nb.algorithm.testing import LocalNetwork
from vantage6nb.errors import DisclosureRefused

frames = [pd.DataFrame({"x": [1, 2, 3], "g": ["a", "b", "a"]}),
          pd.DataFrame({"x": [4.5, None], "g": ["b", "b"]})]
net = LocalNetwork("v6-average-py", frames, policy={"untyped_images": ["local/v6-average-py"]})
out = {
    "average": net.run("central_average", kwargs={"column": "x"}),
    "counts": net.run("central_counts", kwargs={"column": "g"}),
    "partial": net.run("partial_average", kwargs={"column": "x"}, organization=1),
}
try:  # as on a node: plain JSON leaves only for an image the policy trusts
    LocalNetwork("v6-average-py", frames).run("central_average", kwargs={"column": "x"})
except DisclosureRefused as exc:
    out["untrusted"] = exc.rule
print(json.dumps(out))
"""


def test_vantage6_style_algorithm_runs_in_a_local_network() -> None:
    out = subprocess.run(
        [str(venv_python()), "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["average"] == {
        "average": (1 + 2 + 3 + 4.5) / 4,
        "count": 4,
        "organizations": 2,
        "runs": 2,
        "subtask_status": "completed",
    }
    assert got["counts"] == {"a": 2, "b": 3}
    assert got["partial"] == {"sum": 4.5, "count": 1}
    assert got["untrusted"] == "untyped"
