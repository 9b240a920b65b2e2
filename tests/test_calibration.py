"""calibrate: importers on the reference logs, fits against independent formulas, figures, CLI errors."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from calibration import importers
from calibration.fitting import fit_one
from calibration.models import LinearCalibration
from tests.conftest import ROOT, SHARED, run_cli

LOGS = os.path.join(SHARED, "reference", "device-logs")
needs_logs = pytest.mark.skipif(not os.path.isdir(LOGS), reason="../shared/reference/device-logs is absent")


@needs_logs
def test_benchmark_model_recent():
    (row,) = importers.load(os.path.join(LOGS, "tflite_benchmark_model_recent.log"))
    assert (row.model, row.threads) == ("mobilenet_v2_1.0_224", 4)
    assert row.metrics["latency_ms"] == pytest.approx(2781 / 1000)  # median of the timed-runs line
    assert row.metrics["peak_memory_mb"] == pytest.approx(93.2383)  # the periodic-monitoring peak


@needs_logs
def test_benchmark_model_legacy_uses_avg():
    (row,) = importers.load(os.path.join(LOGS, "tflite_benchmark_model_legacy.log"))
    assert (row.model, row.threads) == ("mobilenet_v1_0.75_224", 1)
    assert row.metrics == {"latency_ms": pytest.approx(79760.9 / 1000)}


@needs_logs
def test_benchmark_model_logcat_with_scientific_notation():
    (row,) = importers.load(os.path.join(LOGS, "tflite_benchmark_model_logcat.log"))
    assert (row.model, row.threads) == ("squeezenet", 2)
    assert row.metrics["latency_ms"] == pytest.approx(38002 / 1000)
    assert row.metrics["peak_memory_mb"] == pytest.approx(12.1211)  # no peak line: the overall delta


@needs_logs
def test_onnxruntime_perf_test():
    (row,) = importers.load(os.path.join(LOGS, "onnxruntime_perf_test.txt"), model="resnet18", threads=2)
    assert row.metrics["latency_ms"] == pytest.approx(144.503)
    assert row.metrics["peak_memory_mb"] == pytest.approx(158171136 / 1024 / 1024)


@needs_logs
def test_jtop_needs_the_board_ram():
    path = os.path.join(LOGS, "jtop_logger_example.csv")
    with pytest.raises(importers.DeviceLogError, match="--device-ram"):
        importers.load(path, model="m", threads=1)
    (row,) = importers.load(path, model="m", threads=1, device_ram_mb=4096)
    assert row.metrics["peak_memory_mb"] == pytest.approx(0.421 * 4096)
    assert row.metrics["mean_memory_mb"] == pytest.approx((0.412 + 0.418 + 0.421) / 3 * 4096)
    assert row.metrics["power_mw"] == pytest.approx((3120 + 3240 + 3310) / 3)
    (window,) = importers.load(path, model="m", threads=1, device_ram_mb=4096, start="2026-11-20 10:20:02")
    assert window.metrics["peak_memory_mb"] == pytest.approx(0.421 * 4096)
    assert window.metrics["mean_memory_mb"] == pytest.approx((0.418 + 0.421) / 2 * 4096)


def test_generic_csv_units(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("model,threads,latency_us,peak_memory_kb,energy_mj\nA.tflite,1,2500,2048,3.5\nb,2,1000,1024,1\n")
    a, b = importers.load(str(path))
    assert (a.model, a.threads, a.metrics) == ("A", 1, {"latency_ms": 2.5, "peak_memory_mb": 2.0, "energy_mj": 3.5})
    assert b.metrics["latency_ms"] == 1.0
    with pytest.raises(importers.DeviceLogError, match="--start/--end select a run in a jtop log; this is a csv file"):
        importers.load(str(path), start="2026-11-20 10:20:02")


@pytest.mark.parametrize("text, message", [
    ("threads,latency_ms\n1,2\n", "missing column 'model'"),
    ("model,threads,latency_ms\na,1,fast\n", ":2: column 'latency_ms': 'fast' is not a number"),
    ("model,threads,latency_ms\na,1,2\nA,1,3\n", ":3: duplicate row for model 'A' with 1 threads"),
    ("model,threads,latency_fortnights\na,1,2\n", "unknown unit suffix _fortnights"),
    ("", "empty file"),
    ("hello world\n", "not a recognised device log"),
])
def test_bad_device_input_is_one_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    done = run_cli("calibrate", path, "--host", tmp_path / "none.json")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"calibrate: error: {path}") and message in done.stderr


def test_exact_synthetic_data_recovers_a_and_b():
    x = np.array([0.5, 1.2, 3.3, 4.0, 7.5, 11.0])
    fit = fit_one([f"m{i}" for i in range(6)], x, 3.7 * x - 0.03, "ols")
    assert fit["a"] == pytest.approx(3.7, rel=1e-3) and fit["b"] == pytest.approx(-0.03, rel=1e-3)
    assert fit["r2"] == pytest.approx(1.0)


def test_loocv_and_intervals_match_independent_formulas():
    rng = np.random.default_rng(3)
    x = rng.uniform(1, 20, 9)
    y = 2.5 * x + 1 + rng.normal(0, 0.8, 9)
    fit = fit_one([f"m{i}" for i in range(9)], x, y, "ols")
    # LOOCV by the hat-matrix shortcut: e_i / (1 - h_ii)
    X = np.column_stack([x, np.ones(9)])
    hat = X @ np.linalg.inv(X.T @ X) @ X.T
    loo = y - (y - hat @ y) / (1 - np.diag(hat))
    assert [r["loo"] for r in fit["references"]] == pytest.approx(loo)
    assert fit["loo_mape"] == pytest.approx(100 * np.mean(np.abs(loo - y) / y))
    # 95% prediction interval: relative, value·exp(±t·s) with s the RMS of the relative LOO errors and
    # t the textbook interval's Student quantile (n - 2 degrees of freedom)
    reg = stats.linregress(x, y)
    x0 = 25.0
    s = np.sqrt(np.mean(((loo - y) / y) ** 2))
    t = stats.t.ppf(0.975, 7)
    inside = fit.predict(10.0)
    assert inside["value"] == pytest.approx(reg.slope * 10 + reg.intercept)
    assert (inside["low"], inside["high"]) == pytest.approx((inside["value"] * np.exp(-t * s),
                                                             inside["value"] * np.exp(t * s)))
    assert inside["extrapolated"] is False
    # outside the references' host range the interval widens by 1 + the log-distance past the edge
    p = fit.predict(x0)
    widen = 1 + np.log(x0 / x.max())
    assert p["value"] == pytest.approx(reg.slope * x0 + reg.intercept)
    assert (p["low"], p["high"]) == pytest.approx((p["value"] * np.exp(-t * s * widen),
                                                   p["value"] * np.exp(t * s * widen)))
    assert p["extrapolated"] is True
    assert fit["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert fit["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)


def test_leverage_names_the_point_that_carries_the_fit():
    x = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 20.0])
    y = np.array([3.0, 2.6, 3.5, 2.9, 3.4, 60.0])
    fit = fit_one(list("abcdef"), x, y, "ols")
    assert [p["model"] for p in fit["leverage"]] == ["f"]
    assert fit["leverage"][0]["r2_without"] < 0.5 < fit["r2"]


def test_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    for method in ("ols", "robust"):
        check_estimator(LinearCalibration(method=method))


def test_robust_and_loglinear():
    x = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    y = 2 * x + 1
    y[3] += 30  # one outlier
    assert LinearCalibration(method="robust").fit(x[:, None], y).coef_[0] == pytest.approx(2, rel=0.02)
    y = 0.5 * x ** 1.3
    model = LinearCalibration(method="loglinear").fit(x[:, None], y)
    assert model.predict(np.array([[10.0]]))[0] == pytest.approx(0.5 * 10 ** 1.3)


@pytest.fixture(scope="module")
def host_profiles(tmp_path_factory):
    """Real host profiles of five CNNs of different sizes (local backend)."""
    from experiments.examples.models import cnn_onnx

    folder = tmp_path_factory.mktemp("cal")
    shapes = [(32, (8, 16)), (64, (16, 32)), (96, (16, 32, 64)), (128, (32, 64, 64)), (160, (32, 64, 96))]
    paths = [cnn_onnx(folder / f"cnn{i}.onnx", size=s, channels=c, seed=i) for i, (s, c) in enumerate(shapes)]
    host = folder / "host.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--quiet", "--iterations", 30, "--json", host, *paths)
    assert done.returncode == 0, done.stderr
    return folder, host, json.loads(host.read_text())


def test_whole_loop_fit_plot_predict(host_profiles):
    folder, host, records = host_profiles
    device = folder / "device.csv"
    lines = ["model,threads,latency_ms,peak_memory_mb,energy_mj"]
    for r in records:
        lines.append(f"{r['model']},1,{3.7 * r['latency_ms']['median'] - 0.03},{1.5 * r['peak_memory_mb'] + 10},"
                     f"{2 * r['latency_ms']['median']}")
    lines.append("not_profiled,1,5,5,5")
    device.write_text("\n".join(lines) + "\n")
    calib, figures = folder / "calib.json", folder / "figs"
    done = run_cli("calibrate", device, "--host", host, "--out", calib, "--plot", figures, "--method", "ols")
    assert done.returncode == 0, done.stderr
    assert "not_profiled@1t" in done.stderr  # unmatched rows are listed
    saved = json.loads(calib.read_text())
    latency = next(f for f in saved["fits"] if f["metric"] == "latency_ms")
    assert latency["a"] == pytest.approx(3.7, rel=1e-3) and latency["b"] == pytest.approx(-0.03, abs=1e-3)
    assert {f["metric"] for f in saved["fits"]} == {"latency_ms", "peak_memory_mb", "energy_mj"}
    for metric in ("latency_ms", "peak_memory_mb", "energy_mj"):
        png = figures / f"calibration_{metric}.png"
        assert png.stat().st_size > 10_000 and (figures / f"calibration_{metric}.svg").exists()
        import matplotlib.image

        assert matplotlib.image.imread(png).shape[2] in (3, 4)
    svg = (figures / "calibration_latency_ms.svg").read_text()
    assert svg.count('id="axes_') == 2  # one thread count: predicted against measured, and the fitted line
    out = folder / "pred.json"
    done = run_cli("calibrate", "predict", "--calibration", calib, "--host", host, "--json", out)
    assert done.returncode == 0, done.stderr
    predicted = json.loads(out.read_text())
    for r in predicted:
        assert r["prediction"]["latency_ms"]["value"] == pytest.approx(3.7 * r["latency_ms"]["median"] - 0.03, rel=1e-3)
    assert "Ranking by predicted device latency" in done.stdout


def test_calibration_errors(host_profiles, tmp_path):
    folder, host, records = host_profiles
    one = tmp_path / "one.csv"
    one.write_text(f"model,threads,latency_ms\n{records[0]['model']},1,2\n")
    done = run_cli("calibrate", one, "--host", host)
    assert done.returncode == 2 and "a fit needs at least 2" in done.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "edge-profiler/calibration", "version": 99, "fits": []}))
    done = run_cli("calibrate", "predict", "--calibration", other, "--host", host)
    assert done.returncode == 2 and "schema version 99 is not supported" in done.stderr


def twice_as_slow(tmp_path, records):
    """A device CSV whose latencies are twice the host's."""
    device = tmp_path / "d.csv"
    device.write_text("model,threads,latency_ms\n" + "".join(
        f"{r['model']},1,{2 * r['latency_ms']['median']}\n" for r in records))
    return device


