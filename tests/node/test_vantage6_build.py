"""``v6nb algorithm build`` on a vantage6-style package: module and wrapper from its own layout."""

from __future__ import annotations

from pathlib import Path

from tests.data.v6_algorithms.tools import AVERAGE, AVERAGE_MODULE
from vantage6nb.algorithm.build import package_layout


def test_vantage6_template_layout_needs_no_module() -> None:
    assert package_layout(AVERAGE) == ("v6-average-py", AVERAGE_MODULE, True)


def test_folder_named_like_the_distribution_without_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "v6-crosstab-py").mkdir()
    (tmp_path / "v6-crosstab-py" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "v6-crosstab-py"\n')
    assert package_layout(tmp_path) == ("v6-crosstab-py", "v6-crosstab-py", False)


def test_our_own_layout_keeps_its_module(tmp_path: Path) -> None:
    (tmp_path / "my_mean").mkdir()
    (tmp_path / "my_mean" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-mean"\n')
    assert package_layout(tmp_path) == ("my-mean", "my_mean", False)
