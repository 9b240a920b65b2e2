"""Calibration figures: for every method, predicted against measured (y = x, ±10% band, R², MAPE and
the share within ±10% in the title, leave-one-out predictions beside the fitted ones); for linear
methods a second panel with the fitted line against host values. One figure per metric, one row
per thread count, PNG + SVG. Only outliers are labelled, by number, with names in a side list."""

import os

import matplotlib

matplotlib.use("Agg")  # names are escaped by figure_text, so tick labels keep their mathtext
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from calibration import metrics as M  # noqa: E402
from profiler.escape import figure_text  # noqa: E402

LABELS = {"latency_ms": "latency (ms)", "peak_memory_mb": "peak memory (MiB)", "energy_mj": "energy (mJ)",
          "mean_memory_mb": "mean memory (MiB)", "power_mw": "power (mW)", "load_ms": "load time (ms)"}
OUTLIER = 0.10  # a reference is labelled when its leave-one-out (else fitted) error exceeds this
MAX_LABELS = 8
LOG_SPAN = 20.0  # log axes when the values span more than this factor


def identity_band(ax, low, high):
    """y = x and a ±10% band between low and high."""
    ax.plot([low, high], [low, high], color="tab:red", linewidth=1, label="y = x", zorder=2)
    ax.fill_between([low, high], [low * 0.9, high * 0.9], [low * 1.1, high * 1.1], color="tab:red", alpha=0.1,
                    label="±10%", zorder=1)


def pred_vs_measured(ax, measured, predicted, title, xlabel, ylabel, log=False):
    """One predicted-against-measured panel for many points (no labels): points, y = x and ±10%."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    ax.scatter(measured, predicted, s=12 if log else 10, alpha=0.7, zorder=3)
    low, high = (measured.min() * 0.8, measured.max() * 1.25) if log else (measured.min() * 0.95, measured.max() * 1.05)
    identity_band(ax, low, high)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _score_line(fit, measured, fitted, loo):
    parts = [f"R² {fit['r2']:.3f}", f"MAPE {M.mape(measured, fitted):.1f}%"]
    within = f"{100 * M.within(measured, fitted):.0f}% within ±10%"
    if loo is not None:
        parts[1] += f" (LOO {M.mape(measured, loo):.1f}%)"
        within += f" (LOO {100 * M.within(measured, loo):.0f}%)"
    return ", ".join(parts + [within])


def _outliers(refs, measured, guess):
    """Indices of the references whose error exceeds OUTLIER, largest first, at most MAX_LABELS."""
    errors = np.abs(guess - measured) / measured
    order = [int(i) for i in np.argsort(-errors) if errors[i] > OUTLIER]
    return order[:MAX_LABELS], errors


def _place_numbers(ax, points):
    """Number each point; a number that would cover one placed before moves up until it is clear."""
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for number, (x, y) in enumerate(points, start=1):
        for step in range(12):
            label = ax.annotate(str(number), (x, y), fontsize=7, xytext=(4, -2 + 8 * step), textcoords="offset points",
                                color="tab:red", zorder=6)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            label.remove()
        placed.append(box)


def _prediction_panel(ax, fit, device_name, label):
    refs = fit["references"]
    measured = np.array([r["device"] for r in refs], float)
    fitted = np.array([r["fitted"] for r in refs], float)
    loo = np.array([r["loo"] for r in refs], float) if refs and all("loo" in r for r in refs) else None
    values = np.concatenate([measured, fitted] + ([loo] if loo is not None else []))
    values = values[np.isfinite(values)]
    log = bool(values.min() > 0 and values.max() / values.min() > LOG_SPAN)
    low, high = (values.min() * 0.8, values.max() * 1.25) if log else (values.min() * 0.9, values.max() * 1.08)
    identity_band(ax, low, high)
    ax.scatter(measured, fitted, color="tab:blue", s=22, zorder=4, label=f"references (n = {len(refs)}), fitted")
    if loo is not None:
        ax.scatter(measured, loo, marker="x", color="tab:orange", s=26, zorder=5, label="leave-one-out prediction")
    guess = loo if loo is not None else fitted
    labelled, errors = _outliers(refs, measured, guess)
    names = []
    for number, i in enumerate(labelled, start=1):
        names.append(f"{number}: {figure_text(refs[i]['model'], limit=40)} "
                     f"({100 * (guess[i] - measured[i]) / measured[i]:+.0f}%)")
    more = int((errors > OUTLIER).sum()) - len(labelled)
    if names:
        text = "beyond ±10%:\n" + "\n".join(names) + (f"\n… {more} more" if more > 0 else "")
        ax.text(1.02, 0.0, text, transform=ax.transAxes, fontsize=7, va="bottom", ha="left")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal", adjustable="box")
    precision = f", {fit['precision']}" if fit.get("precision") else ""
    ax.set_title(figure_text(f"{fit['threads']} thread(s){precision}, {fit['method']}") + "\n"
                 + figure_text(_score_line(fit, measured, fitted, loo)), fontsize=8)
    ax.set_xlabel(figure_text(f"measured {device_name} {label}", limit=80))
    ax.set_ylabel(figure_text(f"predicted {device_name} {label}", limit=80))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    return [(measured[i], guess[i]) for i in labelled]  # numbered once the layout is final


def _host_panel(ax, fit, device_name, label, host_label):
    """Linear methods: the fitted line against host values (the mapping itself)."""
    from calibration.models import LinearCalibration

    refs = fit["references"]
    x = np.array([r["host"] for r in refs], float)
    y = np.array([r["device"] for r in refs], float)
    ax.scatter(x, y, color="tab:blue", s=22, zorder=3, label="references, measured")
    line_x = np.linspace(x.min(), x.max(), 100)
    ax.plot(line_x, LinearCalibration.from_dict(fit["model"]).predict(line_x[:, None]), color="tab:red",
            label=_equation(fit), zorder=2)
    ax.set_title("the fitted mapping", fontsize=8)
    ax.set_xlabel(figure_text(f"host {host_label}", limit=80))
    ax.set_ylabel(figure_text(f"{device_name} {label}", limit=80))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def _equation(fit):
    if fit["method"] == "loglinear":
        return f"log y = {fit['a']:.3g}·log x {'+' if fit['b'] >= 0 else '−'} {abs(fit['b']):.3g}"
    return f"y = {fit['a']:.3g}·x {'+' if fit['b'] >= 0 else '−'} {abs(fit['b']):.3g}"


def plot_metric(fits, metric, folder, device_name="device"):
    """fits: the calibration's fits for one metric (one per thread count). Returns the PNG path."""
    fig = metric_figure(fits, metric, device_name)
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, f"calibration_{metric}")
    fig.savefig(base + ".png", dpi=110, bbox_inches="tight")
    fig.savefig(base + ".svg", bbox_inches="tight")
    plt.close(fig)
    return base + ".png"