def test_other_runtime_or_threads_is_a_warning_and_force_allows_it(host_profiles, tmp_path):
    folder, host, records = host_profiles
    device = twice_as_slow(tmp_path, records)
    calib = tmp_path / "c.json"
    assert run_cli("calibrate", device, "--host", host, "--out", calib).returncode == 0
    data = json.loads(calib.read_text())
    data["runtime"] = "tflite"
    calib.write_text(json.dumps(data))
    done = run_cli("calibrate", "predict", "--calibration", calib, "--host", host)
    assert done.returncode == 1 and "made for runtime tflite, not onnx; use --force" in done.stderr
    done = run_cli("calibrate", "predict", "--calibration", calib, "--host", host, "--force")
    assert done.returncode == 0 and "predicting anyway" in done.stderr


def test_profile_with_calibration_and_device_ram(host_profiles, tmp_path):
    folder, host, records = host_profiles
    device = tmp_path / "d.csv"
    device.write_text("model,threads,latency_ms,peak_memory_mb\n" + "".join(
        f"{r['model']},1,{2 * r['latency_ms']['median']},{10 * r['peak_memory_mb']}\n" for r in records))
    calib = tmp_path / "c.json"
    assert run_cli("calibrate", device, "--host", host, "--out", calib).returncode == 0
    out = tmp_path / "p.json"
    paths = [r["path"] for r in records[:2]]
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 20, "--calibration", calib,
                   "--device-ram", "100m", "--json", out, *paths)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert all(r["prediction"]["peak_memory_mb"]["exceeds_device_ram"] for r in results)
    assert "WON'T FIT" in done.stdout and "Ranking by predicted device latency" in done.stdout


