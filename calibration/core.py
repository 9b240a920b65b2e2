"""Match device rows to host profiles, fit per metric and thread count, save and predict."""

import json
import os
import time
from collections import defaultdict

import numpy as np

from calibration.errors import CalibrationError, lazy_module

# scipy and scikit-learn load when a fit or a prediction needs them, not for a command's bad input
M = lazy_module("calibration.metrics")
fitters = lazy_module("calibration.models")

SCHEMA = "edge-profiler/calibration"
SCHEMA_VERSION = 1  # 1: first version (linear fits per metric and thread count)
MIN_FIT, MIN_INTERVALS = 2, 3
MAX_HOST_VALUE = 1e9  # ms or MiB: eleven days, a petabyte; beyond it a fit overflows to infinity
LINEAR_METHODS = ("ols", "robust", "loglinear")
METHODS = LINEAR_METHODS + ("features", "relative", "auto")
AUTO_CANDIDATES = ("ols", "loglinear", "relative", "features")  # simplest first
AUTO_MARGIN = 0.95
AUTO_OVER_RELATIVE = 0.4  # another method replaces the relative model only with under 40% of its error


# ---------------------------------------------------------------- host profiles

def host_value(record, metric):
    """The host figure a device metric is fitted against: same metric where the host has it,
    else the host's median latency (energy and power scale with time on the device)."""
    if metric in ("peak_memory_mb", "mean_memory_mb"):
        return record.get("peak_memory_mb"), "peak_memory_mb"
    if metric in ("load_ms",) and record.get("load_ms") is not None:
        return record["load_ms"], "load_ms"
    stats = record.get("latency_ms") or {}
    return stats.get("median"), "latency_ms"


def _store_records(store):
    from profiler.store import Store, StoreError

    if not os.path.isfile(store):
        raise CalibrationError(f"{store}: no results store here; run `profile` first or give --host")
    try:
        return Store(store).records()
    except StoreError as exc:
        raise CalibrationError(str(exc)) from None


def device_rows_from_store(store, target_name):
    """The native device measurements (`profile --on HOST`) of one target, as device rows."""
    from calibration.importers import harness_rows

    records = [r for r in _store_records(store)
               if r.get("native_device") and (r.get("target") or {}).get("name") == target_name]
    if not records:
        names = sorted({(r.get("target") or {}).get("name") for r in _store_records(store) if r.get("native_device")})
        raise CalibrationError(f"{store}: no device measurements for target {target_name!r} "
                               + (f"(device targets here: {', '.join(map(str, names))})" if names
                                  else "(measure some with `profile --on HOST`)"))
    return harness_rows(records, f"{store} (device {target_name})")


def load_host(path=None, store=None, runtime=None, target_name=None):
    """Host records (status ok) from a `profile --json`/`--csv` export or the SQLite store (never the
    device's own measurements); with target_name, that target's records when the store has any."""
    if path:
        if os.path.exists(path) and not os.path.isfile(path):
            raise CalibrationError(f"{path}: not a regular file (host results are a `profile --json`/`--csv` file)")
        if not os.path.isfile(path):
            raise CalibrationError(f"{path}: host results file not found")
        if path.endswith(".csv"):
            records = _host_csv(path)
        else:
            try:
                with open(path, encoding="utf-8") as f:
                    records = [r for r in json.load(f) if r.get("status") == "ok"]
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as exc:
                raise CalibrationError(f"{path}: not a `profile --json` export ({str(exc)[:120]})") from None
            from profiler.escape import printable_text
            from profiler.schema import record_problem

            for index, record in enumerate(records, start=1):
                median = (record.get("latency_ms") or {}).get("median") if isinstance(record.get("latency_ms"), dict) \
                    else None
                if not isinstance(record.get("model"), str) or not isinstance(median, (int, float)) \
                        or isinstance(median, bool) or not 0 < median <= MAX_HOST_VALUE:
                    raise CalibrationError(f"{path}: record {index} ({printable_text(record.get('model'))[:60]}) is "
                                           f"not a profile result (needs model and a latency_ms.median above 0 and at "
                                           f"most {MAX_HOST_VALUE:g})")
                problem = record_problem(record)
                if problem:
                    raise CalibrationError(f"{path}: record {index} ({printable_text(record['model'])[:60]}): {problem}")
    else:
        records = [r for r in _store_records(store) if not r.get("native_device")]
        named = [r for r in records if (r.get("target") or {}).get("name") == target_name]
        records = named or records
    if runtime:
        records = [r for r in records if r.get("runtime") == runtime]
    if not records:
        raise CalibrationError(f"{path or store}: no successful host profiles" + (f" for runtime {runtime}" if runtime else ""))
    return records


