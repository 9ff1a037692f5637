"""The algorithm developer kit: the wrapper that runs a method, data loading, the proxy client.

Write an algorithm as a module of plain functions::

    from vantage6nb.algorithm import algorithm_client, data

    @data(1)
    def partial(df, column):
        return {"n": int(df[column].count()), "sum": float(df[column].sum())}

    @algorithm_client
    def central(client, column):
        orgs = [o["id"] for o in client.organization.list()]
        task = client.task.create({"method": "partial", "kwargs": {"column": column}}, orgs)
        parts = client.wait_for_results(task["id"], timeout=300)
        return sum(p["sum"] for p in parts) / sum(p["n"] for p in parts)

test it in-process with :class:`vantage6nb.algorithm.testing.LocalNetwork`, and run it on a node
with ``python -m vantage6nb.algorithm <module>``. Nothing here imports pandas until data is loaded.
"""

from ._client import AlgorithmClient, algorithm_client
from ._context import get_env, min_cell_count
from ._data import data, load_database
from ._wrap import wrap_algorithm

__all__ = [
    "AlgorithmClient",
    "algorithm_client",
    "data",
    "get_env",
    "load_database",
    "min_cell_count",
    "wrap_algorithm",
]