def test_feature_calibration_through_the_cli(host_profiles, tmp_path):
    folder, host, records = host_profiles
    device = tmp_path / "d.csv"
    device.write_text("model,threads,latency_ms\n" + "".join(
        f"{r['model']},1,{2 * r['latency_ms']['median'] + 1e-9 * r['model_card']['macs_by_class']['conv_kxk']}\n"
        for r in records))
    calib = tmp_path / "c.json"
    done = run_cli("calibrate", device, "--host", host, "--method", "features", "--out", calib)
    assert done.returncode == 0, done.stderr
    fit = json.loads(calib.read_text())["fits"][0]
    assert fit["method"] == "features" and fit["model"]["selected"]
    out = tmp_path / "p.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 10, "--calibration", calib,
                   "--json", out, records[0]["path"], records[-1]["path"])
    assert done.returncode == 0, done.stderr
    for r in json.loads(out.read_text()):
        expected = 2 * r["latency_ms"]["median"] + 1e-9 * r["model_card"]["macs_by_class"]["conv_kxk"]
        assert r["prediction"]["latency_ms"]["value"] == pytest.approx(expected, rel=0.25)


def test_model_names_with_dots_keep_them(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("model,threads,latency_ms\nmobilenet_v2_0.25,1,2\n/data/mobilenet_v2_0.5.tflite,1,3\n")
    assert [r.model for r in importers.load(str(path))] == ["mobilenet_v2_0.25", "mobilenet_v2_0.5"]


def test_an_output_that_is_a_folder_is_a_one_line_error(host_profiles, tmp_path):
    folder, host, records = host_profiles
    device = twice_as_slow(tmp_path, records)
    out = tmp_path / "out"
    out.mkdir()
    done = run_cli("calibrate", device, "--host", host, "--out", out)
    assert done.returncode == 2 and done.stderr.strip() == f"calibrate: error: {out}: is a folder, not a file"
    calib = tmp_path / "c.json"
    assert run_cli("calibrate", device, "--host", host, "--out", calib).returncode == 0
    done = run_cli("calibrate", "predict", "--calibration", calib, "--host", host, "--json", out)
    assert done.returncode == 2 and done.stderr.strip() == f"calibrate: error: {out}: is a folder, not a file"
    done = run_cli("calibrate", device, "--host", host, "--plot", device)
    assert done.returncode == 2 and done.stderr.strip() == f"calibrate: error: --plot {device}: is a file, not a folder"
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "d.csv", "out"]