def _host_csv(path):
    """Host rows of a `profile --csv` export (status ok only); messages name the file's line."""
    import pandas as pd

    from profiler.escape import from_csv_cell

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not UTF-8 text, so not a `profile --csv` export") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CalibrationError(f"{path}: not readable as CSV ({str(exc).strip().splitlines()[0]})") from None

    def number(row, column, line):
        text = row.get(column, "")
        if text == "":
            return None
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or value <= 0 or value > MAX_HOST_VALUE:
            raise CalibrationError(f"{path}:{line}: column {column!r}: {text!r} is not a positive number "
                                   f"of at most {MAX_HOST_VALUE:g}")
        return value

    records = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        if row.get("status") != "ok":
            continue
        if not row.get("model") or number(row, "latency_median_ms", line) is None:
            raise CalibrationError(f"{path}:{line}: needs model and latency_median_ms")
        threads = number(row, "threads", line)
        if threads is None or threads != int(threads):
            raise CalibrationError(f"{path}:{line}: column 'threads': {row.get('threads')!r} is not a whole number")
        records.append({"model": from_csv_cell(row["model"]), "sha256": row.get("sha256") or None,
                        "runtime": row.get("runtime"), "flags": row.get("flags", "").split(),
                        "threads": int(threads), "started_at": row.get("started_at"),
                        "latency_ms": {"median": number(row, "latency_median_ms", line)},
                        "peak_memory_mb": number(row, "peak_memory_mb", line),
                        "load_ms": number(row, "load_ms", line)})
    return records


def record_threads(record):
    return int(record.get("threads") or (record.get("target") or {}).get("threads") or 1)


def match(device_rows, host_records):
    """Pair each device row with a host record: sha256 first, else file stem (case-insensitive), and
    threads. A device row with no host profile at its thread count is paired with the same model's
    host profile at another count (the nearest below it, else the nearest above): a laptop cannot
    always give a device's threads, and the fit then maps the host's count to the device's."""
    by_sha, by_name = {}, {}
    for record in sorted(host_records, key=lambda r: r.get("started_at") or ""):  # latest wins
        threads = record_threads(record)
        if record.get("sha256"):
            by_sha[(record["sha256"], threads)] = record
        by_name[(record["model"].lower(), threads)] = record
    pairs, unmatched = [], []
    for row in device_rows:
        record = (row.sha256 and by_sha.get((row.sha256, row.threads))) or by_name.get((row.model.lower(), row.threads))
        if not record:
            others = [(t, r) for (sha, t), r in by_sha.items() if row.sha256 and sha == row.sha256] or \
                     [(t, r) for (name, t), r in by_name.items() if name == row.model.lower()]
            if others:
                record = min(others, key=lambda item: (item[0] > row.threads, abs(item[0] - row.threads)))[1]
        if record:
            pairs.append((row, record))
        else:
            unmatched.append(row)
    return pairs, unmatched


