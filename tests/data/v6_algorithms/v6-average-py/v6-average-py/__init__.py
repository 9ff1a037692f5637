"""Federated mean and grouped counts, written the way vantage6 algorithms are (not for vantage6nb).

``central_average`` creates a subtask of ``partial_average`` at every organization (or the ones
given), waits for the results and combines them; ``central_counts`` does the same for counts by
a categorical column. ``env_probe`` reports what the algorithm sees (decoded environment,
metadata from the token), for the tests.
"""

import os

import pandas as pd
from vantage6.algorithm.client import AlgorithmClient
from vantage6.algorithm.tools.decorators import algorithm_client, data, metadata
from vantage6.algorithm.tools.util import get_env_var, info


@algorithm_client
def central_average(client: AlgorithmClient, column: str, organizations=None) -> dict:
    """Pooled mean of ``column`` over the organizations' partial sums."""
    orgs = organizations or [o["id"] for o in client.organization.list()]
    info(f"creating subtasks for {orgs}")
    task = client.task.create(
        input_={"method": "partial_average", "kwargs": {"column": column}},
        organizations=orgs,
        name="partial averages",
    )
    results = client.wait_for_results(task_id=task.get("id"), interval=0.2)
    total = sum(r["sum"] for r in results)
    count = sum(r["count"] for r in results)
    runs = client.run.from_task(task.get("id"))
    return {
        "average": total / count,
        "count": count,
        "organizations": len(results),
        "runs": len(runs),
        "subtask_status": client.request(f"task/{task.get('id')}/status")["status"],
    }


@data(1)
def partial_average(df: pd.DataFrame, column: str) -> dict:
    """Sum and count of the non-missing values of ``column`` at this node."""
    values = pd.to_numeric(df[column], errors="coerce").dropna()
    return {"sum": float(values.sum()), "count": int(values.count())}


@algorithm_client
def central_counts(client: AlgorithmClient, column: str) -> dict:
    """Counts of each value of ``column``, pooled."""
    orgs = [o["id"] for o in client.organization.list()]
    task = client.task.create(
        input_={"method": "partial_counts", "kwargs": {"column": column}}, organizations=orgs
    )
    pooled: dict = {}
    for part in client.wait_for_results(task_id=task["id"], interval=0.2):
        for key, n in part.items():
            pooled[key] = pooled.get(key, 0) + n
    return pooled


@data(1)
def partial_counts(df: pd.DataFrame, column: str) -> dict:
    """Counts of each value of ``column`` here (the minimum cell size from the node's env)."""
    threshold = get_env_var("V6_AVERAGE_MIN_COUNT", default="0", as_type="int")
    counts = df[column].astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items() if v >= threshold}


@metadata
@data(1)
def env_probe(df: pd.DataFrame, meta) -> dict:  # @data puts its frame before @metadata's
    """What this run sees: rows, metadata from the token, decoded environment values."""
    label = os.environ["USER_REQUESTED_DATABASE_LABELS"].split(",")[0]
    return {
        "rows": len(df),
        "label": label,
        "uri_exists": os.path.exists(os.environ[f"{label.upper()}_DATABASE_URI"]),
        "task_id": meta.task_id,
        "node_id": meta.node_id,
        "organization_id": meta.organization_id,
        "collaboration_id": meta.collaboration_id,
        "min_count": os.environ.get("V6_AVERAGE_MIN_COUNT"),
        "input_file_exists": os.path.exists(os.environ["INPUT_FILE"]),
    }
