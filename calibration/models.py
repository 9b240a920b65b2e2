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
