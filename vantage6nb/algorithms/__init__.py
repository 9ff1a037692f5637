"""Algorithms shipped with vantage6nb; the process runtime maps image ``v6nb/<name>`` to ``vantage6nb.algorithms.<name>``.

- :mod:`~vantage6nb.algorithms.summary`: count, missing, mean, std, min, max of numeric columns;
- :mod:`~vantage6nb.algorithms.crosstab`: the pooled contingency table of two categorical columns;
- the statistics pack: :mod:`~vantage6nb.algorithms.table1` (Table 1 by group),
  :mod:`~vantage6nb.algorithms.ttest`, :mod:`~vantage6nb.algorithms.correlation` and
  :mod:`~vantage6nb.algorithms.survival` (Kaplan-Meier and log-rank); the chi-square test reads
  the crosstab's table.

All return typed results (:mod:`vantage6nb.algorithm.results`), which each node checks against
its disclosure policy before release; the central parts pool only what the nodes released.
"""

__all__ = ["IMAGES"]

# image name -> module the process runtime runs
IMAGES = {
    "v6nb/summary": "vantage6nb.algorithms.summary",
    "v6nb/crosstab": "vantage6nb.algorithms.crosstab",
    "v6nb/diagnostics": "vantage6nb.algorithms.diagnostics",
    "v6nb/glm": "vantage6nb.algorithms.glm",
    "v6nb/cox": "vantage6nb.algorithms.cox",
    # the statistics pack
    "v6nb/table1": "vantage6nb.algorithms.table1",
    "v6nb/ttest": "vantage6nb.algorithms.ttest",
    "v6nb/correlation": "vantage6nb.algorithms.correlation",
    "v6nb/survival": "vantage6nb.algorithms.survival",
}
