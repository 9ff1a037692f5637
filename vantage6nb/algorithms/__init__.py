"""Algorithms shipped with vantage6nb; the process runtime maps image ``v6nb/<name>`` to ``vantage6nb.algorithms.<name>``.

- :mod:`~vantage6nb.algorithms.summary`: count, missing, mean, std, min, max of numeric columns;
- :mod:`~vantage6nb.algorithms.crosstab`: the pooled contingency table of two categorical columns.

Both return typed results (:mod:`vantage6nb.algorithm.results`), which each node checks against
its disclosure policy before release; the central parts pool only what the nodes released.
"""

__all__ = ["IMAGES"]

# image name -> module the process runtime runs
IMAGES = {
    "v6nb/summary": "vantage6nb.algorithms.summary",
    "v6nb/crosstab": "vantage6nb.algorithms.crosstab",
    "v6nb/diagnostics": "vantage6nb.algorithms.diagnostics",
}
