"""Federated Cox proportional hazards model (Efron ties, as lifelines' CoxPHFitter), by Newton-Raphson.

The entry point :func:`cox` first runs :func:`cox_describe` at every node: its complete-case
``count``, predictor kinds and levels (as for the GLM) and a ``count_table`` of its event times
(the policy's table rules apply: exact times are identifying, so group them first). The union
of the event times is the model's time axis. Each Newton-Raphson iteration runs
:func:`cox_iteration`: at each event time a node returns the sums over its risk set
(``exp(x'b)``, ``x exp(x'b)``, ``x x' exp(x'b)``), the same sums over its events there, and its
event counts, in one ``estimates`` value of ``n`` records with ``parameters`` = the coefficients
plus one per event time at which it has records at risk (the Cox model as a Poisson model has
one baseline parameter per event time; the policy's ``glm_ratio`` applies to that size). The
central pools the sums, computes Efron's partial log-likelihood, its gradient and Hessian, and
steps until the Newton decrement is below 1e-10 (halving a step that lowers the likelihood).

Image ``v6nb/cox``. Run it with :func:`vantage6nb.analysis.cox`; :func:`glm_frame` (the GLM's,
re-exported here) makes the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.results import (
    count,
    count_table,
    estimates,
    is_suppressed,
    is_typed_value,
    typed,
)
from vantage6nb.common.errors import ValidationError

from ._common import run_partials, store_databases, store_organizations
from .glm import (
    check_predictors,
    complete_cases,
    design_matrix,
    design_terms,
    glm_frame,
    harmonise_predictors,
    iterate_partials,
    label,
    predictor_kind,
    withheld_refusal,
)

__all__ = ["cox", "cox_describe", "cox_iteration", "efron", "glm_frame"]

#: Newton-Raphson stops when the Newton decrement ``g' H^-1 g / 2`` is below this.
DECREMENT = 1e-10
MAX_ITER = 50


@entry_point
@algorithm_client
def cox(
    client: AlgorithmClient,
    duration: str,
    event: str,
    predictors: Sequence[str],
    categorical: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
    max_iter: int = MAX_ITER,
    organizations: Sequence[int] | None = None,
) -> Any:
    """Fit a Cox model of ``duration``/``event`` on ``predictors`` as lifelines does on the pooled data.

    Records with a missing model value are left out. Returns a typed result with ``terms`` and
    ``estimates`` (coef, std_err, fit: log_likelihood, nobs, events, iterations, converged);
    ``vantage6nb.algorithms.glm.glm_frame`` makes the table (with hazard ratios).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> rng = np.random.default_rng(2)
    >>> frames = [pd.DataFrame({"x": rng.normal(size=60), "t": rng.integers(1, 5, 60),
    ...                         "e": rng.integers(0, 2, 60)}) for _ in range(2)]
    >>> net = LocalNetwork("vantage6nb.algorithms.cox", frames, policy={"small_cells": "suppress"})
    >>> table = glm_frame(net.run("cox", kwargs={"duration": "t", "event": "e", "predictors": ["x"]}))
    >>> list(table.columns[:3]), table.attrs["ties"]
    (['coef', 'exp_coef', 'std_err'], 'efron')
    """
    import numpy as np

    spec = _check_spec(duration, event, predictors, categorical, reference)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValidationError(
            "max_iter must be a whole number >= 1.", errors={"max_iter": max_iter}
        )
    columns = [duration, event, *spec["predictors"]]
    parts = run_partials(
        client,
        "cox_describe",
        {"spec": spec},
        organizations,
        name="cox (describe)",
        columns=columns,
    )
    orgs, _ = harmonise_predictors(parts, spec)
    times: set[float] = set()
    for part in parts:
        table = part.value.get("times")
        if is_suppressed(table) or not is_typed_value(table, "count_table"):
            raise withheld_refusal(part.organization_id, table, "its event times")
        times.update(float(c[0]) for c in table["cells"])
    if not times:
        raise ValidationError(
            f"No organization has an event ('{event}' is 0 or False everywhere): nothing to fit.",
            errors={"event": event},
        )
    spec["times"] = sorted(times)
    terms = design_terms(spec)
    p = len(terms)
    beta = np.zeros(p)
    step = 1.0
    best: tuple[float, Any, Any, Any] | None = None  # ll, gradient, hessian, beta
    delta = np.zeros(p)
    converged = False
    iterations = 0
    events = nobs = 0
    hessian = None
    while iterations < max_iter:
        iterations += 1
        sums = _iterate(client, spec, beta.tolist(), orgs, columns)
        events = int(round(float(sums["d"].sum())))
        nobs = int(sums.pop("n"))
        ll, grad, hessian = efron(sums, beta)
        if best is not None and (not math.isfinite(ll) or ll < best[0] - 1e-12 * abs(best[0])):
            step /= 2.0  # the step went too far: go half as far from the best point
            beta = best[3] + step * delta
            continue
        best = (ll, grad, hessian, beta.copy())
        try:
            delta = np.linalg.solve(-hessian, grad)
        except np.linalg.LinAlgError:
            raise ValidationError(
                f"The model's terms are collinear ({', '.join(terms)}); drop a predictor or "
                "merge levels.",
                errors={"predictors": list(terms)},
            ) from None
        step = 1.0
        if float(grad @ delta) / 2.0 < DECREMENT:
            converged = True
            beta = beta + delta  # the last Newton step, as lifelines takes it
            break
        beta = beta + delta
    assert best is not None
    ll, _, hessian, _ = best
    cov = np.linalg.inv(-hessian)
    fit = {
        "model": "cox",
        "ties": "efron",
        "log_likelihood": ll,
        "nobs": nobs,
        "events": events,
        "event_times": len(spec["times"]),
        "iterations": iterations,
        "converged": converged,
    }
    values = {
        "coef": beta.tolist(),
        "std_err": [math.sqrt(max(v, 0.0)) for v in np.diag(cov)],
        "cov": cov.tolist(),
        "fit": fit,
    }
    return typed(
        {
            "model": "cox",
            "terms": terms,
            "outcome": f"{duration}/{event}",
            "estimates": estimates(values, n=nobs, parameters=p),
            "rows": count(nobs),
        }
    )


@federated
@data(1)
def cox_describe(df: Any, spec: Mapping[str, Any]) -> Any:
    """This node's complete-case count, predictor kinds and levels, and its event times (a table)."""
    spec = dict(spec)
    frame, missing = complete_cases(df, spec)
    out: dict[str, Any] = {"rows": count(len(frame)), "kinds": {}, "dtypes": {}, "levels": {}}
    for name in spec["predictors"]:
        kind = predictor_kind(df[name], name in spec["categorical"])
        out["kinds"][name] = kind
        out["dtypes"][name] = str(df[name].dtype)
        if kind == "categorical":
            labels = frame[name].map(label)
            cells = [[k, int(n)] for k, n in labels.value_counts(sort=False).items()]
            out["levels"][name] = count_table([name], cells, total=len(frame))
    t, e = _times_events(frame, spec)
    happened = t[e == 1.0]
    values, counts = (happened, happened) if not len(happened) else _unique(happened)
    cells = [[_number(v), int(n)] for v, n in zip(values, counts, strict=True)]
    out["times"] = count_table([spec["outcome"]], cells, total=int(len(happened)))
    return typed(out)


