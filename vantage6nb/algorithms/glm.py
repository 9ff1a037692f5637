"""Federated generalized linear models (gaussian, binomial, poisson) fitted by IRLS, as statsmodels does.

The entry point :func:`glm` first runs :func:`glm_describe` at every node: its complete-case
``count``, the kind and dtype of each predictor, a ``count_table`` of the levels of each
categorical predictor (so the levels are harmonised across nodes, with the policy's level rules)
and, for gaussian and poisson, the ``moments`` of the outcome (statsmodels starts from the pooled
mean). Then each IRLS iteration runs :func:`glm_iteration`: a node returns one ``estimates``
value (``X'WX``, ``X'Wz`` and its deviance, from its ``n`` complete records with ``parameters`` =
the model's coefficients), which its node checks (``min_count``, ``glm_ratio``). The central
solves the pooled normal equations, follows statsmodels' IRLS (same start, same deviance
criterion, same iteration count) and returns coefficients, standard errors, z, p-values and 95%
intervals, deviance, log-likelihood and AIC.

A node whose count or estimates its policy withheld stops the fit with a refusal naming it: the
pooled model would silently miss its records. Leave it out with ``organizations=[...]``.

Image ``v6nb/glm``. Run it with :func:`vantage6nb.analysis.glm`; :func:`glm_frame` makes the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

from vantage6nb.algorithm import AlgorithmClient, algorithm_client, data, entry_point, federated
from vantage6nb.algorithm.results import (
    count,
    count_of,
    count_table,
    estimates,
    is_suppressed,
    is_typed_value,
    moments,
    typed,
)
from vantage6nb.common.errors import DisclosureRefused, ValidationError

from ._common import (
    PARTIAL_TIMEOUT_S,
    Part,
    only_result,
    run_partials,
    store_databases,
    store_organizations,
)

__all__ = [
    "FAMILIES",
    "GLM_COLUMNS",
    "glm",
    "glm_describe",
    "glm_frame",
    "glm_iteration",
]

#: The families :func:`glm` fits, each with its canonical link (identity, logit, log).
FAMILIES = ("gaussian", "binomial", "poisson")
#: The columns of a model table, in this order.
GLM_COLUMNS = ["coef", "std_err", "z", "p_value", "ci_low", "ci_high"]
# statsmodels' IRLS defaults: deviance criterion, absolute tolerance, iteration limit
TOL = 1e-8
MAX_ITER = 100
_Z975 = NormalDist().inv_cdf(0.975)
_FLOAT_EPS = 2.220446049250313e-16


@entry_point
@algorithm_client
def glm(
    client: AlgorithmClient,
    outcome: str,
    predictors: Sequence[str],
    family: str = "gaussian",
    categorical: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
    offset: str | None = None,
    exposure: str | None = None,
    success: Any = None,
    intercept: bool = True,
    max_iter: int = MAX_ITER,
    organizations: Sequence[int] | None = None,
) -> Any:
    """Fit ``outcome ~ predictors`` over ``organizations`` as ``statsmodels`` GLM does on the pooled data.

    Records with a missing value in any model column are left out (statsmodels' ``missing="drop"``).
    Text, category and boolean predictors (and those named in ``categorical``) are categorical:
    one indicator per level but the reference (``reference[name]``, default the first level in
    sorted order), named ``name[T.level]`` as in a statsmodels formula. ``offset`` names a column
    added to the linear predictor; ``exposure`` one whose log is. For ``binomial`` the outcome is
    0/1 or boolean, or any column with ``success`` naming the level counted as 1.

    Returns a typed result: ``terms``, ``estimates`` (coef, std_err per term), and ``fit``
    (deviance, llf, aic, scale, nobs, df_resid, iterations, converged); :func:`glm_frame`
    turns it into a table.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from vantage6nb.algorithm.testing import LocalNetwork
    >>> rng = np.random.default_rng(1)
    >>> frames = [pd.DataFrame({"x": rng.normal(size=40)}) for _ in range(2)]
    >>> for f in frames:
    ...     f["y"] = 1.0 + 2.0 * f["x"] + rng.normal(size=40)
    >>> table = glm_frame(LocalNetwork("vantage6nb.algorithms.glm", frames).run(
    ...     "glm", kwargs={"outcome": "y", "predictors": ["x"]}))
    >>> list(table.index), table.attrs["iterations"]
    (['Intercept', 'x'], 3)
    """
    import numpy as np

    spec = _check_spec(
        outcome, predictors, family, categorical, reference, offset, exposure, success, intercept
    )
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValidationError(
            "max_iter must be a whole number >= 1.", errors={"max_iter": max_iter}
        )
    columns = _columns_of(spec)
    parts = run_partials(
        client,
        "glm_describe",
        {"spec": spec},
        organizations,
        name="glm (describe)",
        columns=columns,
    )
    orgs, _, spec, ybar = _harmonise(parts, spec)
    spec["ybar"] = ybar
    terms = design_terms(spec)
    p = len(terms)
    history: list[float] = []  # the deviance at each round's mu
    criterion = [math.inf]  # statsmodels' criterion: each deviance over the scale before it
    beta: list[float] | None = None
    previous_xtwx = None
    converged = False
    iterations = 0
    while True:
        xtwx, xtwz, deviance, saturated, nobs = _iterate(client, spec, beta, orgs, columns)
        history.append(deviance)
        before = history[-2] if len(history) > 1 else deviance
        criterion.append(deviance / _scale(spec["family"], before, nobs - p))
        if beta is not None:  # statsmodels checks each new criterion against the one before
            iterations += 1
            if abs(criterion[-1] - criterion[-2]) <= TOL:
                converged = True
                break
            if iterations >= max_iter:
                break
        previous_xtwx = xtwx
        beta = _solve(xtwx, xtwz, terms).tolist()
    assert beta is not None and previous_xtwx is not None
    df_resid = nobs - p
    family_ = spec["family"]
    if family_ == "gaussian":
        scale = deviance / df_resid if df_resid > 0 else math.nan
        llf = -nobs / 2.0 * (math.log(2 * math.pi * deviance / nobs) + 1.0)
    else:
        scale = 1.0
        llf = -deviance / 2.0 + saturated
    cov = np.linalg.inv(previous_xtwx) * scale
    fit = {
        "family": family_,
        "link": {"gaussian": "identity", "binomial": "logit", "poisson": "log"}[family_],
        "deviance": deviance,
        "llf": llf,
        "aic": -2.0 * llf + 2.0 * p,
        "scale": scale,
        "nobs": nobs,
        "df_model": p - 1 if spec["intercept"] else p,
        "df_resid": df_resid,
        "iterations": iterations,
        "converged": converged,
        "deviance_history": history,
    }
    values = {
        "coef": list(beta),
        "std_err": [math.sqrt(max(v, 0.0)) for v in np.diag(cov)],
        "cov": cov.tolist(),
        "fit": fit,
    }
    return typed(
        {
            "model": "glm",
            "terms": terms,
            "outcome": spec["outcome"],
            "estimates": estimates(values, n=nobs, parameters=p),
            "rows": count(nobs),
        }
    )


@federated
@data(1)
def glm_describe(df: Any, spec: Mapping[str, Any]) -> Any:
    """This node's complete-case count, predictor kinds, levels and (gaussian, poisson) outcome moments."""
    spec = dict(spec)
    frame, missing = complete_cases(df, spec)
    out: dict[str, Any] = {
        "rows": count(len(frame)),
        "missing": count(missing),
        "kinds": {},
        "dtypes": {},
        "levels": {},
    }
    for name in spec["predictors"]:
        kind = predictor_kind(df[name], name in spec["categorical"])
        out["kinds"][name] = kind
        out["dtypes"][name] = str(df[name].dtype)
        if kind == "categorical":
            labels = frame[name].map(label)
            cells = [[k, int(n)] for k, n in labels.value_counts(sort=False).items()]
            out["levels"][name] = count_table([name], cells, total=len(frame))
    y = outcome_values(frame, spec)
    if spec["family"] in ("gaussian", "poisson"):
        out["outcome"] = moments(y, column=spec["outcome"])
    return typed(out)


@federated
@data(1)
def glm_iteration(df: Any, spec: Mapping[str, Any], beta: Sequence[float] | None = None) -> Any:
    """This node's ``X'WX``, ``X'Wz`` and deviance at ``beta`` (None: statsmodels' starting values)."""
    import numpy as np

    spec = dict(spec)
    frame, _ = complete_cases(df, spec)
    y = outcome_values(frame, spec)
    x = design_matrix(frame, spec)
    off = offset_values(frame, spec)
    family = spec["family"]
    if beta is None:
        mu = _starting_mu(y, family, spec.get("ybar"))
        eta = _link(mu, family)
    else:
        eta = x @ np.asarray(beta, dtype="float64") + off
        mu = _inverse_link(eta, family)
    w, deriv = _weights(mu, family)
    z = eta + deriv * (y - mu) - off
    xw = x * w[:, None]
    values = {
        "xtwx": (xw.T @ x).tolist(),
        "xtwz": (xw.T @ z).tolist(),
        "deviance": float(_deviance(y, mu, family)),
        "saturated": float(_saturated(y, family)),
    }
    return typed({"sums": estimates(values, n=len(y), parameters=x.shape[1])})


def glm_frame(results: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """A GLM (or Cox) result as a DataFrame indexed by term: coef, std_err, z, p_value, ci_low, ci_high.

    ``df.attrs`` holds the fit: deviance, llf, aic, scale, nobs, df_resid, iterations, converged
    (and, for Cox, the log partial likelihood); a Cox table adds ``exp_coef`` (the hazard ratio)
    and its interval. ``kwargs`` (the task's arguments) is not needed.

    Examples
    --------
    >>> result = {"model": "glm", "terms": ["Intercept", "x"],
    ...           "estimates": {"@type": "estimates", "n": 10, "parameters": 2,
    ...                         "values": {"coef": [1.0, 2.0], "std_err": [0.5, 1.0],
    ...                                    "fit": {"iterations": 2}}}}
    >>> glm_frame(result)[["coef", "p_value", "ci_low"]].round(4).to_dict("list")
    {'coef': [1.0, 2.0], 'p_value': [0.0455, 0.0455], 'ci_low': [0.02, 0.04]}
    """
    import pandas as pd

    result = only_result(results)
    if not isinstance(result, dict) or "terms" not in result:
        raise ValidationError(
            f"Not a model result: {str(result)[:200]}. Is the image a different version?",
            errors={"result": "no terms"},
        )
    est = result.get("estimates")
    if is_suppressed(est):
        raise DisclosureRefused(
            "The node's disclosure policy withheld the model estimates.",
            rule=str(est.get("rule") or ""),
            threshold=est.get("threshold"),
        )
    values = est["values"] if is_typed_value(est, "estimates") else est
    coef = [float(c) for c in values["coef"]]
    se = [float(s) for s in values["std_err"]]
    df = pd.DataFrame({"coef": coef, "std_err": se}, index=pd.Index(result["terms"], name="term"))
    df["z"] = df["coef"] / df["std_err"]
    df["p_value"] = [math.erfc(abs(z) / math.sqrt(2.0)) for z in df["z"]]
    df["ci_low"] = df["coef"] - _Z975 * df["std_err"]
    df["ci_high"] = df["coef"] + _Z975 * df["std_err"]
    if result.get("model") == "cox":
        df.insert(1, "exp_coef", [math.exp(c) for c in coef])
        df["hr_low"] = [math.exp(v) for v in df["ci_low"]]
        df["hr_high"] = [math.exp(v) for v in df["ci_high"]]
    fit = dict(values.get("fit") or {})
    fit.pop("deviance_history", None)
    df.attrs.update(fit)
    df.attrs["kind"] = result.get("model", "glm")
    if "outcome" in result:
        df.attrs["outcome"] = result["outcome"]
    return df


# -- the model specification (shared with the Cox model) ------------------------------------------
def _check_spec(
    outcome: Any,
    predictors: Any,
    family: Any,
    categorical: Any,
    reference: Any,
    offset: Any,
    exposure: Any,
    success: Any,
    intercept: Any,
) -> dict[str, Any]:
    if family not in FAMILIES:
        raise ValidationError(
            f"family must be one of {', '.join(FAMILIES)}, got {family!r}.",
            errors={"family": family},
        )
    spec = check_predictors(outcome, predictors, categorical, reference)
    for key, value in (("offset", offset), ("exposure", exposure)):
        if value is not None and not isinstance(value, str):
            raise ValidationError(f"{key} must be a column name.", errors={key: value})
    if offset is not None and exposure is not None:
        raise ValidationError(
            "Give offset or exposure, not both (exposure is an offset of log(exposure)).",
            errors={"offset": offset, "exposure": exposure},
        )
    if success is not None and family != "binomial":
        raise ValidationError(
            "success applies to family='binomial' only.", errors={"success": success}
        )
    if not isinstance(intercept, bool):
        raise ValidationError("intercept must be true or false.", errors={"intercept": intercept})
    spec.update(
        family=family,
        offset=offset,
        exposure=exposure,
        success=None if success is None else label(success),
        intercept=intercept,
    )
    return spec


def check_predictors(
    outcome: Any, predictors: Any, categorical: Any, reference: Any, *, what: str = "outcome"
) -> dict[str, Any]:
    """The model's columns, checked: ``{"outcome", "predictors", "categorical", "reference"}``."""
    if not isinstance(outcome, str) or not outcome:
        raise ValidationError(f"{what} must be a column name.", errors={what: outcome})
    if isinstance(predictors, str):
        predictors = [predictors]
    if not isinstance(predictors, (list, tuple)) or not all(
        isinstance(p, str) and p for p in predictors
    ):
        raise ValidationError(
            "predictors must be a list of column names.", errors={"predictors": predictors}
        )
    if len(set(predictors)) != len(predictors) or outcome in predictors:
        raise ValidationError(
            f"predictors must be distinct column names other than the {what}.",
            errors={"predictors": list(predictors)},
        )
    categorical = [categorical] if isinstance(categorical, str) else list(categorical or [])
    unknown = [c for c in categorical if c not in predictors]
    if unknown:
        raise ValidationError(
            f"categorical names columns that are not predictors: {', '.join(map(str, unknown))}.",
            errors={"categorical": unknown},
        )
    if reference is not None and not isinstance(reference, Mapping):
        raise ValidationError(
            "reference maps a categorical predictor to its reference level, e.g. "
            "{'island': 'Dream'}.",
            errors={"reference": reference},
        )
    reference = {str(k): label(v) for k, v in (reference or {}).items()}
    unknown = [k for k in reference if k not in predictors]
    if unknown:
        raise ValidationError(
            f"reference names columns that are not predictors: {', '.join(unknown)}.",
            errors={"reference": unknown},
        )
    return {
        "outcome": outcome,
        "predictors": list(predictors),
        "categorical": sorted(set(categorical) | set(reference)),
        "reference": reference,
        "levels": {},
    }


def _columns_of(spec: Mapping[str, Any]) -> list[str]:
    extra = [spec.get(k) for k in ("offset", "exposure", "event")]
    return [spec["outcome"], *spec["predictors"], *[c for c in extra if c]]


def label(value: Any) -> Any:
    """A category label as every node spells it: ``1``, ``1.0`` and ``'1'`` are the label ``'1'``.

    Examples
    --------
    >>> label(1), label(1.0), label("1"), label(True), label(2.5), label("Dream")
    ('1', '1', '1', 'True', '2.5', 'Dream')
    """
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    try:  # numeric text ('1', '1.0') is the same label as the number
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer() and text.strip().lstrip("+-").isdigit():
        return str(int(number))
    if math.isfinite(number) and text.strip() in (repr(number), f"{number:g}"):
        return label(number)
    return text


def sort_levels(levels: Sequence[str]) -> list[str]:
    """Levels as patsy orders them: numerically when every label is a number, else as text.

    Examples
    --------
    >>> sort_levels(["10", "9", "1"]), sort_levels(["b", "a", "10"])
    (['1', '9', '10'], ['10', 'a', 'b'])
    """
    try:
        return sorted(levels, key=float)
    except ValueError:
        return sorted(levels)


def predictor_kind(series: Any, categorical: bool) -> str:
    """``numeric`` or ``categorical``: text, category and booleans are categorical."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if categorical or is_bool_dtype(series) or not is_numeric_dtype(series):
        return "categorical"
    return "numeric"


def complete_cases(df: Any, spec: Mapping[str, Any]) -> tuple[Any, int]:
    """The rows with every model column present, and how many rows were left out."""
    columns = _columns_of(spec)
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise ValidationError(
            f"This node's data has no column {', '.join(repr(c) for c in absent)}; "
            f"it has {', '.join(map(str, df.columns))}.",
            errors={"columns": absent},
        )
    if len(df) == 0:
        raise ValidationError(
            "This node's data has no rows: leave its organization out with organizations=[...].",
            errors={"rows": 0},
        )
    frame = df[columns].dropna()
    return frame, int(len(df) - len(frame))


def outcome_values(frame: Any, spec: Mapping[str, Any]) -> Any:
    """The outcome as float64, checked against the family (binomial: 0/1; poisson: counts)."""
    import numpy as np
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    name, family = spec["outcome"], spec.get("family", "gaussian")
    series = frame[name]
    if spec.get("success") is not None:
        return (series.map(label) == spec["success"]).to_numpy(dtype="float64")
    if is_bool_dtype(series):
        return series.to_numpy(dtype="float64")
    if not is_numeric_dtype(series):
        raise ValidationError(
            f"The outcome '{name}' is not numeric at this node ({series.dtype})"
            + (
                "; for a binomial model of a text column name the level that counts as 1 with "
                "success=..."
                if family == "binomial"
                else ""
            ),
            errors={"outcome": name},
        )
    y = series.to_numpy(dtype="float64")
    if family == "binomial" and not np.isin(y, (0.0, 1.0)).all():
        raise ValidationError(
            f"The outcome '{name}' of a binomial model must be 0 or 1 (or boolean), and this "
            "node has other values; name the level that counts as 1 with success=...",
            errors={"outcome": name},
        )
    if family == "poisson" and (y < 0).any():
        raise ValidationError(
            f"The outcome '{name}' of a poisson model must be >= 0, and this node has negative "
            "values.",
            errors={"outcome": name},
        )
    return y


def design_terms(spec: Mapping[str, Any]) -> list[str]:
    """The model's terms in column order: Intercept, then each predictor (``name[T.level]``)."""
    terms = ["Intercept"] if spec.get("intercept") else []
    for name in spec["predictors"]:
        if name in spec["levels"]:
            ref = spec["reference"][name]
            terms += [f"{name}[T.{lv}]" for lv in spec["levels"][name] if lv != ref]
        else:
            terms.append(name)
    return terms


def design_matrix(frame: Any, spec: Mapping[str, Any]) -> Any:
    """The design matrix of ``frame``'s complete cases, columns in :func:`design_terms` order."""
    import numpy as np
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    cols = [np.ones(len(frame))] if spec.get("intercept") else []
    for name in spec["predictors"]:
        series = frame[name]
        if name in spec["levels"]:
            labels = series.map(label).to_numpy()
            unknown = set(labels) - set(spec["levels"][name])
            if unknown:
                raise ValidationError(
                    f"Column '{name}' has levels the model does not know; run the fit again.",
                    errors={"predictors": name},
                )
            ref = spec["reference"][name]
            cols += [(labels == lv).astype("float64") for lv in spec["levels"][name] if lv != ref]
        else:
            if is_bool_dtype(series) or not is_numeric_dtype(series):
                raise ValidationError(
                    f"Column '{name}' is not numeric at this node ({series.dtype}).",
                    errors={"predictors": name},
                )
            cols.append(series.to_numpy(dtype="float64"))
    if not cols:
        return np.empty((len(frame), 0))
    return np.column_stack(cols)


def offset_values(frame: Any, spec: Mapping[str, Any]) -> Any:
    """The offset of each complete case (0 without one)."""
    import numpy as np

    for key in ("offset", "exposure"):
        name = spec.get(key)
        if name:
            values = frame[name]
            try:
                arr = values.to_numpy(dtype="float64")
            except (TypeError, ValueError):
                raise ValidationError(
                    f"The {key} column '{name}' is not numeric at this node ({values.dtype}).",
                    errors={key: name},
                ) from None
            if key == "exposure":
                if (arr <= 0).any():
                    raise ValidationError(
                        f"The exposure column '{name}' must be > 0 at every record.",
                        errors={key: name},
                    )
                arr = np.log(arr)
            return arr
    return np.zeros(len(frame))


def harmonise_predictors(parts: Sequence[Part], spec: dict[str, Any]) -> tuple[list[int], int]:
    """Check the parts' counts and predictor kinds; fix the levels. Returns (organizations, records
    released in counts); a node with no complete record stops the fit, naming it."""
    orgs, total = [], 0
    for part in parts:
        value = part.value if isinstance(part.value, dict) else {}
        if "rows" not in value or "kinds" not in value:
            raise ValidationError(
                f"Organization {part.organization_id} returned no model description: "
                f"{str(part.value)[:200]}. Is its image a different version of the algorithm?",
                errors={"organization": part.organization_id},
            )
        n = count_of(value["rows"])
        if n is None:  # withheld (a small count, or next to a table with a small cell): the
            # iterations' estimates say how many records each node used, or refuse
            orgs.append(part.organization_id)
            continue
        if n == 0:
            raise ValidationError(
                f"Organization {part.organization_id} has no complete records for this model "
                "(every record misses a model column); leave it out with organizations=[...].",
                errors={"organization": part.organization_id},
            )
        orgs.append(part.organization_id)
        total += n
    for name in spec["predictors"]:
        kinds = {p.organization_id: p.value["kinds"].get(name) for p in parts}
        if len(set(kinds.values())) > 1:
            dtypes = {p.organization_id: p.value["dtypes"].get(name) for p in parts}
            shown = "; ".join(
                f"{kind} ({dtypes[org]}) at organization {org}" for org, kind in kinds.items()
            )
            raise ValidationError(
                f"Column '{name}' has different types at the nodes: {shown}. Name it in "
                "categorical=[...] to treat it as categorical everywhere, or ask the data owners "
                "to store it alike.",
                errors={"predictors": name, "types": {str(k): v for k, v in dtypes.items()}},
            )
        if next(iter(kinds.values())) != "categorical":
            continue
        found: list[str] = []
        for part in parts:
            table = part.value["levels"].get(name)
            if is_suppressed(table) or not is_typed_value(table, "count_table"):
                raise withheld_refusal(part.organization_id, table, f"the levels of '{name}'")
            found += [str(c[0]) for c in table["cells"] if str(c[0]) not in found]
        levels = sort_levels(found)
        ref = spec["reference"].get(name, levels[0] if levels else None)
        if ref not in levels:
            raise ValidationError(
                f"The reference level {ref!r} of '{name}' is not one of its levels "
                f"({', '.join(levels)}).",
                errors={"reference": {name: ref}},
            )
        spec["levels"][name] = levels
        spec["reference"][name] = ref
    return orgs, total


def withheld_refusal(org: int, value: Any, what: str) -> DisclosureRefused:
    """The refusal of a fit because organization ``org``'s node withheld ``what``."""
    rule = str(value.get("rule") or "min_count") if isinstance(value, Mapping) else "min_count"
    threshold = value.get("threshold") if isinstance(value, Mapping) else None
    return DisclosureRefused(
        f"The disclosure policy of organization {org} withheld {what} (rule {rule}), so a pooled "
        "model would leave its records out. Leave it out explicitly with organizations=[...], "
        "or ask its data owner about the policy.",
        organization=str(org),
        rule=rule,
        threshold=threshold,
    )


def _harmonise(
    parts: Sequence[Part], spec: dict[str, Any]
) -> tuple[list[int], int, dict[str, Any], float | None]:
    orgs, total = harmonise_predictors(parts, spec)
    ybar = None
    if spec["family"] in ("gaussian", "poisson"):
        n, s = 0, 0.0
        for part in parts:
            m = part.value.get("outcome")
            if not is_typed_value(m, "moments") or m.get("mean") is None:
                # the pooled mean is only statsmodels' starting point: start from each node's own
                ybar = None
                break
            n += int(m["count"])
            s += float(m["mean"]) * int(m["count"]) + float(m.get("mean_correction") or 0.0) * int(
                m["count"]
            )
        else:
            ybar = s / n if n else None
    return orgs, total, spec, ybar


def _iterate(
    client: AlgorithmClient,
    spec: Mapping[str, Any],
    beta: list[float] | None,
    orgs: list[int],
    columns: list[str],
) -> tuple[Any, Any, float, float, int]:
    import numpy as np

    parts = iterate_partials(
        client,
        "glm_iteration",
        {"spec": dict(spec), "beta": beta},
        orgs,
        name="glm (iteration)",
        columns=columns,
    )
    xtwx = xtwz = None
    deviance = saturated = 0.0
    records = 0
    for part in parts:
        sums = (part.value or {}).get("sums") if isinstance(part.value, dict) else None
        if not is_typed_value(sums, "estimates"):
            raise withheld_refusal(part.organization_id, sums, "its model sums")
        v = sums["values"]
        a, b = np.asarray(v["xtwx"], dtype="float64"), np.asarray(v["xtwz"], dtype="float64")
        xtwx = a if xtwx is None else xtwx + a
        xtwz = b if xtwz is None else xtwz + b
        deviance += float(v["deviance"])
        saturated += float(v["saturated"])
        records += int(sums["n"])
    return xtwx, xtwz, deviance, saturated, records


def iterate_partials(
    client: AlgorithmClient,
    method: str,
    kwargs: dict[str, Any],
    organizations: list[int],
    *,
    name: str,
    columns: Sequence[str],
) -> list[Part]:
    """``run_partials`` for one iteration of a fit: the same subtask and errors, but polled every
    20 ms (an iteration's parts take a fraction of a second, and a fit runs many of them in turn)."""
    import time

    from vantage6nb.algorithm.results import unwrap
    from vantage6nb.common.schemas import OPEN_VALUES

    task = client.task.create({"method": method, "kwargs": kwargs}, organizations, name=name)
    deadline = time.monotonic() + PARTIAL_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = client.task.get(task["id"]).get("runs") or []
        if runs and all(str(r.get("status")) not in OPEN_VALUES for r in runs):
            break
        time.sleep(0.02)
    try:  # returns at once now, raising as run_partials does for runs that did not complete
        rows = client.wait_for_result_rows(task["id"], timeout=PARTIAL_TIMEOUT_S)
    except DisclosureRefused as exc:
        if "columns" not in exc.errors:
            exc.errors["columns"] = list(columns)
        raise
    return [Part(int(r["organization_id"]), unwrap(r.get("result"))) for r in rows]


def _solve(xtwx: Any, xtwz: Any, terms: Sequence[str]) -> Any:
    import numpy as np

    rank = np.linalg.matrix_rank(xtwx)
    if rank < len(terms):
        raise ValidationError(
            f"The model's terms are collinear (rank {rank} of {len(terms)} terms: "
            f"{', '.join(terms)}); drop a predictor or merge levels.",
            errors={"predictors": list(terms)},
        )
    return np.linalg.solve(xtwx, xtwz)


# -- the families, as statsmodels computes them ----------------------------------------------------
def _scale(family: str, deviance: float, df_resid: int) -> float:
    """statsmodels' scale at a mu of this ``deviance``: Pearson chi2 / df_resid for gaussian
    (there the same as the deviance), 1 for binomial and poisson."""
    if family == "gaussian":
        return deviance / df_resid if df_resid > 0 and deviance > 0 else 1.0
    return 1.0


def _starting_mu(y: Any, family: str, ybar: float | None) -> Any:
    if family == "binomial":
        return (y + 0.5) / 2.0
    mean = float(y.mean()) if ybar is None else float(ybar)
    return (y + mean) / 2.0


def _link(mu: Any, family: str) -> Any:
    import numpy as np

    if family == "binomial":
        p = np.clip(mu, _FLOAT_EPS, 1 - _FLOAT_EPS)
        return np.log(p / (1 - p))
    if family == "poisson":
        return np.log(np.clip(mu, _FLOAT_EPS, np.inf))
    return mu


def _inverse_link(eta: Any, family: str) -> Any:
    import numpy as np

    if family == "binomial":
        return 1.0 / (1.0 + np.exp(-eta))
    if family == "poisson":
        return np.exp(eta)
    return eta


def _weights(mu: Any, family: str) -> tuple[Any, Any]:
    """IRLS weights and the link's derivative at ``mu``."""
    import numpy as np

    if family == "binomial":
        p = np.clip(mu, _FLOAT_EPS, 1 - _FLOAT_EPS)
        deriv = 1.0 / (p * (1 - p))
        return 1.0 / (deriv**2 * (mu * (1 - mu))), deriv
    if family == "poisson":
        deriv = 1.0 / np.clip(mu, _FLOAT_EPS, np.inf)
        return 1.0 / (deriv**2 * mu), deriv
    return np.ones_like(mu), np.ones_like(mu)


def _deviance(y: Any, mu: Any, family: str) -> float:
    import numpy as np

    if family == "binomial":
        a = np.clip(y / (mu + 1e-20), _FLOAT_EPS, np.inf)
        b = np.clip((1.0 - y) / (1.0 - mu + 1e-20), _FLOAT_EPS, np.inf)
        return float(2.0 * np.sum(y * np.log(a) + (1 - y) * np.log(b)))
    if family == "poisson":
        a = np.clip(y / mu, _FLOAT_EPS, np.inf)
        return float(2.0 * np.sum(y * np.log(a) - (y - mu)))
    return float(np.sum((y - mu) ** 2))


def _saturated(y: Any, family: str) -> float:
    """The log-likelihood of the saturated model, so that llf = saturated - deviance / 2."""
    import numpy as np

    if family != "poisson":
        return 0.0
    pos = y[y > 0]
    return float(np.sum(pos * np.log(pos)) - np.sum(y) - sum(math.lgamma(v + 1.0) for v in y))


# This algorithm's functions in vantage6's algorithm-store format (docs/algorithms.md,
# "Declaring functions"); vantage6nb.catalog reads it for the TaskBuilder and the checks
# before a task is sent.
STORE_METADATA: dict[str, Any] = {
    "name": "generalized linear model",
    "image": "v6nb/glm",
    "description": "A generalized linear model (gaussian, binomial, poisson) fitted on the pooled data, as statsmodels does.",
    "partitioning": "horizontal",
    "vantage6_version": "4",
    "code_url": "vantage6nb/algorithms/glm.py",
    "functions": [
        {
            "name": "glm",
            "display_name": "Generalized linear model",
            "type": "central",
            "description": "Fit ``outcome ~ predictors`` over the organizations, as statsmodels GLM does on the pooled data.",
            "databases": store_databases(),
            "arguments": [
                {
                    "name": "outcome",
                    "display_name": "Outcome",
                    "type": "column",
                    "description": "The column to model.",
                },
                {
                    "name": "predictors",
                    "display_name": "Predictors",
                    "type": "column_list",
                    "description": "The explanatory columns.",
                },
                {
                    "name": "family",
                    "display_name": "Family",
                    "type": "string",
                    "allowed_values": ["gaussian", "binomial", "poisson"],
                    "has_default_value": True,
                    "default_value": "gaussian",
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
                    "name": "offset",
                    "display_name": "Offset",
                    "type": "column",
                    "description": "A column added to the linear predictor.",
                    "has_default_value": True,
                    "default_value": None,
                },
                {
                    "name": "exposure",
                    "display_name": "Exposure",
                    "type": "column",
                    "description": "A column whose log is added to the linear predictor (poisson).",
                    "has_default_value": True,
                    "default_value": None,
                    "conditional_on": "family",
                    "conditional_operator": "==",
                    "conditional_value": "poisson",
                },
                {
                    "name": "success",
                    "display_name": "Success value",
                    "type": "json",
                    "description": "For binomial: the outcome value that counts as a success.",
                    "has_default_value": True,
                    "default_value": None,
                    "conditional_on": "family",
                    "conditional_operator": "==",
                    "conditional_value": "binomial",
                },
                {
                    "name": "intercept",
                    "display_name": "Intercept",
                    "type": "boolean",
                    "has_default_value": True,
                    "default_value": "true",
                },
                {
                    "name": "max_iter",
                    "display_name": "Maximum iterations",
                    "type": "integer",
                    "has_default_value": True,
                    "default_value": "100",
                },
                store_organizations(),
            ],
            "ui_visualizations": [
                {"name": "Coefficients", "type": "table", "schema": {"location": ["terms"]}}
            ],
        },
        {
            "name": "glm_describe",
            "type": "federated",
            "description": "This node's complete-case count, predictor kinds and levels.",
            "databases": store_databases(),
            "arguments": [{"name": "spec", "type": "json"}],
        },
        {
            "name": "glm_iteration",
            "type": "federated",
            "description": "This node's X'WX, X'Wz and deviance at beta.",
            "databases": store_databases(),
            "arguments": [
                {"name": "spec", "type": "json"},
                {
                    "name": "beta",
                    "type": "float_list",
                    "has_default_value": True,
                    "default_value": None,
                },
            ],
        },
    ],
}
