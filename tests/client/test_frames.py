"""The conversion layer: server JSON -> DataFrames, run status, provenance, result codec, errors module."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pandas as pd
import pytest

import vantage6nb
from vantage6nb import errors
from vantage6nb.client import PlainCodec
from vantage6nb.client import _frames as frames
from vantage6nb.client._progress import ProgressLine, choose_progress
from vantage6nb.common import errors as common_errors


def test_errors_module_is_the_common_hierarchy() -> None:
    assert errors.NotFound is common_errors.NotFound
    assert vantage6nb.errors.TaskTimeout is common_errors.TaskTimeout
    assert sorted(errors.__all__) == errors.__all__
    assert set(errors.__all__) == set(common_errors.__all__)


def test_nodes_frame_has_names_online_flag_and_utc_times() -> None:
    rows = [
        {
            "id": 3,
            "name": "l-node",
            "organization_id": 1,
            "collaboration_id": 9,
            "status": "online",
            "last_seen": "2024-05-01T10:02:11Z",
        },
        {
            "id": 4,
            "name": "u-node",
            "organization_id": 2,
            "collaboration_id": 9,
            "status": "offline",
            "last_seen": None,
            "surprise": 1,
        },
    ]
    df = frames.frame(
        "node",
        rows,
        names={"organization": {1: "Leiden", 2: "Utrecht"}, "collaboration": {9: "study"}},
    )
    assert list(df.columns[:9]) == frames.COLUMNS["node"]
    assert df["organization"].tolist() == ["Leiden", "Utrecht"]
    assert df["collaboration"].tolist() == ["study", "study"]
    assert df["online"].tolist() == [True, False]
    assert df["last_seen"].iloc[0] == pd.Timestamp("2024-05-01 10:02:11", tz="UTC")
    assert pd.isna(df["last_seen"].iloc[1])
    assert df["id"].dtype == "int64"
    assert "surprise" in df.columns  # new server fields are kept, not dropped


def test_empty_list_keeps_its_columns() -> None:
    df = frames.frame("task", [])
    assert df.empty and list(df.columns) == frames.COLUMNS["task"]


def test_collaboration_frame_lists_member_names() -> None:
    df = frames.frame(
        "collaboration",
        [{"id": 1, "name": "s", "encrypted": False, "organization_ids": [1, 5]}],
        names={"organization": {1: "Leiden"}},
    )
    assert df.loc[0, "organizations"] == ["Leiden", "5"]


def test_status_frame_columns_and_values() -> None:
    runs = [
        {
            "id": 10,
            "organization_id": 2,
            "node_id": 4,
            "status": "failed",
            "reason": "crashed: exit 1",
            "started_at": "2024-05-01T10:00:00Z",
            "finished_at": "2024-05-01T10:00:05Z",
            "node_status": "online",
        },
        {"id": 11, "organization_id": 7, "node_id": None, "status": "pending", "reason": None},
    ]
    df = frames.status_frame(runs, organization_names={2: "Utrecht"}, node_names={4: "u-node"})
    assert list(df.columns) == frames.STATUS_COLUMNS
    assert df["organization"].tolist() == ["Utrecht", "organization 7"]
    assert df.loc[0, "node"] == "u-node" and pd.isna(df.loc[1, "node"])
    assert df["reason"].tolist() == ["crashed: exit 1", ""]
    assert (df.loc[0, "finished"] - df.loc[0, "started"]).total_seconds() == 5
    assert pd.isna(df.loc[1, "started"])
    assert df["run_id"].tolist() == [10, 11]


def test_provenance_in_attrs() -> None:
    when = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    df = frames.with_provenance(
        pd.DataFrame({"a": [1]}),
        task_id=5,
        image="v6nb/summary",
        organizations=("Leiden", "Utrecht"),
        created=when,
        method="summary",
    )
    assert df.attrs == {
        "task_id": 5,
        "image": "v6nb/summary",
        "organizations": ["Leiden", "Utrecht"],
        "created": "2024-05-01T10:00:00+00:00",
        "method": "summary",
    }


def test_to_timestamp_accepts_naive_and_offset_times() -> None:
    assert frames.to_timestamp("2024-05-01T12:00:00+02:00") == pd.Timestamp(
        "2024-05-01 10:00", tz="UTC"
    )
    assert frames.to_timestamp("2024-05-01T10:00:00") == pd.Timestamp("2024-05-01 10:00", tz="UTC")
    assert frames.to_timestamp("") is None


def test_plain_codec_round_trip_and_bad_result() -> None:
    codec = PlainCodec()
    doc = {"method": "m", "args": [1], "kwargs": {"x": [1.5, None]}}
    text = codec.encode_input(1, doc, {})
    assert codec.decode_result(1, text, {}) == doc
    assert codec.decode_result(1, None, {}) is None
    with pytest.raises(errors.DecryptionError, match="setup_encryption"):
        codec.decode_result(3, "bm90IGpzb24=", {})


class _FakeTask:  # only what ProgressLine reads
    id, name, method = 12, "summary", "summary"

    def __init__(self, statuses: list[str]) -> None:
        self.runs = [{"status": s} for s in statuses]


def test_progress_line_rewrites_one_line() -> None:
    out = io.StringIO()
    line = ProgressLine(out)
    line(_FakeTask(["pending", "active"]))
    line(_FakeTask(["pending", "active"]))  # unchanged: not written again
    line(_FakeTask(["completed", "completed"]))
    line.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "task 12 summary: 0/2 done (active 1, pending 1)" in text
    assert "2/2 done (completed 2)" in text


def test_choose_progress() -> None:
    assert choose_progress(False) is None
    assert isinstance(choose_progress(True), ProgressLine)
    cb = lambda task: None  # noqa: E731
    assert choose_progress(cb) is cb
