"""Priors: the shape of a device's cost over the model card's features, learned on other devices,
shipped per runtime, precision and thread count, and taken by the relative model."""

import json
import os

import numpy as np

from calibration.errors import CalibrationError, lazy_module

fitters = lazy_module("calibration.models")  # scikit-learn loads when a shape is learned

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


def split_key(key):
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
    shipped = [(key, split_key(key)) for key in data["priors"]]
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
    columns = fitters.relative_columns(records)
    X = fitters.feature_matrix(records, columns)
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