def metric_figure(fits, metric, device_name="device"):
    """The figure of one metric: a row per thread count (matplotlib Figure, not yet saved)."""
    fits = sorted(fits, key=lambda f: (f["threads"], f.get("precision") or ""))
    linear = any(f["model"]["kind"] == "linear" for f in fits)
    columns = 2 if linear else 1  # one row per thread count: predicted vs measured, then the mapping
    fig, axes = plt.subplots(len(fits), columns, figsize=(6.6 * columns, 5.4 * len(fits)), squeeze=False)
    label = LABELS.get(metric, metric)
    host_label = LABELS.get(fits[0]["host_metric"], fits[0]["host_metric"])
    numbered = []
    for row, fit in enumerate(fits):
        numbered.append((axes[row][0], _prediction_panel(axes[row][0], fit, device_name, label)))
        if linear:
            if fit["model"]["kind"] == "linear":
                _host_panel(axes[row][1], fit, device_name, label, host_label)
            else:
                axes[row][1].set_visible(False)
    fig.suptitle(figure_text(f"{device_name} {label}: predicted against measured", limit=100))
    fig.tight_layout()
    for ax, points in numbered:
        _place_numbers(ax, points)
    return fig


def plot_all(calibration, folder, device_name="device"):
    by_metric = {}
    for fit in calibration["fits"]:
        by_metric.setdefault(fit["metric"], []).append(fit)
    return [plot_metric(fits, metric, folder, device_name) for metric, fits in sorted(by_metric.items())]