def test_after_a_fit_it_says_what_the_last_reference_bought(tmp_path):
    """next_reference.loo_mape_one_fewer is the mean leave-one-out MAPE of the fits on n − 1 references:
    the same figure the public fit reports for each of those reference sets."""
    import statistics

    import pandas as pd

    import calibration

    folder = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example")
    device, host = os.path.join(folder, "pi5_device.csv"), os.path.join(folder, "host.json")
    cal = calibration.fit(device, host=host, method="ols", metrics=["latency_ms"])
    step = cal.data["fits"][0]["next_reference"]
    rows = pd.read_csv(device)
    fewer = []
    for drop in range(len(rows)):
        path = tmp_path / f"without_{drop}.csv"
        rows.drop(index=drop).to_csv(path, index=False)
        fewer.append(float(calibration.fit(str(path), host=host, method="ols", metrics=["latency_ms"])
                           .summary()["loo_mape"].iloc[0]))
    assert step["n"] == len(rows)
    assert step["loo_mape"] == pytest.approx(float(cal.summary()["loo_mape"].iloc[0]))
    assert step["loo_mape_one_fewer"] == pytest.approx(statistics.mean(fewer))
    out = run_cli("calibrate", device, "--host", host, "--method", "ols", "--metric", "latency_ms")
    assert out.returncode == 0 and f"with {len(rows)} references" in out.stdout, out.stdout


