"""Algorithms shipped with vantage6nb; the process runtime maps image ``v6nb/<name>`` to ``vantage6nb.algorithms.<name>``.

- :mod:`~vantage6nb.algorithms.summary`: count, missing, mean, std, min, max of numeric columns;
- :mod:`~vantage6nb.algorithms.crosstab`: the pooled contingency table of two categorical columns.

Both honour a node's small-cell threshold ``V6NB_MIN_CELL_COUNT`` (see
:func:`vantage6nb.algorithm.min_cell_count`).
"""

__all__ = ["IMAGES"]

# image name -> module the process runtime runs
IMAGES = {
    "v6nb/summary": "vantage6nb.algorithms.summary",
    "v6nb/crosstab": "vantage6nb.algorithms.crosstab",
    "v6nb/diagnostics": "vantage6nb.algorithms.diagnostics",
}
