"""The figures: predicted against measured for every method, numbered outliers that never overlap,
and the latency distribution of a profile run."""

import json
import os

import numpy as np
import pytest

from tests.conftest import ROOT

import calibration  # noqa: E402
import profiler  # noqa: E402
from calibration import plots  # noqa: E402

CAL_EXAMPLE = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example")
DEVICE_CSV = os.path.join(CAL_EXAMPLE, "pi5_device.csv")
HOST_JSON = os.path.join(CAL_EXAMPLE, "host.json")


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


@pytest.mark.parametrize("method, panels", [("ols", 2), ("loglinear", 2), ("relative", 1), ("features", 1)])
def test_every_method_plots_predicted_against_measured(method, panels):
    cal = calibration.fit(DEVICE_CSV, host=HOST_JSON, method=method, metrics=["latency_ms"])
    fit = cal.fits[0]
    fig = plots.metric_figure(cal.fits, "latency_ms", "Pi 5")
    axes = visible_axes(fig)
    assert len(axes) == panels
    ax = axes[0]
    title = ax.get_title()
    for part in (f"R² {fit['r2']:.3f}", "MAPE", "LOO", "within ±10%", method):
        assert part in title
    assert {"y = x", "±10%", "leave-one-out prediction"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    measured = [r["device"] for r in fit["references"]]
    points = {tuple(np.round(c.get_offsets()[0], 9)) for c in ax.collections if len(c.get_offsets()) == len(measured)}
    assert (round(measured[0], 9), round(fit["references"][0]["fitted"], 9)) in points
    assert (round(measured[0], 9), round(fit["references"][0]["loo"], 9)) in points
    if panels == 2:
        assert axes[1].get_title() == "the fitted mapping"
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_outlier_numbers_never_overlap(tmp_path):
    """Device times that break the linear law at two references with nearly the same host time: their
    numbers would land on one spot; each stays clear of the others, and only outliers are numbered."""
    host = json.load(open(HOST_JSON))
    latency = {r["model"]: r["latency_ms"]["median"] for r in host}
    close = sorted(latency, key=latency.get)[3:5]  # 0.61 and 0.62 ms on the host
    rows = ["model,threads,latency_ms"]
    for name, value in latency.items():
        rows.append(f"{name},1,{(30.0 if name in close else 8.0 * value):.4f}")
    device = tmp_path / "device.csv"
    device.write_text("\n".join(rows) + "\n")
    cal = calibration.fit(str(device), host=host, method="ols")
    fig = plots.metric_figure(cal.fits, "latency_ms", "device")
    ax = visible_axes(fig)[0]
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    refs = cal.fits[0]["references"]
    outliers = [r for r in refs if abs(r["loo"] - r["device"]) > 0.1 * r["device"]]
    assert 2 <= len(numbers) == min(len(outliers), plots.MAX_LABELS) < len(refs)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in numbers]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    side = [t.get_text() for t in ax.texts if t.get_text().startswith("beyond ±10%")]
    assert len(side) == 1 and all(name in side[0] for name in close)
    paths = cal.plot(tmp_path / "figures")
    assert [os.path.basename(p) for p in paths] == ["calibration_latency_ms.png"]
    assert (tmp_path / "figures" / "calibration_latency_ms.svg").stat().st_size > 10_000


def test_latency_distribution_uses_a_log_axis_across_decades(tmp_path, models):
    from profiler.figures import distribution_figure, latency_distribution

    target = profiler.Target.from_env(None, backend="local", cpus=1, warmup=2, iterations=25)
    results = profiler.profile([models["slow"], models["onnx"]], target, store=None)
    medians = [r["latency_ms"]["median"] for r in results]
    assert max(medians) / min(medians) > 10
    fig = distribution_figure(results)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tiny_cnn (onnx)", "slow (onnx)"]  # fastest on top
    similar = profiler.profile([models["onnx"], models["dynamic"]], target, store=None)
    assert distribution_figure(similar).axes[0].get_xscale() == "linear"
    png = latency_distribution(results, str(tmp_path / "out"))
    assert os.path.getsize(png) > 5_000 and os.path.getsize(png[:-4] + ".svg") > 5_000
    assert latency_distribution([dict(r, samples_ms=None) for r in results], str(tmp_path / "none")) is None
