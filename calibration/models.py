"""Calibration models in the scikit-learn shape: device = f(host).

LinearCalibration fits device = a·host + b by ordinary least squares, robustly
(Huber), or in log space (log device = a·log host + b) for data spanning decades.
"""

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

METHODS = ("ols", "robust", "loglinear")


def _fit_linear(X, y, method, epsilon):
    """(coefficients, intercept) of y ≈ X·coef + intercept; X usually has one column (host)."""
    if method == "loglinear":
        if np.any(X <= 0) or np.any(y <= 0):
            raise ValueError("loglinear needs positive host and device values")
        X, y = np.log(X), np.log(y)
    if method in ("ols", "loglinear"):
        design = np.column_stack([X, np.ones(len(y))])
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        return solution[:-1], float(solution[-1])
    if method == "robust":
        from sklearn.linear_model import HuberRegressor

        scale = np.max(np.abs(X), axis=0)
        scale[scale == 0] = 1.0  # Huber's optimiser wants features of order one
        huber = HuberRegressor(epsilon=epsilon, alpha=0.0, max_iter=1000).fit(X / scale, y)
        return huber.coef_ / scale, float(huber.intercept_)
    raise ValueError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")


class LinearCalibration(RegressorMixin, BaseEstimator):
    """device ≈ a·host + b (or log device ≈ a·log host + b with method='loglinear')."""

    def __init__(self, *, method="ols", epsilon=1.35):
        self.method = method
        self.epsilon = epsilon

    def fit(self, X, y):
        X, y = validate_data(self, X, y, y_numeric=True)
        self.coef_, self.intercept_ = _fit_linear(X, y, self.method, self.epsilon)
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        if self.method == "loglinear":
            return np.exp(np.log(np.clip(X, 1e-12, None)) @ self.coef_ + self.intercept_)
        return X @ self.coef_ + self.intercept_

    @property
    def a(self):
        return float(self.coef_[0])

    @property
    def b(self):
        return float(self.intercept_)

    def to_dict(self):
        check_is_fitted(self)
        return {"kind": "linear", "method": self.method, "coef": [float(c) for c in self.coef_],
                "intercept": self.intercept_}

    @classmethod
    def from_dict(cls, data):
        model = cls(method=data["method"])
        model.coef_ = np.asarray(data["coef"], float)
        model.intercept_, model.n_features_in_ = float(data["intercept"]), len(model.coef_)
        return model


# ---------------------------------------------------------------- feature model

CARD_CLASSES = ("conv_1x1", "conv_kxk", "depthwise", "grouped", "fc/matmul", "pool", "elementwise")
# The classes of a runtime operator profile: a model with no kernel of a class spent 0 ms in it.
OP_CLASSES = CARD_CLASSES + ("other", "overhead")


def record_features(record):
    """Every candidate feature of one host record, by name.

    A feature the record cannot give (no operator profile, no card) is left out; a class that
    a profile or card has no entry for is 0, since the model has no operator of that class."""
    features = {}
    stats = record.get("latency_ms") or {}
    if stats.get("median") is not None:
        features["host_latency_ms"] = float(stats["median"])
    op_time = record.get("op_time_ms")
    if op_time:
        for cls in sorted(set(OP_CLASSES) | set(op_time)):
            features[f"op_ms:{cls}"] = float(op_time.get(cls, 0.0))
    card = record.get("model_card") or {}
    if card.get("macs_by_class"):
        for cls in CARD_CLASSES:
            features[f"macs:{cls}"] = float(card["macs_by_class"].get(cls, 0.0))
    for name in ("nodes", "activation_bytes"):
        if card.get(name) is not None:
            features[name] = float(card[name])
    if card.get("macs_narrow") is not None:
        features["macs:narrow"] = float(card["macs_narrow"])
    if card.get("macs_attention") is not None:
        features["macs:attention"] = float(card["macs_attention"])
    for name in ("softmax_elements", "norm_elements", "gelu_elements"):
        if card.get(name) is not None:
            features[name] = float(card[name])
    if card.get("ops") is not None:  # every convolution is a kernel launch with its own packing cost
        features["conv_nodes"] = float(sum(n for op, n in card["ops"].items() if "conv" in op.lower()))
    if record.get("peak_memory_mb") is not None:
        features["host_peak_memory_mb"] = float(record["peak_memory_mb"])
    return features


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


