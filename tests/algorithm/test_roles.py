"""``@federated`` / ``@entry_point``, ``describe`` and ``python -m vantage6nb.algorithm --describe``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from vantage6nb.algorithm import algorithm_client, data, entry_point, federated
from vantage6nb.algorithm._roles import FUNCTIONS_LABEL, describe, describe_command

REPO = Path(__file__).resolve().parents[2]

MODULE = textwrap.dedent(
    """
    from vantage6nb.algorithm import algorithm_client, data, entry_point, federated
    from vantage6nb.algorithm import federated as _also_private

    print("importing prints nothing to describe's stdout")

    @federated
    @data(1)
    def part_outer(df):
        return len(df)

    @data(1)
    @federated
    def part_inner(df):
        return len(df)

    @entry_point
    @algorithm_client
    def central_outer(client):
        return 1

    @algorithm_client
    @entry_point
    def central_inner(client):
        return 1

    def plain():
        return 0

    @federated
    def _private_part():
        return 0
    """
)
TABLE = {
    "central_inner": "entry_point",
    "central_outer": "entry_point",
    "part_inner": "federated",
    "part_outer": "federated",
}


@pytest.fixture
def roles_module(tmp_path: Path, monkeypatch) -> str:
    name = re.sub(r"\W", "_", f"v6nb_roles_{tmp_path.name}")
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _run(*args: str, cwd: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{path}:{REPO}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "vantage6nb.algorithm", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("role", "decorator", "wrapper"),
    [
        (role, dec, wrap)
        for role, dec in (("federated", federated), ("entry_point", entry_point))
        for wrap in (data(1), data, algorithm_client)
    ],
)
def test_role_survives_the_kits_wrappers_in_either_order(role, decorator, wrapper) -> None:
    def f(x):
        return x

    def g(x):
        return x

    assert decorator(wrapper(f)).__v6nb_role__ == role  # role outside
    assert wrapper(decorator(g)).__v6nb_role__ == role  # role inside: functools.wraps copies it


def test_decorators_return_the_function_itself_bare_or_called() -> None:
    def f():
        return 1

    def g():
        return 2

    assert federated(f) is f and entry_point()(g) is g
    assert (f.__v6nb_role__, g.__v6nb_role__) == ("federated", "entry_point")


def test_one_role_per_function() -> None:
    with pytest.raises(ValueError, match="already @federated"):

        @entry_point
        @federated
        def f():
            return 1


def test_only_functions_take_a_role() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        federated(3)  # type: ignore[call-overload]


def test_describe_lists_public_callables_with_a_role(roles_module: str) -> None:
    assert describe(roles_module) == TABLE


def test_describe_takes_a_module_object_and_lists_imported_parts() -> None:
    # An imported part is callable through the wrapper's dispatch, so it is listed too.
    @federated
    def part():
        return 1

    mod = types.ModuleType("m")
    mod.part = part  # type: ignore[attr-defined]
    mod.helper = len  # type: ignore[attr-defined]
    mod.not_callable = types.SimpleNamespace(__v6nb_role__="federated")  # type: ignore[attr-defined]
    assert describe(mod) == {"part": "federated"}


def test_describe_command_prints_json_only(roles_module: str, capsys) -> None:
    assert describe_command([roles_module]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"functions": TABLE}
    assert "importing prints" in err  # the module's own print went to stderr


def test_describe_command_defaults_to_pkg_name(roles_module: str, capsys) -> None:
    assert describe_command([], environ={"PKG_NAME": roles_module}) == 0
    assert json.loads(capsys.readouterr().out) == {"functions": TABLE}


@pytest.mark.parametrize("argv", [[], ["a", "b"]])
def test_describe_command_usage(argv, capsys) -> None:
    assert describe_command(argv, environ={}) == 2
    assert "--describe <module>" in capsys.readouterr().err


def test_describe_command_names_a_module_it_cannot_import(capsys) -> None:
    assert describe_command(["v6nb_no_such_module"]) == 1
    assert "cannot import 'v6nb_no_such_module'" in capsys.readouterr().err


def test_cli_prints_the_table(roles_module: str, tmp_path: Path) -> None:
    out = _run("--describe", roles_module, cwd=tmp_path, path=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"functions": TABLE}


def test_cli_without_describe_still_runs_the_wrapper(tmp_path: Path) -> None:
    # a module named "describe" is still a module: only "--describe" switches the command
    out = _run("describe", cwd=tmp_path, path=tmp_path)
    assert out.returncode == 2 and "INPUT_FILE and OUTPUT_FILE must be set" in out.stderr


def test_label_name_is_the_nodes() -> None:
    from node_app.runtimes.docker_images import FUNCTIONS_LABEL as NODE_LABEL

    assert FUNCTIONS_LABEL == NODE_LABEL == "org.vantage6nb.functions"
