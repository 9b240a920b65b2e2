"""Fitting: one host-to-device mapping per metric, device thread count and (where the references mix
them) precision, by the method asked for or the one `auto` chooses on leave-one-out error."""

import time
from collections import defaultdict

import numpy as np

from calibration.errors import CalibrationError, lazy_module
from calibration.fits import MIN_INTERVALS, Fit, fit_label
from calibration.hostdata import host_value, match, record_threads
from calibration.mix import reference_mix
from calibration.priors import load_prior, resolve_prior
from calibration.schema import SCHEMA, SCHEMA_VERSION

# scipy and scikit-learn load when a fit is made, not for a command's bad input
M = lazy_module("calibration.metrics")
fitters = lazy_module("calibration.models")

MIN_FIT = 2
LINEAR_METHODS = ("ols", "robust", "loglinear")
METHODS = LINEAR_METHODS + ("features", "relative", "auto")
AUTO_CANDIDATES = ("ols", "loglinear", "relative", "features")  # simplest first
AUTO_MARGIN = 0.95
AUTO_OVER_RELATIVE = 0.4  # another method replaces the relative model only with under 40% of its error


def fit_one(names, x, y, method):
    """One fit with its statistics; x = host, y = device."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    model = fitters.LinearCalibration(method=method).fit(x[:, None], y)
    if not model.a > 0:  # a device figure that does not grow with the host's maps nothing
        raise ValueError(f"the {method} slope is {model.a:.3g}: across these references the device figures do not "
                         "grow with the host figures (check that device and host rows are the same models)")
    pred = model.predict(x[:, None])
    r2 = M.r2(y, pred)
    fit = {"n": n, "method": method, "a": model.a, "b": model.b,
           "r2": r2, "adj_r2": M.adjusted_r2(r2, n), "rmse": M.rmse(y, pred), "mape": M.mape(y, pred),
           "spearman": M.spearman(x, y), "kendall": M.kendall(x, y), "host_range": [float(x.min()), float(x.max())]}
    references = [{"model": name, "host": float(h), "device": float(d), "fitted": float(p)}
                  for name, h, d, p in zip(names, x, y, pred)]
    if n >= MIN_INTERVALS:
        loo = M.loo_predictions(lambda: fitters.LinearCalibration(method=method), x[:, None], y)
        fit["loo_mape"] = M.mape(y, loo)
        fit["loo_within_10pct"] = M.within(y, loo)
        for ref, value in zip(references, loo):
            ref["loo"] = float(value)
        fit["interval"] = _interval_state(x, y, model, method)
        cooks = M.cooks_distance(x, y)
        fit["leverage"] = []
        for i in np.flatnonzero(cooks > 4 / n):
            keep = np.arange(n) != i
            r2_without = (M.r2(y[keep], fitters.LinearCalibration(method=method).fit(x[keep, None], y[keep]).predict(x[keep, None]))
                          if n - 1 >= MIN_INTERVALS else float("nan"))
            fit["leverage"].append({"model": names[i], "cooks_distance": float(cooks[i]), "r2_without": r2_without})
    fit["references"] = references
    return Fit(model, fit)


def _interval_state(x, y, model, method):
    """What a 95% prediction interval for a new host value needs (OLS formula; in log space for loglinear)."""
    from scipy import stats

    if method == "loglinear":
        x, y, fitted = np.log(x), np.log(y), np.log(model.predict(x[:, None]))
    else:
        fitted = model.predict(x[:, None])
    n = len(x)
    s = float(np.sqrt(np.sum((y - fitted) ** 2) / (n - 2)))
    return {"space": "log" if method == "loglinear" else "linear", "s": s, "n": n, "x_mean": float(x.mean()),
            "sxx": float(np.sum((x - x.mean()) ** 2)), "t": float(stats.t.ppf(0.975, n - 2))}


def fit_features(names, records, y, nested_loo=True):
    """The feature model, with its honest (nested) leave-one-out error and a relative interval."""
    y = np.asarray(y, float)
    n = len(y)
    available = sorted(set.intersection(*(set(fitters.record_features(r)) for r in records)) - set(fitters.RELATIVE_ONLY))
    X = fitters.feature_matrix(records, available)
    model = fitters.FeatureCalibration().fit(X, y)
    pred = model.predict(X)
    host = X[:, available.index("host_latency_ms")] if "host_latency_ms" in available else pred
    r2 = M.r2(y, pred)
    p = len(model.selected_) + 1
    fit = {"n": n, "method": "features", "a": None, "b": float(model.intercept_),
           "r2": r2, "adj_r2": M.adjusted_r2(r2, n, p - 1), "rmse": M.rmse(y, pred), "mape": M.mape(y, pred),
           "spearman": M.spearman(host, y), "kendall": M.kendall(host, y),
           "host_range": [float(host.min()), float(host.max())]}
    stats = _model_fit_tail(fit, names, host, X, y, model, n - p, nested_loo)
    return Fit(model, stats, available)


def _model_fit_tail(fit, names, host, X, y, model, dof, nested_loo=True):
    """References, nested leave-one-out error and a relative interval from its residuals.

    The model's loo_mape_ is the leave-one-out error with the fit's own choices (features, ridge) held
    fixed and only the weights refitted per fold: what `auto` compares (see auto_score). Without
    nested_loo (studies that only need the predictions), the costly nested refits are skipped."""
    from scipy import stats
    from sklearn.base import clone

    n = len(y)
    references = [{"model": name, "host": float(h), "device": float(d), "fitted": float(q)}
                  for name, h, d, q in zip(names, host, y, model.predict(X))]
    fit["selected_loo_mape"] = float(model.loo_mape_)
    if nested_loo and n >= MIN_INTERVALS + 1:  # each fold makes the method's own choices again
        loo = np.array([clone(model).fit(X[np.arange(n) != i], y[np.arange(n) != i]).predict(X[i:i + 1])[0]
                        for i in range(n)])
        fit["loo_mape"] = M.mape(y, loo)
        fit["loo_within_10pct"] = M.within(y, loo)
        for ref, value in zip(references, loo):
            ref["loo"] = float(value)
        relative = (loo - y) / y
        fit["interval"] = {"space": "relative", "s": float(np.sqrt(np.mean(relative ** 2))),
                           "t": float(stats.t.ppf(0.975, max(1, dof)))}
    fit["references"] = references
    return fit


def fit_relative(names, records, y, host_metric="host_latency_ms", prior="auto", nested_loo=True):
    """The relative model: host ratio plus shrunk corrections, with its leave-one-out error and a
    relative interval from the leave-one-out residuals. prior: see resolve_prior."""
    y = np.asarray(y, float)
    n = len(y)
    if not all(host_metric in fitters.record_features(r) for r in records):
        raise ValueError(f"the relative model needs {host_metric} for every reference")
    columns = fitters.relative_columns(records, host_metric)
    X = fitters.feature_matrix(records, columns)
    prior = resolve_prior(prior, records)
    shape = None if prior is None else [0.0] + [float(prior["shape"].get(c, 0.0)) for c in columns[1:]]
    model = fitters.RelativeCalibration(prior=shape).fit(X, y)
    pred = model.predict(X)
    host = X[:, 0]
    r2 = M.r2(y, pred)
    fit = {"n": n, "method": "relative", "a": float(model.coef_[0]), "b": None,
           "r2": r2, "adj_r2": M.adjusted_r2(r2, n, max(1, int(np.sum(model.coef_ > 0)))), "rmse": M.rmse(y, pred),
           "mape": M.mape(y, pred), "spearman": M.spearman(host, y), "kendall": M.kendall(host, y),
           "host_range": [float(host.min()), float(host.max())]}
    if prior is not None:
        fit["prior"] = {"runtime": prior.get("runtime"), "source": prior.get("source"),
                        **({"key": prior["key"]} if prior.get("key") else {})}
    stats = _model_fit_tail(fit, names, host, X, y, model, n - 1, nested_loo)
    return Fit(model, stats, columns)


def auto_score(fit):
    """The leave-one-out MAPE `auto` compares a candidate by: every choice a method makes on the
    references is made again in each fold (linear fits have none; the feature model selects its
    features, the relative model its ridge), so no candidate is scored on choices that saw the
    reference it is tested on. A fit made without the nested refits (studies) falls back to its
    leave-one-out error with its choices held fixed, which favours the richer models."""
    score = fit.get("loo_mape", fit.get("selected_loo_mape"))
    return float("inf") if score is None or not np.isfinite(score) else float(score)


def auto_choice(errors):
    """The relative model unless another candidate's leave-one-out error is under AUTO_OVER_RELATIVE
    of its own (on both dev phones, at k = 5 and 10, every looser margin lost on average against
    keeping the relative model: experiments/mmb_phones/deploy/RESULTS.md). Without a checkable
    relative fit, candidates run from simplest to richest, a richer one 5% better (parsimony)."""
    relative = errors.get("relative")
    if relative is not None and np.isfinite(relative):
        best = min(errors, key=errors.get)
        return best if errors[best] < AUTO_OVER_RELATIVE * relative else "relative"
    chosen = None
    for candidate in AUTO_CANDIDATES:
        if candidate in errors and (chosen is None or errors[candidate] < AUTO_MARGIN * errors[chosen]):
            chosen = candidate
    return chosen


def fit_group(names, records, x, y, method, prior="auto", nested_loo=True):
    return _fit_group(names, records, x, y, method, prior, nested_loo).with_fields(mix=reference_mix(names, records))


def _fit_group(names, records, x, y, method, prior="auto", nested_loo=True):
    if method in LINEAR_METHODS:
        return fit_one(names, x, y, method)
    if method == "features":
        return fit_features(names, records, y, nested_loo)
    if method == "relative":
        return fit_relative(names, records, y, prior=prior, nested_loo=nested_loo)
    # auto: each candidate's leave-one-out MAPE on the references decides
    candidates, errors = {}, {}
    for candidate in AUTO_CANDIDATES:
        try:
            candidates[candidate] = _fit_group(names, records, x, y, candidate, prior, nested_loo)
        except ValueError:  # e.g. loglinear with a non-positive value
            continue
        errors[candidate] = auto_score(candidates[candidate])
    chosen = auto_choice(errors)
    return candidates[chosen].with_fields(auto={"chose": chosen, "loo_mape": {m: (e if np.isfinite(e) else None) for m, e in errors.items()},
                   "why": f"leave-one-out MAPE on the {len(y)} references: "
                          + ", ".join(f"{m} {e:.2f}%" if np.isfinite(e) else f"{m} n/a (not checkable)"
                                      for m, e in errors.items())
                          + " (nested: each fold makes the method's own choices again)"
                          + f"; the relative model is kept unless another has under {100 * AUTO_OVER_RELATIVE:.0f}% "
                          "of its error"})


def fit_all(pairs, method="ols", metrics=None, prior="auto", by_precision=False, short=None, force=False):
    """The fits, one per metric, thread count and (by_precision) precision. With by_precision a
    precision with fewer than MIN_INTERVALS references gets no fit and is named in `short` (a list),
    unless no precision has enough. A fit on fewer than MIN_INTERVALS references cannot be checked and
    is refused unless forced."""
    groups = defaultdict(list)
    for row, record in pairs:
        for metric, device in row.metrics.items():
            if metrics and metric not in metrics:
                continue
            host, host_metric = host_value(record, metric)
            if host is None:
                continue
            precision = (record.get("precision") or "unknown") if by_precision else ""
            groups[(metric, host_metric, row.threads, record_threads(record), precision)].append(
                (row.model, record, host, device))
    if not groups:
        raise CalibrationError("no metric could be paired with a host figure")
    fits = []
    if by_precision and short is not None:
        few = {key for key, items in groups.items() if len(items) < MIN_INTERVALS}  # a fit with intervals
        if len(few) < len(groups):
            short += [{"metric": m, "threads": t, "precision": p, "n": len(groups[(m, h, t, ht, p)])}
                      for m, h, t, ht, p in sorted(few)]
            groups = {key: items for key, items in groups.items() if key not in few}
    for (metric, host_metric, threads, host_threads, precision), items in sorted(groups.items()):
        where = fit_label({"metric": metric, "threads": threads, "precision": precision,
                           **({"host_threads": host_threads} if host_threads != threads else {})})
        if len(items) < MIN_FIT:
            raise CalibrationError(f"{where}: {len(items)} matched model; a fit needs at "
                                   f"least {MIN_FIT} (and {MIN_INTERVALS} for intervals and LOOCV)")
        if len(items) < MIN_INTERVALS and not force:
            raise CalibrationError(f"{where}: only {len(items)} matched references; a fit needs at least "
                                   f"{MIN_INTERVALS} to be checked (leave-one-out error, prediction intervals): "
                                   "measure more models on the device, or --force to keep an unchecked fit")
        names, records, x, y = zip(*items)
        if len(set(x)) == 1:
            raise CalibrationError(f"{where}: all {len(x)} references have the same host "
                                   f"value ({x[0]:g}); a fit needs references that differ")
        try:
            # Degenerate statistics (a leverage of 1, a constant column) are NaN in the result, not a printed warning.
            with np.errstate(divide="ignore", invalid="ignore"):
                # the prior of the references' precision, learned at the device's thread count
                group_prior = resolve_prior(prior, records, threads) if metric == "latency_ms" else None
                fit = fit_group(list(names), list(records), x, y, method, group_prior)
        except ValueError as exc:
            raise CalibrationError(f"{where}: {exc}") from None
        last = {"next_reference": next_reference(list(names), list(records), x, y, fit["method"], group_prior)} \
            if metric == "latency_ms" else {}
        if precision:
            last["precision"] = precision
        if host_threads != threads:  # device threads from host profiles at another count: said in the fit and its predictions
            last["host_threads"] = host_threads
        fits.append(fit.with_fields({"metric": metric, "host_metric": host_metric, "threads": threads}, **last))
    return fits


NEXT_REFERENCE_MAX_N = 40  # beyond this many references the drop-one refits cost more than they tell


def next_reference(names, records, x, y, method, prior="auto"):
    """What the last reference bought: the fitted method's leave-one-out MAPE with all n references,
    and its mean over the n fits with one reference left out. The next reference is likely to buy
    about as much or less (a learning curve flattens), so a small gain says measuring more helps
    little. None when n is under 5 or over NEXT_REFERENCE_MAX_N."""
    n = len(y)
    if not 5 <= n <= NEXT_REFERENCE_MAX_N:
        return None

    def loo(names_, records_, x_, y_):
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                return auto_score(_fit_group(names_, records_, x_, y_, method, prior, nested_loo=False))
        except (ValueError, np.linalg.LinAlgError):
            return float("nan")

    full = loo(names, records, list(x), list(y))
    def without(values, drop):
        return [v for i, v in enumerate(values) if i != drop]

    fewer = [loo(without(names, i), without(records, i), without(x, i), without(y, i)) for i in range(n)]
    fewer = [v for v in fewer if np.isfinite(v)]
    if not np.isfinite(full) or not fewer:
        return None
    return {"n": n, "loo_mape": full, "loo_mape_one_fewer": float(np.mean(fewer)),
            "gain": float(np.mean(fewer) - full)}


def build(device_rows, host_records, method="ols", metrics=None, device_ram_mb=None, prior="auto",
          skip_unsteady=False, force=False):
    """The calibration's fields, its fits `Fit` objects (`Calibration` holds them). References whose host figure is flagged unstable or disturbed are named
    in `unsteady`, and left out with skip_unsteady."""
    from profiler.stability import shaky

    pairs, unmatched = match(device_rows, host_records)
    unsteady = [record["model"] for _, record in pairs if shaky(dict(record, status="ok"))]
    if skip_unsteady:
        pairs = [(row, record) for row, record in pairs if record["model"] not in unsteady]
    if len(pairs) < MIN_FIT:
        raise CalibrationError(f"{len(pairs)} device row(s) matched a host profile; a fit needs at least "
                               f"{MIN_FIT} (unmatched: {', '.join(f'{r.model}@{r.threads}' for r in unmatched) or 'none'})")
    runtimes = sorted({r.get("runtime") for _, r in pairs if r.get("runtime")})
    if len(runtimes) > 1:
        raise CalibrationError(f"matched host profiles mix runtimes {', '.join(runtimes)}; choose one with --runtime")
    target = next((r.get("target") for _, r in pairs if r.get("target")), None)
    device_runtimes = sorted({getattr(row, "runtime", None) for row, _ in pairs} - {None})
    accelerators = sorted({getattr(row, "accelerator", None) or "cpu" for row, _ in pairs})
    if len(accelerators) > 1:
        raise CalibrationError(f"the device rows mix {' and '.join(accelerators)}: one calibration maps host "
                               "profiles to one kind of processor; calibrate each apart")
    accelerator = None if accelerators == ["cpu"] else accelerators[0]
    gap = None
    if runtimes and device_runtimes and device_runtimes != runtimes:
        gap = {"host": runtimes[0], "device": device_runtimes}
        if prior == "auto" and len(device_runtimes) == 1:  # a prior learned for this pair of formats, if shipped
            prior = load_prior(f"{runtimes[0]}->{device_runtimes[0]}") or prior
    precisions = sorted({r.get("precision") for _, r in pairs if r.get("precision")})
    short = []  # precisions with too few references for a fit of their own
    fits = fit_all(pairs, method, metrics, prior, by_precision=len(precisions) > 1, short=short, force=force)
    return {
        "precision": precisions[0] if len(precisions) == 1 else None, "precisions": precisions,
        "per_precision": len(precisions) > 1, "precisions_without_fit": short,
        "schema": SCHEMA, "version": SCHEMA_VERSION, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runtime": runtimes[0] if runtimes else None, "runtime_version": pairs[0][1].get("runtime_version"),
        "target": target, "device_ram_mb": device_ram_mb, "method": method,
        "fits": fits,
        "unmatched": [{"model": r.model, "threads": r.threads, "source": r.source} for r in unmatched],
        "unsteady": {"models": unsteady, "left_out": bool(skip_unsteady and unsteady)},
        "format_gap": gap,
        # the device rows ran on an accelerator while the host profiles ran on the CPU: said, never implied
        "accelerator": accelerator,
    }