@federated
@data(1)
def cox_iteration(df: Any, spec: Mapping[str, Any], beta: Sequence[float]) -> Any:
    """This node's risk-set and event sums at each of the model's event times, at ``beta``."""
    import numpy as np

    spec = dict(spec)
    frame, _ = complete_cases(df, spec)
    t, e = _times_events(frame, spec)
    x = design_matrix(frame, spec)
    n, p = x.shape
    times = np.asarray(spec["times"], dtype="float64")
    w = np.exp(x @ np.asarray(beta, dtype="float64"))
    # risk set at time t_j: records with t >= t_j; sums from the latest time backwards
    order = np.argsort(t, kind="stable")
    ts, ws, xs = t[order], w[order], x[order]
    first = np.searchsorted(ts, times, side="left")  # the first record at risk at each t_j

    def at_risk(values: Any) -> Any:
        tail = np.cumsum(values[::-1], axis=0)[::-1]
        tail = np.concatenate([tail, np.zeros((1, *tail.shape[1:]))], axis=0)
        return tail[first]

    wx = ws[:, None] * xs
    wxx = wx[:, :, None] * xs[:, None, :]
    ev = e == 1.0
    j = np.searchsorted(times, t[ev])
    if len(j) and (j.max() >= len(times) or not np.array_equal(times[j], t[ev])):
        raise ValidationError(
            "This node has an event time the model does not know; run the fit again.",
            errors={"times": "unknown"},
        )
    j_total = len(times)

    def at_events(values: Any) -> Any:
        out = np.zeros((j_total, *values.shape[1:]))
        np.add.at(out, j, values)
        return out

    xe, we = x[ev], w[ev]
    values = {
        "s0": at_risk(ws).tolist(),
        "s1": at_risk(wx).tolist(),
        "s2": at_risk(wxx).tolist(),
        "e0": at_events(we).tolist(),
        "e1": at_events(we[:, None] * xe).tolist(),
        "e2": at_events((we[:, None] * xe)[:, :, None] * xe[:, None, :]).tolist(),
        "d": at_events(np.ones(len(xe))).tolist(),
        "xsum": xe.sum(axis=0).tolist() if len(xe) else [0.0] * p,
    }
    at_risk_times = int(np.count_nonzero(first < n))
    return typed({"sums": estimates(values, n=n, parameters=p + at_risk_times)})