def feature_matrix(records, names):
    """Rows of the named features; a feature a record has no entry for is 0, CONSTANT is 1."""
    rows = [dict(record_features(r), **{CONSTANT: 1.0}) for r in records]
    return np.array([[row.get(name, 0.0) for name in names] for row in rows], float)


def relative_columns(records, *first):
    """The card corrections every record has, after the given leading columns, and the constant."""
    common = set.intersection(*(set(record_features(r)) for r in records))
    return list(first) + [f for f in RELATIVE_FEATURES if f in common] + [CONSTANT]


def _nnls_intercept(A, y, ridge):
    """min ||A·w + b − y||² + ridge·||w||², w ≥ 0, b free (centering removes b)."""
    from scipy.optimize import nnls

    a_mean, y_mean = A.mean(axis=0), y.mean()
    centred = A - a_mean
    target = y - y_mean
    if ridge:
        centred = np.vstack([centred, np.sqrt(ridge) * np.eye(A.shape[1])])
        target = np.concatenate([target, np.zeros(A.shape[1])])
    # Lawson–Hanson: the unconstrained optimum whenever that is feasible, the constrained one otherwise
    w = nnls(centred, target, maxiter=100 * A.shape[1])[0]
    return w, float(y_mean - a_mean @ w)


def _loo_mape(A, y, ridge):
    errors = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        w, b = _nnls_intercept(A[keep], y[keep], ridge)
        errors[i] = abs(A[i] @ w + b - y[i]) / max(abs(y[i]), 1e-12)
    return float(100 * errors.mean())


def _best_single(A, y, ridge):
    """Too few references for leave-one-out: the one feature that fits them best."""
    def residual(j):
        w, b = _nnls_intercept(A[:, [j]], y, ridge)
        return float(np.sum((A[:, j] * w[0] + b - y) ** 2))

    return [min(range(A.shape[1]), key=residual)], float("nan")


def _select(A, y, limit, ridge):
    """Forward selection by leave-one-out MAPE on the references only."""
    selected, best = [], float("inf")
    while len(selected) < limit:
        trials = [(_loo_mape(A[:, selected + [j]], y, ridge), j) for j in range(A.shape[1]) if j not in selected]
        if not trials:
            break
        score, j = min(trials)
        if score >= best:
            break
        selected.append(j)
        best = score
    return selected, best


class FeatureCalibration(RegressorMixin, BaseEstimator):
    """device ≈ Σ wᵢ·featureᵢ + b, wᵢ ≥ 0, on features scaled by their reference maximum.

    Features are chosen by forward selection on leave-one-out error, never more than
    n − 3 of them (so with the intercept, at most n − 2 free coefficients)."""

    def __init__(self, *, max_features=None, ridge=1e-6):
        self.max_features = max_features
        self.ridge = ridge

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Non-negative weights cannot follow a target that falls as a feature grows.
        tags.regressor_tags.poor_score = True
        return tags

    def fit(self, X, y):
        X, y = validate_data(self, X, y, y_numeric=True)
        n = len(y)
        scale = np.max(np.abs(X), axis=0)
        scale[scale == 0] = 1.0
        A = X / scale
        limit = max(1, min(self.max_features or X.shape[1], n - 3, X.shape[1]))
        selected, self.loo_mape_ = _select(A, y, limit, self.ridge) if n >= 4 else _best_single(A, y, self.ridge)
        w, b = _nnls_intercept(A[:, selected], y, self.ridge)
        self.scale_ = scale
        self.selected_ = np.array(selected, dtype=int)
        self.coef_ = np.zeros(X.shape[1])
        self.coef_[selected] = w / scale[selected]
        self.intercept_ = b
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return X @ self.coef_ + self.intercept_

    def to_dict(self, names):
        check_is_fitted(self)
        return {"kind": "features", "features": list(names), "coef": [float(c) for c in self.coef_],
                "intercept": float(self.intercept_), "selected": [names[i] for i in self.selected_]}

    @classmethod
    def from_dict(cls, data):
        model = cls()
        model.coef_ = np.asarray(data["coef"], float)
        model.intercept_ = float(data["intercept"])
        model.n_features_in_ = len(model.coef_)
        model.selected_ = np.array([data["features"].index(n) for n in data["selected"]], dtype=int)
        return model


