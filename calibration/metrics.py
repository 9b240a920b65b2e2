"""Fit-quality figures: R², adjusted R², RMSE, MAPE, LOOCV, ranks, intervals, leverage."""

import numpy as np
from scipy import stats


def r2(y, pred):
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    total = np.sum((y - y.mean()) ** 2)
    return float(1 - np.sum((y - pred) ** 2) / total) if total > 0 else float("nan")


def adjusted_r2(value, n, p=1):
    return float(1 - (1 - value) * (n - 1) / (n - p - 1)) if n - p - 1 > 0 else float("nan")


def rmse(y, pred):
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(pred, float)) ** 2)))


def mape(y, pred):
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return float(100 * np.mean(np.abs(pred - y) / np.abs(y)))


def within(y, pred, tolerance=0.10):
    """Share of predictions within ±tolerance of the measured value (nn-Meter's accuracy)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return float(np.mean(np.abs(pred - y) <= tolerance * np.abs(y)))


def _rank_correlation(function, a, b):
    """NaN where it is undefined (fewer than 2 points, or a constant input), with no warning printed."""
    if len(a) < 2 or np.ptp(np.asarray(a, float)) == 0 or np.ptp(np.asarray(b, float)) == 0:
        return float("nan")
    return float(function(a, b).statistic)


def spearman(a, b):
    return _rank_correlation(stats.spearmanr, a, b)


def kendall(a, b):
    return _rank_correlation(stats.kendalltau, a, b)


def loo_predictions(make_estimator, X, y):
    """Leave-one-out: refit without each point and predict it."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        out[i] = make_estimator().fit(X[keep], y[keep]).predict(X[i:i + 1])[0]
    return out


def ols_prediction_interval(x, y, x_new, level=0.95):
    """Half-width of the OLS prediction interval for new points at x_new (simple regression)."""
    x, y, x_new = np.asarray(x, float), np.asarray(y, float), np.atleast_1d(np.asarray(x_new, float))
    n = len(x)
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (slope * x + intercept)
    s = np.sqrt(np.sum(residuals ** 2) / (n - 2))
    sxx = np.sum((x - x.mean()) ** 2)
    t = stats.t.ppf(0.5 + level / 2, n - 2)
    return t * s * np.sqrt(1 + 1 / n + (x_new - x.mean()) ** 2 / sxx)


def cooks_distance(x, y):
    """Cook's distance of each point in the simple regression y = a·x + b."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    X = np.column_stack([x, np.ones(n)])
    hat = X @ np.linalg.pinv(X.T @ X) @ X.T
    leverage = np.diag(hat)
    residuals = y - hat @ y
    s2 = np.sum(residuals ** 2) / (n - 2)
    if s2 == 0:
        return np.zeros(n)
    return residuals ** 2 / (2 * s2) * leverage / (1 - leverage) ** 2