def efron(sums: Mapping[str, Any], beta: Any) -> tuple[float, Any, Any]:
    """Efron's partial log-likelihood, its gradient and Hessian from pooled per-event-time sums.

    Examples
    --------
    >>> import numpy as np
    >>> sums = {"s0": np.array([3.0]), "s1": np.zeros((1, 1)), "s2": np.ones((1, 1, 1)),
    ...         "e0": np.array([1.0]), "e1": np.zeros((1, 1)), "e2": np.ones((1, 1, 1)),
    ...         "d": np.array([1.0]), "xsum": np.zeros(1)}
    >>> round(efron(sums, np.zeros(1))[0], 6)  # one event among three at risk: -log 3
    -1.098612
    """
    import numpy as np

    ll = float(np.asarray(sums["xsum"]) @ beta)
    grad = np.array(sums["xsum"], dtype="float64")
    p = len(grad)
    hess = np.zeros((p, p))
    for jj in np.nonzero(sums["d"] > 0)[0]:
        d = int(round(float(sums["d"][jj])))
        frac = np.arange(d) / d
        phi = sums["s0"][jj] - frac * sums["e0"][jj]
        c1, cl1 = np.sum(1 / phi), np.sum(frac / phi)
        c2, cl2, cll2 = np.sum(1 / phi**2), np.sum(frac / phi**2), np.sum(frac**2 / phi**2)
        s1, e1 = sums["s1"][jj], sums["e1"][jj]
        ll -= float(np.sum(np.log(phi)))
        grad -= s1 * c1 - e1 * cl1
        outer = (
            np.outer(s1, s1) * c2
            - (np.outer(s1, e1) + np.outer(e1, s1)) * cl2
            + np.outer(e1, e1) * cll2
        )
        hess -= sums["s2"][jj] * c1 - sums["e2"][jj] * cl1 - outer
    return ll, grad, hess


def _iterate(
    client: AlgorithmClient,
    spec: Mapping[str, Any],
    beta: list[float],
    orgs: list[int],
    columns: list[str],
) -> dict[str, Any]:
    import numpy as np

    parts = iterate_partials(
        client,
        "cox_iteration",
        {"spec": dict(spec), "beta": beta},
        orgs,
        name="cox (iteration)",
        columns=columns,
    )
    pooled: dict[str, Any] = {}
    for part in parts:
        sums = (part.value or {}).get("sums") if isinstance(part.value, dict) else None
        if not is_typed_value(sums, "estimates"):
            raise withheld_refusal(part.organization_id, sums, "its risk-set sums")
        for key, value in sums["values"].items():
            arr = np.asarray(value, dtype="float64")
            pooled[key] = arr if key not in pooled else pooled[key] + arr
        pooled["n"] = pooled.get("n", 0) + int(sums["n"])
    return pooled


