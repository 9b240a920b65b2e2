"""One fitted mapping from a host figure to a device figure: the estimator that predicts, the
statistics saved with it, and the 95% interval of a prediction."""

from collections.abc import Mapping

import numpy as np

from calibration.errors import CalibrationError, lazy_module
from calibration.mix import operator_mix, outside_mix

fitters = lazy_module("calibration.models")  # scikit-learn loads when a fit is made or read

MIN_INTERVALS = 3  # references a fit needs for leave-one-out errors and intervals
ESTIMATORS = {"linear": "LinearCalibration", "features": "FeatureCalibration", "relative": "RelativeCalibration"}


class Fit(Mapping):
    """One metric's fit at one device thread count (and precision, where the references mix them).

    `estimator` is the fitted model and predicts; the statistics (n, R², leave-one-out error, the
    references, the interval's state, the operator mix, what `auto` chose…) read as a mapping, in the
    shape they are saved in, `model` being the estimator's saved form."""

    def __init__(self, estimator, stats, features=None):
        self.estimator = estimator
        self.features = None if features is None else list(features)
        self._stats = dict(stats)
        self._stats["model"] = estimator.to_dict() if features is None else estimator.to_dict(self.features)

    @classmethod
    def from_dict(cls, data):
        """The fit saved as `data` (a calibration file's `fits[i]`, already checked by its schema)."""
        spec = data["model"]
        estimator = getattr(fitters, ESTIMATORS[spec["kind"]]).from_dict(spec)
        return cls(estimator, data, None if spec["kind"] == "linear" else spec["features"])

    def to_dict(self):
        return dict(self._stats)

    def __getitem__(self, key):
        return self._stats[key]

    def __iter__(self):
        return iter(self._stats)

    def __len__(self):
        return len(self._stats)

    def __repr__(self):
        return f"<Fit {fit_label_safe(self)}: {self._stats.get('method')} on {self._stats.get('n')} references>"

    def with_fields(self, first=None, **last):
        """The same fit with statistics added: `first` before the present ones, `last` after them."""
        return Fit(self.estimator, {**(first or {}), **self._stats, **last}, self.features)

    def estimate(self, host, record=None):
        """The estimator's raw device figure for one host value (linear fits) or record (feature fits)."""
        spec = self._stats["model"]
        if spec["kind"] == "linear":
            return float(self.estimator.predict(np.array([[host]]))[0])
        available = dict(fitters.record_features(record or {}), **{fitters.CONSTANT: 1.0})
        missing = [name for name in spec["selected"] if name not in available]
        if missing:
            how = ("profile it with --op-profile, as the references were" if missing[0].startswith("op_ms:")
                   else "its model card could not be made" if missing[0] != "host_latency_ms"
                   else "it has no host latency")
            raise CalibrationError(f"{(record or {}).get('model')}: lacks feature {missing[0]} that the calibration "
                                   f"uses ({how})")
        return float(self.estimator.predict(fitters.feature_matrix([record], self.features))[0])

    def predict(self, host, record=None):
        """The device figure for one host value (linear fits) or one host record (feature fits), with
        its 95% interval and what the figure rests on (extrapolated, bounded, outside the mix)."""
        low_edge, high_edge = self["host_range"]
        value, bound = bounded_value(self, host, self.estimate(host, record))
        out = {"value": value, "host": host, "extrapolated": not (low_edge <= host <= high_edge)}
        if bound:
            out["bounded"] = bound
        unseen = outside_mix(self, record)
        if unseen:
            out["outside_mix"] = unseen
        widen = extrapolation_factor(self, host, record, unseen)
        if widen > 1:
            out["interval_widened"] = round(widen, 4)
        out.update(self.interval(value, host, record, widen, bounded=bool(bound)))
        return out

    def interval(self, value, host, record=None, widen=1.0, bounded=False):
        """{low, high (95%), host_uncertainty} of a predicted value, or {} for a fit without intervals.

        Relative, as the error is: the references' leave-one-out spread and the host figure's own
        uncertainty (its median's 95% interval, scaled by how much the fit passes it on), combined, and
        widened by how far the model lies outside the references (range and operator mix). A fit saved
        with only the OLS state (no leave-one-out values) takes the OLS prediction interval."""
        state, spread = self.get("interval"), relative_spread(self)
        if state and spread is not None:
            host_rel = host_uncertainty(record, self.get("metric", "latency_ms")) if record else 0.0
            elasticity = 1.0
            if self["model"]["kind"] == "linear" and self.get("a") is not None and not bounded:
                elasticity = min(1.0, abs(self["a"] * host / value))
            total = widen * float(np.hypot(spread, elasticity * host_rel))
            return {"low": value * float(np.exp(-state["t"] * total)), "high": value * float(np.exp(state["t"] * total)),
                    "host_uncertainty": round(host_rel, 6)}
        if state and state.get("space") in ("linear", "log"):
            x0 = np.log(host) if state["space"] == "log" else host
            half = widen * state["t"] * state["s"] * np.sqrt(1 + 1 / state["n"] + (x0 - state["x_mean"]) ** 2 / state["sxx"])
            if state["space"] == "linear":
                half = half / value  # as a share of the value, so that the interval stays above zero
            return {"low": value * float(np.exp(-half)), "high": value * float(np.exp(half))}
        return {}


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
        at_edge = fit.estimate(low_edge)
        through_origin = host * at_edge / low_edge
        if at_edge > 0 and through_origin > value:
            value, bound = through_origin, BOUNDED_ORIGIN
    if not (np.isfinite(value) and value > 0):
        references = [r for r in fit.get("references") or []
                      if isinstance(r, dict) and positive(r.get("host")) and positive(r.get("device"))]
        if host is None or not host > 0 or not references:
            raise CalibrationError(f"the {fit_label_safe(fit)} fit gives {value:.4g} for host value {host}, "
                                   "and no reference ratio can bound it")
        nearest = min(references, key=lambda r: abs(np.log(host / r["host"])))
        value, bound = host * nearest["device"] / nearest["host"], BOUNDED_NEAREST
    return float(value), bound


def positive(value):
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



def fit_label(fit):
    """How a fit is named in lines and figures: its metric, thread count and, when the references mix
    precisions, the precision it was fitted on."""
    return (f"{fit['metric']} at {fit['threads']} threads"
            + (f" from host profiles at {fit['host_threads']}" if fit.get("host_threads") else "")
            + (f", {fit['precision']}" if fit.get("precision") else ""))