def test_references_measured_in_another_format_than_the_host_profiles_warn_once(tmp_path):
    import pandas as pd

    folder = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example")
    host = os.path.join(folder, "host.json")  # ONNX host profiles
    rows = pd.read_csv(os.path.join(folder, "pi5_device.csv"))
    for runtime, gap in (("tflite-2.16", True), ("onnxruntime-1.20", False)):
        path = tmp_path / f"device_{runtime}.csv"
        rows.assign(runtime=runtime).to_csv(path, index=False)
        out = run_cli("calibrate", str(path), "--host", host, "--method", "ols", "--metric", "latency_ms")
        assert out.returncode == 0, out.stderr
        warned = [line for line in out.stderr.splitlines() if "profiled on this host as onnx" in line]
        assert len(warned) == (1 if gap else 0), out.stderr
        if gap:
            assert "ran on the device as tflite" in warned[0] and "model.tflite" in warned[0]
            assert "`profile --env ENV --variants tflite model.onnx`" in warned[0]  # the command that converts
        # the relative model starts from the prior learned for this pair of formats (none ships for onnx alone)
        import calibration

        fit = calibration.fit(str(path), host=host, method="relative", metrics=["latency_ms"]).data["fits"][0]
        assert (fit.get("prior") or {}).get("runtime") == ("onnx->tflite" if gap else None), fit.get("prior")


def test_a_saved_calibration_loads_saves_and_predicts_unchanged(tmp_path):
    """A calibration file written by an earlier release (the committed examples) loads into fits that
    predict themselves, saves back to the same body, and the saved copy predicts the same figures."""
    import calibration
    from calibration.fits import Fit

    folder = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example")
    host = json.load(open(os.path.join(folder, "host.json")))
    for name in ("calib_auto.json", "calib_ols.json"):
        cal = calibration.load(os.path.join(folder, name))
        assert all(isinstance(f, Fit) and hasattr(f.estimator, "coef_") for f in cal.fits)
        cal.save(tmp_path / name)
        assert json.load(open(tmp_path / name)) == json.load(open(os.path.join(folder, name)))
        again = calibration.load(tmp_path / name).predict(host)
        assert again.equals(cal.predict(host))


def test_a_fit_keeps_the_estimator_it_made():
    host = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    fit = fit_one([f"m{i}" for i in range(5)], host, 3 * host + 0.5, "ols")
    assert fit["a"] == pytest.approx(3) and fit.estimator.coef_[0] == fit["a"]
    assert fit.predict(10.0)["value"] == pytest.approx(30.5)
    with pytest.raises(TypeError):  # the statistics are read, never edited in place
        fit["a"] = 1.0


def test_an_older_calibration_version_is_upgraded_on_load(tmp_path, monkeypatch):
    """The loader brings an older body to the current version step by step; a version with no step
    to the next is a one-line error, as is one newer than this release."""
    import calibration
    from calibration import schema

    path = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "calib_ols.json")
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(schema, "UPGRADES", {1: lambda body: dict(body, step_one=True),
                                             2: lambda body: dict(body, step_two=body["step_one"])})
    cal = calibration.load(path)
    assert (cal["version"], cal["step_one"], cal["step_two"]) == (3, True, True)
    monkeypatch.setattr(schema, "UPGRADES", {2: lambda body: body})
    with pytest.raises(calibration.CalibrationError, match="version 1 cannot be upgraded"):
        calibration.load(path)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(dict(json.load(open(path)), version=2)))
    with pytest.raises(calibration.CalibrationError, match="a newer edge-profiler wrote it"):
        calibration.load(newer)
