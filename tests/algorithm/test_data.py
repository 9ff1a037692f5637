"""``@data`` and ``load_database``: every database type, the encoded environment, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from vantage6nb.algorithm import data, get_env, load_database
from vantage6nb.algorithm._context import database_sources, requested_labels
from vantage6nb.common import contract
from vantage6nb.common.errors import ConfigurationError

FRAME = pd.DataFrame({"x": [1.5, 2.5, None], "g": ["a", "b", "a"]})


def _env(monkeypatch, tmp_path, databases, *, encode=True, extra=None):
    env = contract.build_environment(
        input_file=str(tmp_path / "in.json"),
        output_file=str(tmp_path / "out.json"),
        token_file=str(tmp_path / "token"),
        temporary_folder=str(tmp_path),
        host="http://127.0.0.1",
        port=1,
        api_path="",
        databases=databases,
        extra=extra,
        encode=encode,
    )
    for key in list(env) + [contract.ENCODED_MARKER]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def files(tmp_path):
    paths = {
        "csv": tmp_path / "d.csv",
        "parquet": tmp_path / "d.parquet",
        "excel": tmp_path / "d.xlsx",
    }
    FRAME.to_csv(paths["csv"], index=False)
    FRAME.to_parquet(paths["parquet"])
    FRAME.to_excel(paths["excel"], index=False)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'd.db'}")
    FRAME.to_sql("patients", engine, index=False)
    FRAME.head(1).to_sql("other", engine, index=False)
    engine.dispose()
    paths["sql"] = f"sqlite:///{tmp_path / 'd.db'}"
    return paths


@data(1)
def _first(df):
    return df


@data(2)
def _two(df1, df2, *, tag=""):
    return df1, df2, tag


@pytest.mark.parametrize("encode", [True, False])
@pytest.mark.parametrize("typ", ["csv", "parquet", "excel"])
def test_data_loads_each_file_type_from_the_contract_environment(
    monkeypatch, tmp_path, files, typ, encode
):
    _env(monkeypatch, tmp_path, {"default": (str(files[typ]), typ)}, encode=encode)
    df = _first()
    pd.testing.assert_frame_equal(df, FRAME, check_dtype=False)


def test_sql_query_from_node_environment(monkeypatch, tmp_path, files):
    _env(
        monkeypatch,
        tmp_path,
        {"db": (files["sql"], "sql")},
        extra={"DB_DATABASE_QUERY": "SELECT x FROM patients WHERE g = 'a'"},
    )
    df = _first()
    assert list(df.columns) == ["x"] and len(df) == 2


def test_sql_query_from_kwargs_is_taken_out_before_the_call(monkeypatch, tmp_path, files):
    _env(monkeypatch, tmp_path, {"db": (files["sql"], "sql")})
    df = _first(query="SELECT * FROM other")
    assert len(df) == 1
    df = _first(query="patients")  # a bare table name
    pd.testing.assert_frame_equal(df, FRAME, check_dtype=False)


def test_sql_without_query_needs_a_single_table(monkeypatch, tmp_path, files):
    _env(monkeypatch, tmp_path, {"db": (files["sql"], "sql")})
    with pytest.raises(ConfigurationError, match="2 tables"):
        _first()
    single = sa.create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    FRAME.to_sql("only", single, index=False)
    single.dispose()
    assert len(load_database(f"sqlite:///{tmp_path / 'one.db'}", "sql")) == 3


def test_two_databases_arrive_in_requested_order_before_other_arguments(
    monkeypatch, tmp_path, files
):
    _env(
        monkeypatch,
        tmp_path,
        {"second": (str(files["parquet"]), "parquet"), "first": (str(files["csv"]), "csv")},
    )
    assert requested_labels() == ["second", "first"]
    df1, df2, tag = _two(tag="t")
    assert tag == "t" and len(df1) == len(df2) == 3
    assert [s.type for s in database_sources()] == ["parquet", "csv"]


def test_too_few_databases_is_a_clear_error(monkeypatch, tmp_path, files):
    _env(monkeypatch, tmp_path, {"only": (str(files["csv"]), "csv")})
    with pytest.raises(
        ConfigurationError, match=r"needs 2 database\(s\) but the task requested 1 \(only\)"
    ):
        _two()
    _env(monkeypatch, tmp_path, {})
    with pytest.raises(ConfigurationError, match="requested 0"):
        _first()


@pytest.mark.parametrize(
    ("uri", "typ", "match"),
    [
        ("/nonexistent/x.csv", "csv", "does not exist"),
        ("x.csv", "json", "Unknown database type"),
        ("not a url", "sql", "Cannot open SQL database"),
    ],
)
def test_bad_databases_raise_configuration_errors(uri, typ, match):
    with pytest.raises(ConfigurationError, match=match):
        load_database(uri, typ)


def test_get_env_decodes_vantage6_encoded_values(monkeypatch):
    monkeypatch.delenv(contract.ENCODED_MARKER, raising=False)
    monkeypatch.setenv("SOME_VALUE", contract.encode_env_value("sqlite:///a b.db"))
    assert get_env("SOME_VALUE") == "sqlite:///a b.db"


def test_data_rejects_nonsense_counts():
    with pytest.raises(ValueError):
        data(0)


def test_wrap_algorithm_runs_a_data_method_in_a_real_process(tmp_path, files):
    mod = tmp_path / "algo_mod.py"
    mod.write_text(
        "from vantage6nb.algorithm import data\n"
        "@data(1)\n"
        "def mean_of(df, column):\n"
        "    return {'mean': df[column].mean(), 'n': int(df[column].count())}\n"
    )
    (tmp_path / "in.json").write_text(
        json.dumps(contract.make_input("mean_of", kwargs={"column": "x"}))
    )
    env = contract.build_environment(
        input_file=str(tmp_path / "in.json"),
        output_file=str(tmp_path / "out.json"),
        token_file=str(tmp_path / "token"),
        temporary_folder=str(tmp_path),
        host="http://127.0.0.1",
        port=1,
        api_path="",
        databases={"default": (str(files["excel"]), "excel")},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "vantage6nb.algorithm", "algo_mod"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), **env},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == {"mean": 2.0, "n": 2}


def test_wrap_algorithm_reports_missing_method_and_module(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps(contract.make_input("_private")))
    env = contract.build_environment(
        input_file=str(tmp_path / "in.json"),
        output_file=str(tmp_path / "out.json"),
        token_file=str(tmp_path / "token"),
        temporary_folder=str(tmp_path),
        host="h",
        port=1,
        api_path="",
        databases={},
    )
    for module in ("vantage6nb.algorithms.summary", "no_such_module_xyz"):
        proc = subprocess.run(
            [sys.executable, "-m", "vantage6nb.algorithm", module],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1
        assert ("no method '_private'" in proc.stderr) or ("no_such_module_xyz" in proc.stderr)
        assert not (tmp_path / "out.json").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "vantage6nb.algorithm"],
        env={"PATH": "/usr/bin:/bin", **env, "PKG_NAME": "vantage6nb.algorithms.diagnostics"},
        capture_output=True,
        text=True,
    )
    assert "no method '_private'" in proc.stderr  # PKG_NAME names the module when no argument does


def test_min_cell_count_reads_encoded_and_plain_values(monkeypatch):
    from vantage6nb.algorithm import min_cell_count

    monkeypatch.setenv(contract.ENCODED_MARKER, "1")
    monkeypatch.setenv("V6NB_MIN_CELL_COUNT", contract.encode_env_value("5"))
    assert min_cell_count() == 5
    monkeypatch.setenv("V6NB_MIN_CELL_COUNT", "7")  # not encoded although the marker is set
    assert min_cell_count() == 7
    monkeypatch.setenv("V6NB_MIN_CELL_COUNT", "many")
    with pytest.raises(ConfigurationError, match="whole number"):
        min_cell_count()


def test_sqlite_reads_the_same_without_sqlalchemy(monkeypatch, tmp_path):
    # The shipped algorithm images carry no SQLAlchemy: an SQLite file (the node mounts it
    # read-only) is read with the standard library, with the same frame as through SQLAlchemy.
    frame = pd.DataFrame(
        {"id": [1, 2, 3], "big": [2**60, None, 3], "name": ["a", "b", None], "x": [0.5, 1.5, None]}
    )
    uri = f"sqlite:///{tmp_path / 'r.db'}"
    engine = sa.create_engine(uri)
    frame.to_sql("patients", engine, index=False)
    pd.DataFrame({"y": [1]}).to_sql("other", engine, index=False)
    engine.dispose()
    query = "SELECT id, name FROM patients WHERE id > 1"
    with_sa = [load_database(uri, "sql", query=q) for q in ("patients", query)]
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # import sqlalchemy now fails
    without = [load_database(uri, "sql", query=q) for q in ("patients", query)]
    for a, b in zip(with_sa, without, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert without[0]["big"].tolist()[0] == 2**60  # exact, as with SQLAlchemy
    with pytest.raises(ConfigurationError, match="2 tables"):
        load_database(uri, "sql")
    with pytest.raises(ConfigurationError, match="needs SQLAlchemy") as info:
        load_database("postgresql://user:secret@127.0.0.1/db", "sql")
    assert "secret" not in str(info.value)