# ---------------------------------------------------------------- fitting

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
    fit = {"n": n, "method": method, "model": model.to_dict(), "a": model.a, "b": model.b,
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
    return fit


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


def feature_matrix(records, names):
    """Rows of the named features; a feature a record has no entry for is 0, CONSTANT is 1."""
    rows = [dict(fitters.record_features(r), **{CONSTANT: 1.0}) for r in records]
    return np.array([[row.get(name, 0.0) for name in names] for row in rows], float)


def fit_features(names, records, y, nested_loo=True):
    """The feature model, with its honest (nested) leave-one-out error and a relative interval."""
    y = np.asarray(y, float)
    n = len(y)
    available = sorted(set.intersection(*(set(fitters.record_features(r)) for r in records)) - set(RELATIVE_ONLY))
    X = feature_matrix(records, available)
    model = fitters.FeatureCalibration().fit(X, y)
    pred = model.predict(X)
    host = X[:, available.index("host_latency_ms")] if "host_latency_ms" in available else pred
    r2 = M.r2(y, pred)
    p = len(model.selected_) + 1
    fit = {"n": n, "method": "features", "model": model.to_dict(available), "a": None, "b": float(model.intercept_),
           "r2": r2, "adj_r2": M.adjusted_r2(r2, n, p - 1), "rmse": M.rmse(y, pred), "mape": M.mape(y, pred),
           "spearman": M.spearman(host, y), "kendall": M.kendall(host, y),
           "host_range": [float(host.min()), float(host.max())]}
    return _model_fit_tail(fit, names, host, y, pred, lambda: fitters.FeatureCalibration(), X, model.loo_mape_, n - p,
                           nested_loo)


def _model_fit_tail(fit, names, host, y, pred, make, X, selected_loo_mape, dof, nested_loo=True):
    """References, nested leave-one-out error and a relative interval from its residuals.

    selected_loo_mape is the leave-one-out error with the fit's own choices (features, ridge) held
    fixed and only the weights refitted per fold: what `auto` compares (see auto_score). Without
    nested_loo (studies that only need the predictions), the costly nested refits are skipped."""
    from scipy import stats

    n = len(y)
    references = [{"model": name, "host": float(h), "device": float(d), "fitted": float(q)}
                  for name, h, d, q in zip(names, host, y, pred)]
    fit["selected_loo_mape"] = float(selected_loo_mape)
    if nested_loo and n >= MIN_INTERVALS + 1:
        loo = np.array([make().fit(X[np.arange(n) != i], y[np.arange(n) != i]).predict(X[i:i + 1])[0]
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


# Corrections the relative model may add to the plain host ratio: work by operator class (where a
# device's kernels differ most from the host's), per-node overhead, memory traffic, a constant.
# Transformer work (attention's activation-by-activation MACs, softmax, normalisation and GELU elements)
# joined them after helping on both dev phones' vision transformers (experiments/mmb_phones/vit); a CNN
# has none of it, so its fits are unchanged.
TRANSFORMER_FEATURES = ("macs:attention", "softmax_elements", "norm_elements", "gelu_elements")
RELATIVE_FEATURES = tuple(f"macs:{c}" for c in ("conv_1x1", "conv_kxk", "depthwise", "grouped", "fc/matmul")) + (
    "conv_nodes", "nodes", "activation_bytes", "macs:narrow") + TRANSFORMER_FEATURES
# Kept for the relative model only: it helped there on both dev phones (experiments/mmb_phones);
# the absolute feature model was not tried with it.
RELATIVE_ONLY = ("macs:narrow",)
CONSTANT = "constant"
PRIORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "priors.json")
PRIOR_SCHEMA = "edge-profiler/calibration-prior"


def precision_class(precision):
    """What priors are learned per: 'int8' for any int8 model (static or dynamic), else 'fp32'."""
    return "int8" if str(precision or "").startswith("int8") else "fp32"


def prior_key(runtime, precision=None, threads=1):
    """The name a prior is shipped under: the runtime, then ' int8' for quantised models and ' @T' for
    T threads on the device ('tflite', 'tflite int8', 'tflite @4', 'tflite int8 @2')."""
    quantised = precision_class(precision) == "int8"
    return f"{runtime}{' int8' if quantised else ''}{f' @{threads}' if threads and threads != 1 else ''}"


def _split_key(key):
    runtime, _, threads = key.partition(" @")
    runtime, _, precision = runtime.partition(" ")
    return runtime, precision or "fp32", int(threads) if threads.isdigit() else 1


def load_prior(runtime, path=PRIORS, precision=None, threads=1):
    """The prior shape for one runtime ({feature: weight}, with where it was learned), or None.

    Priors are learned per precision (fp32, int8) and device thread count: the one of the same
    precision at the nearest thread count is taken (fewer threads on a tie); a runtime with no prior
    of that precision takes its fp32 one. The key taken is in the result."""
    if not runtime:
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        if path != PRIORS:
            raise CalibrationError(f"{path}: prior file not found") from None
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not a prior JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != PRIOR_SCHEMA or not isinstance(data.get("priors"), dict):
        raise CalibrationError(f"{path}: not an edge-profiler prior (schema {PRIOR_SCHEMA})")
    threads = threads if isinstance(threads, int) and threads > 0 else 1
    shipped = [(key, _split_key(key)) for key in data["priors"]]
    for wanted in dict.fromkeys((precision_class(precision), "fp32")):
        same = [(key, t) for key, (r, p, t) in shipped if r == runtime and p == wanted]
        if same:
            key = min(same, key=lambda item: (abs(item[1] - threads), item[1] > threads))[0]
            break
    else:
        return None
    prior = data["priors"][key]
    shape = prior.get("shape") if isinstance(prior, dict) else None
    if not isinstance(shape, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in shape.values()):
        raise CalibrationError(f"{path}: prior for {key} has no valid shape (non-negative weights by feature)")
    return {"runtime": runtime, "key": key, "shape": shape, "source": prior.get("source", "?"), "file": path}


def learn_shape(records, y):
    """A prior shape from one device's measurements: device ≈ Σ vⱼ·card featureⱼ (no host figure,
    so the shape holds for any host), non-negative, fitted on relative error and scaled to predict
    that device's latencies on average. {feature: weight}."""
    from scipy.optimize import nnls

    y = np.asarray(y, float)
    columns = relative_columns(records)
    X = feature_matrix(records, columns)
    scale = np.mean(X / y[:, None], axis=0)
    scale[~(scale > 0)] = 1.0
    design = np.vstack([X / scale / y[:, None], 1e-3 * np.eye(len(columns))])
    w = nnls(design, np.concatenate([np.ones(len(y)), np.zeros(len(columns))]), maxiter=100 * len(columns))[0] / scale
    w /= np.mean(X @ w / y)
    return {c: float(v) for c, v in zip(columns, w)}


def resolve_prior(prior, records, threads=1):
    """prior: 'auto' (the shipped prior for the references' runtime and precision at `threads` device
    threads), None/'none', a file path or a dict."""
    if prior in (None, "none"):
        return None
    if isinstance(prior, dict):
        return prior
    runtimes = {r.get("runtime") for r in records}
    runtime = runtimes.pop() if len(runtimes) == 1 else None
    precisions = {precision_class(r.get("precision")) for r in records}
    precision = precisions.pop() if len(precisions) == 1 else None
    return load_prior(runtime, PRIORS if prior == "auto" else prior, precision=precision, threads=threads)


def relative_columns(records, *first):
    """The card corrections every record has, after the given leading columns, and the constant."""
    common = set.intersection(*(set(fitters.record_features(r)) for r in records))
    return list(first) + [f for f in RELATIVE_FEATURES if f in common] + [CONSTANT]


def fit_relative(names, records, y, host_metric="host_latency_ms", prior="auto", nested_loo=True):
    """The relative model: host ratio plus shrunk corrections, with its leave-one-out error and a
    relative interval from the leave-one-out residuals. prior: see resolve_prior."""
    y = np.asarray(y, float)
    n = len(y)
    if not all(host_metric in fitters.record_features(r) for r in records):
        raise ValueError(f"the relative model needs {host_metric} for every reference")
    columns = relative_columns(records, host_metric)
    X = feature_matrix(records, columns)
    prior = resolve_prior(prior, records)
    shape = None if prior is None else [0.0] + [float(prior["shape"].get(c, 0.0)) for c in columns[1:]]
    model = fitters.RelativeCalibration(prior=shape).fit(X, y)
    pred = model.predict(X)
    host = X[:, 0]
    r2 = M.r2(y, pred)
    fit = {"n": n, "method": "relative", "model": model.to_dict(columns), "a": float(model.coef_[0]), "b": None,
           "r2": r2, "adj_r2": M.adjusted_r2(r2, n, max(1, int(np.sum(model.coef_ > 0)))), "rmse": M.rmse(y, pred),
           "mape": M.mape(y, pred), "spearman": M.spearman(host, y), "kendall": M.kendall(host, y),
           "host_range": [float(host.min()), float(host.max())]}
    if prior is not None:
        fit["prior"] = {"runtime": prior.get("runtime"), "source": prior.get("source"),
                        **({"key": prior["key"]} if prior.get("key") else {})}
    return _model_fit_tail(fit, names, host, y, pred, lambda: fitters.RelativeCalibration(prior=shape), X, model.loo_mape_,
                           n - 1, nested_loo)


MIX_CLASSES = ("conv_1x1", "conv_kxk", "depthwise", "grouped", "fc/matmul")
MIX_MIN_SHARE = 0.05  # a class under 5% of a model's MACs does not decide its latency


def operator_mix(record):
    """{class: share of the model's MACs} from its card, or None without a card."""
    by_class = ((record or {}).get("model_card") or {}).get("macs_by_class")
    if not by_class:
        return None
    total = sum(float(by_class.get(c, 0)) for c in MIX_CLASSES)
    return {c: float(by_class.get(c, 0)) / total for c in MIX_CLASSES} if total > 0 else None


def reference_mix(names, records):
    """What the references cover: each class's largest share and the reference that has it."""
    cover = {}
    for name, record in zip(names, records):
        for cls, share in (operator_mix(record) or {}).items():
            if share > cover.get(cls, {"share": -1})["share"]:
                cover[cls] = {"share": share, "model": name}
    return cover


def outside_mix(fit, record):
    """The operator classes that carry this model (≥ 5% of its MACs) at more than twice the share
    of any reference: its latency there is extrapolated from kernels the fit saw too little of."""
    mix, cover = operator_mix(record), fit.get("mix")
    if not mix or not cover:
        return []
    return [cls for cls, share in mix.items()
            if share >= MIX_MIN_SHARE and share > 2 * cover.get(cls, {"share": 0.0})["share"]]


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
    fit = _fit_group(names, records, x, y, method, prior, nested_loo)
    fit["mix"] = reference_mix(names, records)
    return fit


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
    fit = candidates[chosen]
    fit["auto"] = {"chose": chosen, "loo_mape": {m: (e if np.isfinite(e) else None) for m, e in errors.items()},
                   "why": f"leave-one-out MAPE on the {len(y)} references: "
                          + ", ".join(f"{m} {e:.2f}%" if np.isfinite(e) else f"{m} n/a (not checkable)"
                                      for m, e in errors.items())
                          + " (nested: each fold makes the method's own choices again)"
                          + f"; the relative model is kept unless another has under {100 * AUTO_OVER_RELATIVE:.0f}% "
                          "of its error"}
    return fit


def fit_label(fit):
    """How a fit is named in lines and figures: its metric, thread count and, when the references mix
    precisions, the precision it was fitted on."""
    return (f"{fit['metric']} at {fit['threads']} threads"
            + (f" from host profiles at {fit['host_threads']}" if fit.get("host_threads") else "")
            + (f", {fit['precision']}" if fit.get("precision") else ""))


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
        if metric == "latency_ms":
            fit["next_reference"] = next_reference(list(names), list(records), x, y, fit["method"], group_prior)
        fits.append({"metric": metric, "host_metric": host_metric, "threads": threads, **fit,
                     **({"precision": precision} if precision else {}),
                     # device threads from host profiles at another count: said in the fit and its predictions
                     **({"host_threads": host_threads} if host_threads != threads else {})})
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
    """The calibration dict. References whose host figure is flagged unstable or disturbed are named
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


# ---------------------------------------------------------------- saving, loading, predicting

def save(calibration, path):
    from profiler.export import write_json

    write_json(path, calibration)


def load(path):
    from calibration.schema import calibration_problem

    if os.path.exists(path) and not os.path.isfile(path):
        raise CalibrationError(f"{path}: not a regular file (a calibration is a JSON file)")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CalibrationError(f"{path}: calibration file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not a calibration JSON ({exc})") from None
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read the calibration ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise CalibrationError(f"{path}: not an edge-profiler calibration (schema {data.get('schema') if isinstance(data, dict) else None!r})")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CalibrationError(f"{path}: calibration schema version {version!r} is not a whole number; refit with "
                               "`calibrate`")
    if version != SCHEMA_VERSION:
        raise CalibrationError(f"{path}: calibration schema version {version} is not supported "
                               f"(this edge-profiler reads version {SCHEMA_VERSION}); refit with `calibrate`")
    problem = calibration_problem(data)
    if problem:
        raise CalibrationError(f"{path}: not a usable calibration ({problem}); refit with `calibrate`")
    return data


def predict_value(fit, host, record=None):
    """Device value for one host value (linear fits) or one host record (feature fits)."""
    spec = fit["model"]
    if spec["kind"] in ("relative", "features"):
        available = dict(fitters.record_features(record or {}), **{CONSTANT: 1.0})
        missing = [name for name in spec["selected"] if name not in available]
        if missing:
            how = ("profile it with --op-profile, as the references were" if missing[0].startswith("op_ms:")
                   else "its model card could not be made" if missing[0] != "host_latency_ms"
                   else "it has no host latency")
            raise CalibrationError(f"{(record or {}).get('model')}: lacks feature {missing[0]} that the calibration "
                                   f"uses ({how})")
        model = (fitters.RelativeCalibration if spec["kind"] == "relative" else fitters.FeatureCalibration).from_dict(spec)
        value = float(model.predict(feature_matrix([record], spec["features"]))[0])
    else:
        value = float(fitters.LinearCalibration.from_dict(spec).predict(np.array([[host]]))[0])
    low_edge, high_edge = fit["host_range"]
    value, bound = bounded_value(fit, host, value)
    out = {"value": value, "host": host, "extrapolated": not (low_edge <= host <= high_edge)}
    if bound:
        out["bounded"] = bound
    unseen = outside_mix(fit, record)
    if unseen:
        out["outside_mix"] = unseen
    state = fit.get("interval")
    spread = relative_spread(fit)
    widen = extrapolation_factor(fit, host, record, unseen)
    if widen > 1:
        out["interval_widened"] = round(widen, 4)
    if state and spread is not None:
        # Relative, as the error is: the references' leave-one-out spread and the host figure's own
        # uncertainty (its median's 95% interval, scaled by how much the fit passes it on), combined,
        # and widened by how far the model lies outside the references (range and operator mix).
        host_rel = host_uncertainty(record, fit.get("metric", "latency_ms")) if record else 0.0
        elasticity = 1.0
        if spec["kind"] == "linear" and fit.get("a") is not None and not bound:
            elasticity = min(1.0, abs(fit["a"] * host / value))
        total = widen * float(np.hypot(spread, elasticity * host_rel))
        out["low"], out["high"] = value * float(np.exp(-state["t"] * total)), value * float(np.exp(state["t"] * total))
        out["host_uncertainty"] = round(host_rel, 6)
    elif state and state.get("space") in ("linear", "log"):
        x0 = np.log(host) if state["space"] == "log" else host
        half = widen * state["t"] * state["s"] * np.sqrt(1 + 1 / state["n"] + (x0 - state["x_mean"]) ** 2 / state["sxx"])
        if state["space"] == "linear":
            half = half / value  # as a share of the value, so that the interval stays above zero
        out["low"], out["high"] = value * float(np.exp(-half)), value * float(np.exp(half))
    return out


BOUNDED_ORIGIN = "below the references, continued through the origin from the lowest reference"
BOUNDED_NEAREST = "at or below zero, replaced by the nearest reference's device/host ratio"


def bounded_value(fit, host, value):
    """(value, how it was bounded or None). A device figure is positive: below the references' host
    range a line with a negative intercept would cross zero, so there it is continued through the
    origin from its value at the lowest reference (the device/host ratio there); a figure still at or
    below zero (any fit) takes the device/host ratio of the reference nearest in host value. With
    neither, the fit cannot predict this model (CalibrationError)."""
    spec = fit["model"]
    low_edge = fit["host_range"][0]
    bound = None
    if spec["kind"] == "linear" and spec.get("method") != "loglinear" and 0 < host < low_edge:
        at_edge = float(fitters.LinearCalibration.from_dict(spec).predict(np.array([[low_edge]]))[0])
        through_origin = host * at_edge / low_edge
        if at_edge > 0 and through_origin > value:
            value, bound = through_origin, BOUNDED_ORIGIN
    if not (np.isfinite(value) and value > 0):
        references = [r for r in fit.get("references") or []
                      if isinstance(r, dict) and _positive(r.get("host")) and _positive(r.get("device"))]
        if host is None or not host > 0 or not references:
            raise CalibrationError(f"the {fit_label_safe(fit)} fit gives {value:.4g} for host value {host}, "
                                   "and no reference ratio can bound it")
        nearest = min(references, key=lambda r: abs(np.log(host / r["host"])))
        value, bound = host * nearest["device"] / nearest["host"], BOUNDED_NEAREST
    return float(value), bound


def _positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > 0


def fit_label_safe(fit):
    try:
        return fit_label(fit)
    except (KeyError, TypeError):
        return "calibration"


def extrapolation_factor(fit, host, record=None, unseen=()):
    """How much wider a prediction interval is than at the references: 1 inside their host range
    and operator mix, plus the distance outside the range in natural-log units (×e away: +1) and the
    largest share of the model's MACs that no reference covers (a class at 100% that no reference
    has: +1). unseen: the classes outside_mix found for this record."""
    low_edge, high_edge = fit["host_range"]
    distance = 0.0
    if host and host > 0 and low_edge > 0:
        distance = max(0.0, float(np.log(low_edge / host)), float(np.log(host / high_edge)))
    excess = 0.0
    if unseen:
        mix, cover = operator_mix(record), fit["mix"]
        excess = max(mix[cls] - (cover.get(cls) or {}).get("share", 0.0) for cls in unseen)
    return 1.0 + distance + excess


def relative_spread(fit):
    """The root mean square of the references' relative leave-one-out errors (None without them)."""
    state = fit.get("interval") or {}
    if state.get("space") == "relative":
        return state["s"]
    pairs = [(r["loo"], r["device"]) for r in fit.get("references") or [] if r.get("loo") is not None and r["device"]]
    if len(pairs) < MIN_INTERVALS:
        return None
    return float(np.sqrt(np.mean([((loo - device) / device) ** 2 for loo, device in pairs])))


def host_uncertainty(record, metric):
    """A host figure's own relative standard error: its median's 95% interval half-width over 1.96
    times the median (latency; other metrics carry none)."""
    stats = record.get("latency_ms") if metric == "latency_ms" else None
    if not isinstance(stats, dict) or not stats.get("median") or stats.get("ci_low") is None:
        return 0.0
    return max(0.0, (stats["ci_high"] - stats["ci_low"]) / 2 / 1.96 / stats["median"])


class Predictor:
    """Adds `prediction` to host records: device latency and peak memory with 95% intervals."""

    def needs_op_profile(self):
        """True if a feature fit uses per-operator-class times, which profiling must then record."""
        return any(name.startswith("op_ms:") for fit in self.calibration["fits"]
                   for name in fit["model"].get("selected", []))

    def __init__(self, calibration, force=False, warn=print, device_ram_mb=None, device_threads=None):
        self.calibration, self.force, self.warn = calibration, force, warn
        self.device_threads = device_threads
        self.device_ram_mb = device_ram_mb or calibration.get("device_ram_mb")
        self.warned = set()

    def _fit(self, metric, threads, precision=None):
        fits = [f for f in self.calibration["fits"] if f["metric"] == metric]
        if self.calibration.get("per_precision") and any(f.get("precision") == precision for f in fits):
            fits = [f for f in fits if f.get("precision") == precision]
        # the fits made from host profiles at this thread count, for whichever device count they map to
        exact = [f for f in fits if f.get("host_threads", f["threads"]) == threads]
        if self.device_threads is not None:
            exact = [f for f in exact if f["threads"] == self.device_threads]
        if len(exact) > 1:
            same = [f for f in exact if f["threads"] == threads]
            if same:
                exact = same
            else:
                key = ("device threads", metric, threads)
                if key not in self.warned:
                    self.warned.add(key)
                    self.warn(f"warning: the calibration maps {threads}-thread host profiles to "
                              f"{', '.join(str(f['threads']) for f in exact)} device threads; choose one with "
                              "--device-threads")
                return None
        if exact or not fits:
            return exact[0] if exact else None
        key = ("threads", metric, threads)
        if key not in self.warned:
            self.warned.add(key)
            have = ", ".join(str(f["threads"]) for f in fits)
            self.warn(f"warning: the calibration has {metric} fits for {have} threads, not {threads}"
                      + ("; using the nearest (--force)" if self.force else "; use --force to predict anyway"))
        return min(fits, key=lambda f: abs(f["threads"] - threads)) if self.force else None

    def annotate(self, record):
        """The record with `prediction` added, or with `no_prediction` saying why it has none."""
        if record.get("status") != "ok":
            return record
        record.pop("no_prediction", None)
        why = self._annotate(record)
        if why and not record.get("prediction"):
            record["no_prediction"] = why
        return record

    def _annotate(self, record):
        runtime = self.calibration.get("runtime")
        if runtime and record.get("runtime") != runtime:
            key = ("runtime", record.get("runtime"))
            if key not in self.warned:
                self.warned.add(key)
                self.warn(f"warning: the calibration was made for runtime {runtime}, not {record.get('runtime')}"
                          + ("; predicting anyway (--force)" if self.force else "; use --force to predict anyway"))
            if not self.force:
                return f"the calibration is for runtime {runtime}, not {record.get('runtime')} (--force)"
        precision = self.calibration.get("precision")
        if precision and record.get("precision") and record["precision"] != precision:
            key = ("precision", record["precision"])
            if key not in self.warned:
                self.warned.add(key)
                self.warn(f"warning: the calibration was fitted on {precision} references, not "
                          f"{record['precision']} ({record.get('model')})"
                          + ("; predicting anyway (--force)" if self.force else
                             "; use --force to predict anyway, or calibrate on references of that precision"))
            if not self.force:
                return f"the calibration was fitted on {precision} references, not {record['precision']} (--force)"
        fitted = {f.get("precision") for f in self.calibration["fits"]}
        if self.calibration.get("per_precision") and record.get("precision") not in fitted:
            key = ("precision", record.get("precision"))
            if key not in self.warned:
                self.warned.add(key)
                self.warn(f"warning: the calibration has fits for {', '.join(sorted(p for p in fitted if p))} "
                          f"references, not {record.get('precision') or 'an unknown precision'} "
                          f"({record.get('model')})" + ("; predicting with another precision's fit (--force)"
                                                        if self.force else "; use --force to predict anyway, or "
                                                        "calibrate on references of that precision"))
            if not self.force:
                return (f"the calibration has fits for {', '.join(sorted(p for p in fitted if p))} references, not "
                        f"{record.get('precision') or 'an unknown precision'} (--force)")
        threads = record_threads(record)
        prediction, why = {}, []
        for metric in ("latency_ms", "peak_memory_mb", "energy_mj"):
            fit = self._fit(metric, threads, record.get("precision"))
            host = host_value(record, metric)[0] if fit else None
            if fit and _positive(host):
                try:
                    prediction[metric] = predict_value(fit, host, record)
                    if fit.get("host_threads"):
                        prediction[metric].update(device_threads=fit["threads"], host_threads=fit["host_threads"])
                except CalibrationError as exc:
                    self.warn(f"warning: no {metric} prediction: {exc}")
                    why.append(f"{metric}: {exc}")
            elif fit:
                why.append(f"{metric}: no positive host figure")
        if not any(f["metric"] in ("latency_ms", "peak_memory_mb", "energy_mj")
                   and f.get("host_threads", f["threads"]) == threads for f in self.calibration["fits"]) \
                and not prediction:
            have = sorted({f["threads"] for f in self.calibration["fits"]})
            why.insert(0, f"the calibration has fits for {', '.join(map(str, have))} thread(s), not {threads} "
                          "(--force takes the nearest)")
        if self.device_ram_mb and "peak_memory_mb" in prediction:
            p = prediction["peak_memory_mb"]
            p["exceeds_device_ram"] = p["value"] > self.device_ram_mb
        if prediction:
            record["prediction"] = prediction
            return None
        return "; ".join(why) or "no fit of the calibration applies"

    def mix_advice(self, records):
        """Warnings for predictions outside the references' operator mix, each naming the class, the
        models it concerns and the ones that would help most as new references (the largest share)."""
        flagged = {}
        for record in records:
            for metric, p in (record.get("prediction") or {}).items():
                for cls in p.get("outside_mix", []):
                    flagged.setdefault(cls, {})[record["model"]] = operator_mix(record)[cls]
        lines = []
        for cls, models in sorted(flagged.items()):
            cover = next((f["mix"].get(cls) for f in self.calibration["fits"] if f.get("mix")), None) or {}
            best = sorted(models, key=models.get, reverse=True)
            lines.append(f"warning: {len(models)} model(s) outside the references' operator mix: {cls} work is "
                         f"up to {100 * max(models.values()):.0f}% of their MACs, at most "
                         f"{100 * cover.get('share', 0):.0f}% in any reference ({cover.get('model', 'none')}): "
                         f"{', '.join(best[:5])}{' …' if len(best) > 5 else ''}; measuring "
                         f"{' or '.join(best[:2])} on the device as a reference would help")
        return lines
