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

mark the per-node part ``@federated`` and the method researchers call ``@entry_point`` (the node
refuses a direct call of a part), test it in-process with
:class:`vantage6nb.algorithm.testing.LocalNetwork`, and run it on a node with
``python -m vantage6nb.algorithm <module>`` (``--describe <module>`` prints the roles). Nothing
here imports pandas until data is loaded.
"""

from ._client import AlgorithmClient, algorithm_client
from ._context import get_env, min_cell_count
from ._data import data, load_database
from ._roles import entry_point, federated
from ._wrap import wrap_algorithm
from .results import TypedResult, typed

__all__ = [
    "AlgorithmClient",
    "TypedResult",
    "algorithm_client",
    "data",
    "entry_point",
    "federated",
    "get_env",
    "load_database",
    "min_cell_count",
    "typed",
    "wrap_algorithm",
]
