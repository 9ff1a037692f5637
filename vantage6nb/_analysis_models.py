"""Model analyses for :mod:`vantage6nb.analysis`: federated GLMs and Cox models, and a coefficient plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from .algorithms.glm import glm_frame

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["cox", "glm", "plot_coefficients"]

GLM_IMAGE = "v6nb/glm"
COX_IMAGE = "v6nb/cox"


def glm(
    client: Client,
    outcome: str,
    predictors: Sequence[str] | str,
    family: str = "gaussian",
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    *,
    categorical: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
    offset: str | None = None,
    exposure: str | None = None,
    success: Any = None,
    intercept: bool = True,
    max_iter: int = 100,
    database: str = "default",
    timeout: float | None = 300,
) -> pd.DataFrame:
    """A generalized linear model fitted on the pooled records, as ``statsmodels`` GLM fits it.

    One central task runs at your own organization; each IRLS iteration asks every node for its
    ``X'WX``, ``X'Wz`` and deviance (typed ``estimates`` its policy checks). No record leaves a
    data station. Records with a missing model value are left out, as statsmodels' formulas do.

    Parameters
    ----------
    client : Client
        A logged-in client.
    outcome : str
        The outcome column: numeric (gaussian), 0/1 or boolean (binomial; or any column with
        ``success``), counts (poisson).
    predictors : str or sequence of str
        Predictor columns; text, category and boolean ones are categorical.
    family : {"gaussian", "binomial", "poisson"}
        With its canonical link (identity, logit, log).
    collaboration, organizations
        As for :func:`vantage6nb.analysis.summary`.
    categorical : sequence of str, optional
        Numeric predictors to treat as categorical (codes).
    reference : mapping, optional
        The reference level of a categorical predictor, e.g. ``{"island": "Dream"}``; default the
        first level in sorted order (as patsy chooses it).
    offset, exposure : str, optional
        A column added to the linear predictor, or one whose log is.
    success : optional
        For binomial: the level of ``outcome`` that counts as 1.
    intercept : bool
        Whether the model has an intercept.
    max_iter : int
        IRLS iterations at most (statsmodels' ``maxiter``).
    database, timeout
        The database label each node reads; seconds to wait for the fit.

    Returns
    -------
    pandas.DataFrame
        Indexed by term (``Intercept``, ``x``, ``island[T.Dream]``): coef, std_err, z, p_value,
        ci_low, ci_high (95%). ``df.attrs`` holds family, link, deviance, llf, aic, scale, nobs,
        df_model, df_resid, iterations and converged as statsmodels reports them, and the
        provenance (task_id, image, organizations, created).

    Raises
    ------
    DisclosureRefused
        When a node's policy withheld its part (too few records for the model, a rare level):
        the error names the organization; leave it out with ``organizations=[...]``.

    Examples
    --------
    >>> from vantage6nb import analysis
    >>> analysis.glm(client, "sex", ["bill_length_mm", "species"], family="binomial",
    ...              success="male")  # doctest: +SKIP
                            coef   std_err  ...
    term
    Intercept           -31.7...
    """
    if isinstance(predictors, str):
        predictors = [predictors]
    kwargs = {
        "outcome": outcome,
        "predictors": list(predictors),
        "family": family,
        "categorical": list(categorical) if categorical is not None else None,
        "reference": dict(reference) if reference is not None else None,
        "offset": offset,
        "exposure": exposure,
        "success": success,
        "intercept": intercept,
        "max_iter": max_iter,
    }
    return _fit(
        client,
        collaboration,
        organizations,
        image=GLM_IMAGE,
        method="glm",
        kwargs=kwargs,
        database=database,
        timeout=timeout,
        name=f"glm {outcome} ({family})",
    )


def cox(
    client: Client,
    duration: str,
    event: str,
    predictors: Sequence[str] | str,
    collaboration: int | str | None = None,
    organizations: Sequence[int | str] | None = None,
    *,
    categorical: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
    max_iter: int = 50,
    database: str = "default",
    timeout: float | None = 300,
) -> pd.DataFrame:
    """A Cox proportional hazards model on the pooled records, as ``lifelines.CoxPHFitter`` fits it.

    Efron's method for ties (lifelines' default). Nodes first release their event times as a
    count table (the policy's table rules apply: group exact times first, e.g. to months), then,
    per Newton-Raphson iteration, their risk-set and event sums at each event time (typed
    ``estimates`` with one parameter per event time plus the coefficients).

    Parameters
    ----------
    client : Client
        A logged-in client.
    duration, event : str
        The time column and the event column (1/True: the event happened; 0/False: censored).
    predictors : str or sequence of str
        Predictor columns; text, category and boolean ones are categorical (indicators, as for
        :func:`glm`).
    collaboration, organizations, categorical, reference, database, timeout
        As for :func:`glm`.
    max_iter : int
        Newton-Raphson iterations at most.

    Returns
    -------
    pandas.DataFrame
        Indexed by term: coef, exp_coef (the hazard ratio), std_err, z, p_value, ci_low, ci_high,
        hr_low, hr_high (95%). ``df.attrs`` holds log_likelihood (the partial log-likelihood),
        nobs, events, iterations, converged, ties and the provenance.

    Examples
    --------
    >>> analysis.cox(client, "months", "died", ["age", "stage"])  # doctest: +SKIP
    """
    if isinstance(predictors, str):
        predictors = [predictors]
    kwargs = {
        "duration": duration,
        "event": event,
        "predictors": list(predictors),
        "categorical": list(categorical) if categorical is not None else None,
        "reference": dict(reference) if reference is not None else None,
        "max_iter": max_iter,
    }
    return _fit(
        client,
        collaboration,
        organizations,
        image=COX_IMAGE,
        method="cox",
        kwargs=kwargs,
        database=database,
        timeout=timeout,
        name=f"cox {duration}/{event}",
    )


def plot_coefficients(
    df: pd.DataFrame, *, ax: Any = None, exponentiate: bool | None = None, intercept: bool = False
) -> Any:
    """A coefficient plot of a :func:`glm` or :func:`cox` table: each term's estimate and 95% interval.

    Cox tables are drawn as hazard ratios on a log axis (``exponentiate`` None); binomial and
    poisson ones may be drawn as odds or rate ratios with ``exponentiate=True``. Returns the
    matplotlib Axes (a new Figure's when ``ax`` is None; no pyplot state is touched).

    Examples
    --------
    >>> table = pd.DataFrame({"coef": [0.5, -0.2], "ci_low": [0.1, -0.5], "ci_high": [0.9, 0.1]},
    ...                      index=pd.Index(["x", "g[T.b]"], name="term"))
    >>> ax = plot_coefficients(table)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['g[T.b]', 'x']
    """
    from matplotlib.figure import Figure

    if exponentiate is None:
        exponentiate = df.attrs.get("kind") == "cox"
    rows = df if intercept else df.drop(index=["Intercept"], errors="ignore")
    rows = rows.iloc[::-1]  # the first term on top
    est, lo, hi = rows["coef"], rows["ci_low"], rows["ci_high"]
    if exponentiate:
        import numpy as np

        est, lo, hi = np.exp(est), np.exp(lo), np.exp(hi)
    if ax is None:
        ax = Figure(figsize=(6, 0.5 + 0.4 * max(len(rows), 1))).subplots()
    y = list(range(len(rows)))
    ax.errorbar(est, y, xerr=[est - lo, hi - est], fmt="o", capsize=3)
    ax.axvline(1.0 if exponentiate else 0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_yticks(y, [str(t) for t in rows.index])
    if exponentiate:
        ax.set_xscale("log")
        ax.set_xlabel("hazard ratio" if df.attrs.get("kind") == "cox" else "exp(coef)")
    else:
        ax.set_xlabel("coefficient")
    title = df.attrs.get("outcome") or df.attrs.get("kind") or ""
    if title:
        ax.set_title(f"{title}: estimates and 95% intervals")
    ax.figure.tight_layout()
    return ax


def _fit(
    client: Client,
    collaboration: int | str | None,
    organizations: Sequence[int | str] | None,
    *,
    image: str,
    method: str,
    kwargs: dict[str, Any],
    database: str,
    timeout: float | None,
    name: str,
) -> pd.DataFrame:
    from .analysis import _central_result, _provenance, _run_central

    task, names = _run_central(
        client,
        collaboration,
        organizations,
        image=image,
        method=method,
        kwargs=kwargs,
        database=database,
        timeout=timeout,
        name=name,
    )
    df = glm_frame(_central_result(task, "terms"))
    return _provenance(df, task, names)