def _check_spec(
    duration: Any, event: Any, predictors: Any, categorical: Any, reference: Any
) -> dict[str, Any]:
    spec = check_predictors(duration, predictors, categorical, reference, what="duration")
    if not isinstance(event, str) or not event or event == duration or event in predictors:
        raise ValidationError(
            "event must be a column name other than the duration and the predictors.",
            errors={"event": event},
        )
    if not spec["predictors"]:
        raise ValidationError(
            "A Cox model needs at least one predictor (for the survival curve alone, use "
            "Kaplan-Meier).",
            errors={"predictors": "empty"},
        )
    spec.update(event=event, intercept=False, family="cox")
    return spec


def _times_events(frame: Any, spec: Mapping[str, Any]) -> tuple[Any, Any]:
    import numpy as np
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    dur, ev = frame[spec["outcome"]], frame[spec["event"]]
    if is_bool_dtype(dur) or not is_numeric_dtype(dur):
        raise ValidationError(
            f"The duration '{spec['outcome']}' is not numeric at this node ({dur.dtype}).",
            errors={"duration": spec["outcome"]},
        )
    t = dur.to_numpy(dtype="float64")
    if (t < 0).any():
        raise ValidationError(
            f"The duration '{spec['outcome']}' has negative values at this node.",
            errors={"duration": spec["outcome"]},
        )
    if not (is_bool_dtype(ev) or is_numeric_dtype(ev)):
        raise ValidationError(
            f"The event '{spec['event']}' must be 0/1 or boolean; at this node it is {ev.dtype}.",
            errors={"event": spec["event"]},
        )
    e = ev.to_numpy(dtype="float64")
    if not np.isin(e, (0.0, 1.0)).all():
        raise ValidationError(
            f"The event '{spec['event']}' must be 0/1 or boolean; this node has other values.",
            errors={"event": spec["event"]},
        )
    return t, e


def _unique(values: Any) -> tuple[Any, Any]:
    import numpy as np

    return np.unique(values, return_counts=True)


def _number(value: Any) -> int | float:
    v = float(value)
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "Cox model",
    "image": "v6nb/cox",
    "description": "A Cox proportional-hazards model fitted on the pooled data, as lifelines does.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/cox.py",
    "functions": [
        {
            "name": "cox",
            "display_name": "Cox model",
            "type": "central",
            "description": "Fit a Cox model of ``duration``/``event`` on ``predictors``, as lifelines does on the pooled data.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "duration",
                    "display_name": "Duration",
                    "type": "column",
                    "description": "Follow-up time.",
                },
                {
                    "name": "event",
                    "display_name": "Event",
                    "type": "column",
                    "description": "1 (or True) for an event, 0 for censored.",
                },
                {
                    "name": "predictors",
                    "display_name": "Predictors",
                    "type": "column_list",
                    "description": "The explanatory columns.",
                },
                {
                    "name": "categorical",
                    "display_name": "Categorical",
                    "type": "column_list",
                    "description": "Numeric predictors to treat as categories.",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "reference",
                    "display_name": "Reference levels",
                    "type": "json",
                    "description": "{predictor: level} (default: the first level in sorted order).",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "max_iter",
                    "display_name": "Maximum iterations",
                    "type": "integer",
                    "has_default_value": True,
                    "default_value": "50",
                },
                store_organizations(),
            ],
            "ui_visualizations": [
                {"name": "Coefficients", "type": "table", "schema": {"location": ["terms"]}}
            ],
        },
        {
            "name": "cox_describe",
            "type": "federated",
            "description": "This node's complete-case count, predictor kinds and levels, and event times.",
            "databases": store_databases(),
            "arguments": [{"name": "spec", "type": "json"}],
        },
        {
            "name": "cox_iteration",
            "type": "federated",
            "description": "This node's risk-set and event sums at each event time, at beta.",
            "databases": store_databases(),
            "arguments": [{"name": "spec", "type": "json"}, {"name": "beta", "type": "float_list"}],
        },
    ],
}
