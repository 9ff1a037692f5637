"""NetworkView's column table against the shared demo network (server + 3 node processes on
loopback, each reporting its penguins data): state and HTML, without a browser."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support import wait_for
from vantage6nb.common.columns import FRAME_COLUMNS
from vantage6nb.widgets import NetworkView

pytestmark = pytest.mark.integration

REPORT_S = 120.0  # a hang guard, not a speed assertion
PENGUINS = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm"]


def test_network_view_shows_the_reported_columns_per_organization_and_database(shared_demo_net):
    client = shared_demo_net.client()
    view = NetworkView(client)
    try:

        def all_reported() -> bool:
            view.refresh()  # reports arrive on their own: the view reads them on refresh
            return view.columns["organization"].nunique() == 3

        wait_for(
            all_reported, REPORT_S, "every demo node's column report in the view", interval=0.5
        )
        frame = view.columns
        assert list(frame.columns) == ["collaboration_id", *FRAME_COLUMNS]
        cid = int(client.collaboration()["id"])
        pd.testing.assert_frame_equal(
            frame.drop(columns="collaboration_id"), client.columns(), check_like=False
        )
        assert set(frame["collaboration_id"]) == {cid}
        for org, rows in frame.groupby("organization"):
            assert list(rows["column"])[:5] == PENGUINS, org
            types = dict(zip(rows["column"], rows["type"], strict=True))
            assert types["year"] == "integer" and types["bill_length_mm"] == "float"
            assert types["species"] == "string"
        html = view.html.value
        assert "<details class='v6nb-columns'>" in html
        assert f"Columns: {len(frame)} in 3 databases" in html
        for name in shared_demo_net.node_names:
            assert name in html
        assert "<code>bill_length_mm</code> <small style='color:#757575'>float</small>" in html
        assert view.errors.messages == []
    finally:
        view.close()
