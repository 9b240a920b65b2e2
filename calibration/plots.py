"""Predicted-versus-measured figures: one per metric, one panel per thread count, PNG + SVG."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {"latency_ms": "latency (ms)", "peak_memory_mb": "peak memory (MiB)", "energy_mj": "energy (mJ)",
          "mean_memory_mb": "mean memory (MiB)", "power_mw": "power (mW)", "load_ms": "load time (ms)"}


def _equation(fit):
    if fit["model"]["kind"] == "features":
        return f"y = Σ w·feature + b ({', '.join(fit['model']['selected'])}), R² = {fit['r2']:.3f}"
    if fit["model"]["kind"] == "relative":
        return f"y = a·x + Σ w·feature ({', '.join(fit['model']['selected'])}), R² = {fit['r2']:.3f}"
    if fit["method"] == "loglinear":
        return f"log y = {fit['a']:.3g}·log x {'+' if fit['b'] >= 0 else '−'} {abs(fit['b']):.3g}, R² = {fit['r2']:.3f}"
    return f"y = {fit['a']:.3g}x {'+' if fit['b'] >= 0 else '−'} {abs(fit['b']):.3g}, R² = {fit['r2']:.3f}"


def plot_metric(fits, metric, folder, device_name="device"):
    """fits: the calibration's fits for one metric (one per thread count). Returns the PNG path."""
    fits = sorted(fits, key=lambda f: f["threads"])
    fig, axes = plt.subplots(2, len(fits), figsize=(5 * len(fits), 6.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]})
    label = LABELS.get(metric, metric)
    host_label = LABELS.get(fits[0]["host_metric"], fits[0]["host_metric"])
    for column, fit in enumerate(fits):
        top, bottom = axes[0][column], axes[1][column]
        refs = fit["references"]
        x = np.array([r["host"] for r in refs])
        y = np.array([r["device"] for r in refs])
        top.scatter(x, y, color="tab:blue", zorder=3, label="measured")
        for r in refs:
            top.annotate(r["model"], (r["host"], r["device"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if fit["model"]["kind"] in ("features", "relative"):  # not a line in host space: the fitted values
            top.scatter(x, [r["fitted"] for r in refs], marker="_", s=120, color="tab:red", zorder=4, label="fit")
        else:
            from calibration.models import LinearCalibration

            line_x = np.linspace(x.min(), x.max(), 100)
            model = LinearCalibration.from_dict(fit["model"])
            top.plot(line_x, model.predict(line_x[:, None]), color="tab:red", label="fit")
        if refs and "loo" in refs[0]:
            top.scatter(x, [r["loo"] for r in refs], marker="x", color="tab:orange", zorder=4,
                        label="leave-one-out prediction")
        top.set_title(f"CPU/Thread = {fit['threads']}")
        top.text(0.03, 0.95, _equation(fit), transform=top.transAxes, va="top", fontsize=8, wrap=True,
                 bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
        top.set_xlabel(f"host {host_label}")
        top.set_ylabel(f"{device_name} {label}")
        top.grid(alpha=0.3)
        top.legend(fontsize=7, loc="lower right")
        residuals = y - np.array([r["fitted"] for r in refs])
        bottom.axhline(0, color="tab:red", linewidth=1)
        bottom.scatter(x, residuals, color="tab:blue", s=14)
        if refs and "loo" in refs[0]:
            bottom.scatter(x, y - np.array([r["loo"] for r in refs]), marker="x", color="tab:orange", s=14)
        bottom.set_xlabel(f"host {host_label}")
        bottom.set_ylabel("residual")
        bottom.grid(alpha=0.3)
    fig.suptitle(f"{device_name}: measured {label} against host")
    fig.tight_layout()
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, f"calibration_{metric}")
    fig.savefig(base + ".png", dpi=110)
    fig.savefig(base + ".svg")
    plt.close(fig)
    return base + ".png"


def plot_all(calibration, folder, device_name="device"):
    by_metric = {}
    for fit in calibration["fits"]:
        by_metric.setdefault(fit["metric"], []).append(fit)
    return [plot_metric(fits, metric, folder, device_name) for metric, fits in sorted(by_metric.items())]