# ---------------------------------------------------------------- relative (mix) model

def _relative_nnls(A, y, prior, ridge):
    """min Σ((A·w − y)/y)² + ridge·Σⱼ≥₁ (wⱼ − s·priorⱼ)², w ≥ 0, s ≥ 0.

    Column 0 (the host figure) is not shrunk. The other weights are shrunk towards a prior
    shape scaled by a free s, or towards 0 where the prior is 0."""
    from scipy.optimize import nnls

    n, p = A.shape
    with_prior = bool(np.any(prior[1:] > 0))
    design = np.zeros((n + p - 1, p + with_prior))
    design[:n, :p] = A / y[:, None]
    root = np.sqrt(ridge)
    design[n + np.arange(p - 1), 1 + np.arange(p - 1)] = root
    if with_prior:
        design[n:, p] = -root * prior[1:]
    target = np.concatenate([np.ones(n), np.zeros(p - 1)])
    return nnls(design, target, maxiter=50 * design.shape[1])[0][:p]


def _relative_loo(A, y, prior, ridge):
    """Leave-one-out relative errors of _relative_nnls."""
    errors = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        w = _relative_nnls(A[keep], y[keep], prior, ridge)
        errors[i] = (A[i] @ w - y[i]) / y[i]
    return errors


RIDGES = tuple(10.0 ** p for p in range(4, -6, -1))  # strongest shrinkage first


class RelativeCalibration(RegressorMixin, BaseEstimator):
    """device ≈ r·host + Σ wⱼ·featureⱼ, r, wⱼ ≥ 0, fitted on the relative error.

    Column 0 is the host figure (the plain ratio r, never shrunk). The other columns (work by
    operator class, convolution and node counts, activation bytes, a constant) are corrections,
    each scaled so that a weight of 1 adds as much as the host figure does on an average
    reference, and shrunk by a ridge penalty: towards 0, or towards s·prior, a shape learned on
    other devices (prior[0] is ignored) whose scale s the references set. The ridge is chosen by
    leave-one-out relative error on the references, from the strongest in `ridges`: few
    references give the ratio (or the prior's shape), more buy what their error supports."""

    def __init__(self, *, ridges=RIDGES, prior=None):
        self.ridges = ridges
        self.prior = prior

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # non-negative weights, relative loss
        tags.target_tags.positive_only = True
        return tags

    def fit(self, X, y):
        X, y = validate_data(self, X, y, y_numeric=True)
        if np.any(y <= 0):
            raise ValueError("the relative model needs positive device values")
        host = np.where(X[:, 0] > 0, X[:, 0], 1e-12)
        scale = np.mean(X / host[:, None], axis=0)
        scale[~(scale > 0)] = 1.0
        A = X / scale
        prior = np.zeros(X.shape[1]) if self.prior is None else np.asarray(self.prior, float) * scale
        if len(y) >= 4 and X.shape[1] > 1:
            errors = [np.abs(_relative_loo(A, y, prior, ridge)) for ridge in self.ridges]
            means = np.array([e.mean() for e in errors])
            best = int(np.argmin(means))
            # The one-standard-error rule: the strongest ridge whose leave-one-out error is within
            # one standard error of the best; a few references cannot tell finer differences apart.
            bound = means[best] + errors[best].std(ddof=1) / np.sqrt(len(y))
            chosen = next(i for i, m in enumerate(means) if m <= bound)
            self.ridge_, self.loo_mape_ = self.ridges[chosen], 100 * float(means[chosen])
        else:
            self.ridge_, self.loo_mape_ = max(self.ridges), float("nan")
        self.coef_ = _relative_nnls(A, y, prior, self.ridge_) / scale
        self.intercept_ = 0.0
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return X @ self.coef_

    def to_dict(self, names):
        check_is_fitted(self)
        return {"kind": "relative", "features": list(names), "coef": [float(c) for c in self.coef_],
                "ridge": float(self.ridge_), "selected": [n for n, c in zip(names, self.coef_) if c > 0]}

    @classmethod
    def from_dict(cls, data):
        model = cls()
        model.coef_ = np.asarray(data["coef"], float)
        model.ridge_, model.intercept_ = float(data["ridge"]), 0.0
        model.n_features_in_ = len(model.coef_)
        return model
