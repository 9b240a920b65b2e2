"""What a new user meets in the first hour: predictions that can be true, rankings of one kind of
figure, a calibration that says when it can predict nothing, and fits that can be checked."""

import json
import os

import numpy as np
import pytest

from conftest import ROOT, example, run_cli

EXAMPLE = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example")
OLS = os.path.join(EXAMPLE, "calib_ols.json")


def line_moved_up_the_host_axis(path, factor, out):
    """The calibration at `path` with every host figure multiplied by `factor` (the line's slope
    divided by it): the same device figures against a host `factor` times slower, so that models
    measured on any host lie far below its references."""
    cal = json.load(open(path))
    fit = next(f for f in cal["fits"] if f["metric"] == "latency_ms")
    fit["a"] /= factor
    fit["model"]["coef"] = [c / factor for c in fit["model"]["coef"]]
    fit["host_range"] = [h * factor for h in fit["host_range"]]
    fit["interval"] = dict(fit["interval"], x_mean=fit["interval"]["x_mean"] * factor,
                           sxx=fit["interval"]["sxx"] * factor ** 2)
    fit["references"] = [dict(r, host=r["host"] * factor) for r in fit["references"]]
    out.write_text(json.dumps(cal))
    return str(out)


def test_a_line_below_its_references_never_predicts_zero_or_less(digits, tmp_path):
    # The Pi 5 OLS line (negative intercept) against models far smaller than its references,
    # measured here for real: every figure, interval and ranking ratio stays positive. The line is
    # moved 100x up the host axis so that the models lie below its references on any host.
    moved = line_moved_up_the_host_axis(OLS, 100, tmp_path / "line.json")
    out = tmp_path / "r.json"
    result = run_cli("profile", "--env", "env.template", "--backend", "local", "--threads", "1", "--no-store",
                     "--iterations", "30", "--calibration", moved, "--json", out, example("tiny_cnn.onnx"),
                     digits["onnx"])
    assert result.returncode == 0, result.stderr
    records = json.loads(out.read_text())
    cal = json.load(open(moved))
    fit = next(f for f in cal["fits"] if f["metric"] == "latency_ms")
    for record in records:
        p = record["prediction"]["latency_ms"]
        host = record["latency_ms"]["median"]
        assert host < fit["host_range"][0] and fit["b"] < 0  # where the plain line would cross zero
        assert 0 < p["low"] < p["value"] < p["high"]
        assert p["bounded"] and p["extrapolated"]
        assert "bounded" in result.stdout
    ratios = [float(line.split("×")[0]) for line in result.stdout.splitlines() if "× slower" in line]
    assert ratios and all(r >= 1 for r in ratios)
    assert " -0." not in result.stdout and "(-" not in result.stdout


def test_every_fit_kind_bounds_a_figure_at_or_below_zero():
    from calibration.errors import CalibrationError
    from calibration.fits import Fit

    cal = json.load(open(OLS))
    fit = next(f for f in cal["fits"] if f["metric"] == "latency_ms")
    # an edited fit whose line is negative even at its references falls back to the nearest
    # reference's device/host ratio, never a figure at or below zero
    fit = Fit.from_dict(dict(fit, model=dict(fit["model"], intercept=-1e6), interval=None))
    nearest = min(fit["references"], key=lambda r: abs(np.log(0.5 / r["host"])))
    p = fit.predict(0.5)
    assert p["value"] == pytest.approx(0.5 * nearest["device"] / nearest["host"]) and p["bounded"]
    with pytest.raises(CalibrationError, match="no reference ratio"):
        Fit.from_dict(dict(fit, references=[])).predict(0.5)


def test_the_interval_widens_with_the_distance_outside_the_references(digits, tmp_path):
    from calibration.fits import Fit

    cal = json.load(open(OLS))
    fit = Fit.from_dict(next(f for f in cal["fits"] if f["metric"] == "latency_ms"))
    low, high = fit["host_range"]
    widths = [np.log(p["high"] / p["low"]) for p in
              (fit.predict(h) for h in ((low + high) / 2, low / 3, low / 30))]
    assert widths[0] < widths[1] < widths[2]
    assert widths[2] / widths[0] == pytest.approx(1 + np.log(30), rel=1e-6)


def test_predicted_and_host_rows_are_ranked_apart():
    from profiler.report import markdown_lines, ranking

    def record(name, runtime, median, predicted=None):
        r = {"model": name, "runtime": runtime, "status": "ok",
             "latency_ms": {"median": median, "ci_low": median, "ci_high": median, "iqr": 0.0, "min": median,
                            "max": median, "p99": median}}
        if predicted:
            r["prediction"] = {"latency_ms": {"value": predicted, "low": predicted * 0.9, "high": predicted * 1.1}}
        return r

    records = [record("cnn", "tflite", 0.01, 0.17), record("mlp", "onnx", 0.004), record("big", "tflite", 1.0, 9.0),
               record("tiny", "onnx", 0.002)]
    lines = ranking(records)
    text = "\n".join(lines)
    assert "Ranking by predicted device latency:" in text and "Ranking by median latency on this host" in text
    predicted_part, host_part = text.split("Ranking by median latency on this host")
    assert "cnn" in predicted_part and "big" in predicted_part and "mlp" not in predicted_part
    assert "52.94 × slower: big" in predicted_part  # 9.0 / 0.17
    assert "tiny (onnx) is fastest" in host_part and "2.00 × slower: mlp" in host_part
    md = "\n".join(markdown_lines(records))
    assert "- " in md and "Ranking by predicted device latency:" in md


def test_the_api_says_why_it_predicts_nothing(models):
    import calibration
    import profiler
    from calibration.errors import CalibrationError

    results = profiler.profile([models["onnx"]], profiler.Target.from_env(
        os.path.join(ROOT, "env.template"), backend="local", cpus=1, threads=1, warmup=3, iterations=20),
        store=None)
    cal = calibration.load(OLS)
    two_threads = [dict(r, threads=2, target=dict(r["target"], threads=2)) for r in results]
    with pytest.raises(CalibrationError, match="fits for 1 thread"):
        cal.predict(two_threads)
    frame = cal.predict(list(results) + two_threads)
    assert frame["no_prediction"].isna().tolist() == [True, False]
    assert "not 2" in frame["no_prediction"].iloc[1]
    assert frame["predicted_latency_ms"].notna().tolist() == [True, False]


def test_two_references_are_refused_unless_forced(tmp_path):
    device = tmp_path / "two.csv"
    lines = open(os.path.join(EXAMPLE, "pi5_device.csv")).read().splitlines()
    device.write_text("\n".join(lines[:3]) + "\n")
    out = tmp_path / "cal.json"
    refused = run_cli("calibrate", device, "--host", os.path.join(EXAMPLE, "host.json"), "--out", out)
    assert refused.returncode == 2 and not out.exists()
    assert refused.stderr.count("\n") == 1 and "only 2 matched references" in refused.stderr
    forced = run_cli("calibrate", device, "--host", os.path.join(EXAMPLE, "host.json"), "--out", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "inf" not in forced.stdout.lower() and "1.0000" not in forced.stdout and "unchecked" in forced.stdout
    assert "Infinity" not in out.read_text()


def test_log_axes_render_their_ticks_and_names_stay_literal(tmp_path, models):
    import shutil

    import profiler
    from profiler.figures import distribution_figure, latency_distribution

    named = tmp_path / "$\\alpha$ net.onnx"
    shutil.copy(example("tiny_cnn.onnx"), named)
    target = profiler.Target.from_env(None, backend="local", cpus=1, warmup=2, iterations=25)
    results = profiler.profile([models["slow"], str(named)], target, store=None)
    fig = distribution_figure(results)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()

    def width(text, math, size=8):
        label = fig.text(0, 0, text, fontsize=size, parse_math=math)
        extent = label.get_window_extent(renderer).width
        label.remove()
        return extent

    ticks = [t for t in ax.get_xticklabels() if "mathdefault" in t.get_text()]
    assert ticks
    for tick in ticks:  # drawn as 10⁻³, not as the TeX source
        drawn = tick.get_window_extent(renderer).width
        assert drawn == pytest.approx(width(tick.get_text(), True, tick.get_fontsize()), rel=0.05)
        assert drawn < 0.6 * width(tick.get_text(), False, tick.get_fontsize())
    name = next(t for t in ax.get_yticklabels() if "alpha" in t.get_text())
    assert name.get_window_extent(renderer).width == pytest.approx(width("$\\alpha$ net (onnx)", False), rel=0.02)
    title = ax.get_title()
    assert "runs each)" in title
    title_box = ax.title.get_window_extent(renderer)
    assert title_box.x0 >= 0 and title_box.x1 <= fig.bbox.width  # not cut at the figure's edge
    png = latency_distribution(results, str(tmp_path / "out"))
    assert os.path.getsize(png) > 5_000


def test_a_long_name_keeps_the_figure_readable(tmp_path, models):
    import profiler
    from profiler.figures import distribution_figure

    target = profiler.Target.from_env(None, backend="local", cpus=1, warmup=2, iterations=10)
    (record,) = profiler.profile([models["onnx"]], target, store=None)
    fig = distribution_figure([dict(record, model="n" * 3000)])
    fig.savefig(tmp_path / "f.png", dpi=110, bbox_inches="tight")
    from PIL import Image

    assert Image.open(tmp_path / "f.png").size[0] < 1500


def test_an_onnx_card_counts_shapes_resolved_at_the_profiled_input(digits):
    # the digits CNN's torch export computes its reshape target at run time (Shape, Slice, Mod, Concat)
    from profiler.analysis import model_card

    onnx_card, tflite_card = model_card(digits["onnx"]), model_card(digits["tflite"])
    assert {"Shape", "Mod", "Concat"} <= set(onnx_card["ops"])
    assert onnx_card["macs"] == tflite_card["macs"] == 88_064
    assert onnx_card["macs_by_class"]["conv_kxk"] == tflite_card["macs_by_class"]["conv_kxk"]


def test_a_card_that_cannot_count_says_so(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from profiler.analysis import model_card

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3, 3], [0.1] * 36)
    graph = helper.make_graph(
        [helper.make_node("Unknown", ["x"], ["y"], domain="com.example"), helper.make_node("Conv", ["y", "w"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    card = model_card(str(path))
    assert card["macs"] is None and card["macs_unresolved"] == {"Conv": 1}
    result = run_cli("profile", "--card-only", path)
    assert "MACs         unknown: the shapes of Conv×1 could not be resolved" in result.stdout
    assert "MACs         0" not in result.stdout


def test_tiny_figures_keep_three_significant_digits():
    from profiler.report import macs_cell, _ms

    assert [_ms(v) for v in (0.0012345, 0.012345, 0.12345, 1.2345, 12.345, 123.45)] == [
        "0.00123", "0.0123", "0.123", "1.23", "12.3", "123"]
    assert macs_cell({"model_card": {"macs": 88_064}}) == "0.0881"
    assert macs_cell({"model_card": {"macs": None, "macs_unresolved": {"Conv": 1}}}) == "?"


def test_the_table_of_a_tiny_model_shows_its_figures(digits):
    result = run_cli("profile", "--env", "env.template", "--backend", "local", "--no-store", "--iterations", "20",
                     digits["onnx"])
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("digits_cnn"))
    assert "0.0881" in row and " 0.0 " not in row
    median = row.split("ok")[1].split()[1]
    assert len(median.lstrip("0.")) >= 3, row


def test_suggest_refuses_a_mixed_list_and_says_how_to_split(models, tmp_path):
    import profiler

    target = profiler.Target.from_env(None, backend="local", cpus=1, warmup=2, iterations=10)
    results = profiler.profile([models["onnx"], models["dynamic"], models["slow"], models["tflite"]], target,
                               store=None)
    host = tmp_path / "host.json"
    host.write_text(json.dumps(list(results)))
    mixed = run_cli("calibrate", "suggest", "--host", host, "-k", "3")
    assert mixed.returncode == 2 and mixed.stderr.count("\n") == 1
    assert "onnx fp32: 3, tflite fp32: 1" in mixed.stderr and "--runtime onnx --precision 'fp32'" in mixed.stderr
    one = run_cli("calibrate", "suggest", "--host", host, "-k", "2", "--runtime", "onnx", "--precision", "fp32")
    assert one.returncode == 0, one.stderr
    assert len(one.stdout.split()) == 2 and all(p.endswith(".onnx") for p in one.stdout.split())


def test_suggest_counts_a_reference_named_twice_once(models, tmp_path):
    import calibration
    import profiler

    target = profiler.Target.from_env(None, backend="local", cpus=1, warmup=2, iterations=10)
    results = list(profiler.profile([models["onnx"], models["dynamic"], models["slow"]], target, store=None))
    picks = calibration.suggest(results, k=1, have=["tiny_cnn", "tiny_cnn", models["onnx"]])
    assert [p["measured"] for p in picks] == [True, False]
    assert [p["measured"] for p in calibration.suggest(results, k=1, have="tiny_cnn")] == [True, False]
    have = tmp_path / "have.txt"
    have.write_text("tiny_cnn\ntiny_cnn\n")
    host = tmp_path / "host.json"
    host.write_text(json.dumps(results))
    done = run_cli("calibrate", "suggest", "--host", host, "--have", have)
    assert done.returncode == 0 and len(done.stdout.split()) == 1, done.stderr


def test_the_digits_example_prints_no_tensorflow_log(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, EDGE_PROFILER_EXPORT_CACHE="0")
    done = subprocess.run([sys.executable, "-m", "experiments.examples.digits", str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "digits_cnn.tflite").is_file()
    assert "absl" not in done.stderr and "oneDNN" not in done.stderr and "cpu_feature_guard" not in done.stderr


def test_one_bad_model_among_variants_costs_only_its_own_rows(models, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--retries", 0, "--variants",
                   "int8,int8-dynamic", "--json", out, models["corrupt"], models["onnx"], env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    rows = {(r["model"], r["status"]) for r in json.loads(out.read_text())}
    # int8 without data is int8-dynamic: asked for twice, made and measured once
    assert ("tiny_cnn", "ok") in rows and ("tiny_cnn.int8-dynamic", "ok") in rows
    assert sum(1 for name, _ in rows if name.startswith("tiny_cnn.int8")) == 1
    assert ("corrupt", "error") in rows and ("corrupt.int8", "error") in rows
    cache = tmp_path / "cache" / "edge-profiler"
    assert not [d for d, subs, files in os.walk(cache) if not subs and not files]  # no empty key folder left
    empty = run_cli("profile", "--backend", "local", "--no-store", "--variants", "", models["onnx"])
    assert empty.returncode == 2 and "--variants" in empty.stderr and empty.stderr.count("\n") == 1


def test_variants_and_warnings_never_read_the_same(digits, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--retries", 0, "--variants",
                   "onnx", "--json", out, digits["onnx"], digits["torchscript"], env=env)
    assert done.returncode == 0, done.stderr
    rows = [(r["model"], r["runtime"]) for r in json.loads(out.read_text())]
    assert len(rows) == len(set(rows)) and ("digits_cnn.pt-onnx", "onnx") in rows
    for line in done.stderr.splitlines():
        if line.startswith("WARNING: digits_cnn"):
            assert line.split(":")[1].strip().endswith(")")  # the model named with its runtime


def test_the_package_metadata_raises_no_setuptools_deprecation():
    # `make demo` installs the package first: its metadata must not print setuptools' deprecation blocks
    import warnings

    from setuptools.config import pyprojecttoml
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pyprojecttoml.apply_configuration(Distribution(), os.path.join(ROOT, "pyproject.toml"))
    assert not [w for w in caught if "Deprecation" in w.category.__name__], [str(w.message)[:200] for w in caught]


@pytest.mark.parametrize("method", ["ols", "robust", "loglinear", "relative", "features"])
def test_no_method_and_no_interval_kind_returns_a_figure_at_or_below_zero(method):
    import calibration

    host = json.load(open(os.path.join(EXAMPLE, "host.json")))
    cal = calibration.fit(os.path.join(EXAMPLE, "pi5_device.csv"), host=host, method=method, metrics=["latency_ms"])
    probes = []
    for scale in (1e-4, 1e-2, 1.0, 1e2):  # far below, below, inside and above the references
        for card_scale in (0.0, 1.0, 50.0):
            record = json.loads(json.dumps(host[0]))
            record["model"] = f"probe_{scale}_{card_scale}"
            record["latency_ms"] = dict(record["latency_ms"], median=record["latency_ms"]["median"] * scale)
            card = record.get("model_card") or {}
            for key in ("macs_by_class",):
                if card.get(key):
                    card[key] = {k: v * card_scale for k, v in card[key].items()}
            probes.append(record)
    frame = cal.predict(probes)
    assert frame["predicted_latency_ms"].notna().all()
    assert (frame["predicted_latency_ms_low"] > 0).all() and (frame["predicted_latency_ms"] > 0).all()
    assert (frame["predicted_latency_ms_low"] <= frame["predicted_latency_ms"]).all()
    assert (frame["predicted_latency_ms"] <= frame["predicted_latency_ms_high"]).all()
    # a fit edited to give a negative figure everywhere falls back to the nearest reference's ratio
    data = json.loads(json.dumps(cal.data))
    fit = data["fits"][0]
    if fit["model"]["kind"] == "linear" and fit["method"] != "loglinear":
        fit["model"]["intercept"] = -1e6
    elif fit["model"]["kind"] == "features":
        fit["model"]["intercept"] = -1e6
    else:
        return  # relative and loglinear fits are positive by construction (non-negative weights, exp)
    bounded = calibration.Calibration(data).predict(probes)
    assert (bounded["predicted_latency_ms"] > 0).all() and bounded["bounded"].all()


def test_device_rows_at_four_threads_calibrate_from_one_thread_host_profiles(models, digits, tmp_path):
    import calibration
    import profiler

    target = profiler.Target.from_env(None, backend="local", cpus=1, threads=1, warmup=2, iterations=20)
    paths = [models["onnx"], models["dynamic"], models["slow"], digits["onnx"]]
    results = list(profiler.profile(paths, target, store=None, retries=0))
    host = tmp_path / "host.json"
    host.write_text(json.dumps(results))
    device = tmp_path / "pi4.csv"  # the device's own rows, at 4 threads: 3x the host's figure, plus a constant
    device.write_text("model,threads,latency_ms\n" + "".join(
        f"{r['model']},4,{3 * r['latency_ms']['median'] + 0.05}\n" for r in results))
    done = run_cli("calibrate", device, "--host", host, "--method", "ols", "--metric", "latency_ms",
                   "--out", tmp_path / "cal.json")
    assert done.returncode == 0, done.stderr
    assert "no host profile at 4 threads, so the device's 4-thread figures are fitted to 1-thread host" in done.stderr
    (fit,) = json.loads((tmp_path / "cal.json").read_text())["fits"]
    assert (fit["threads"], fit["host_threads"]) == (4, 1) and fit["a"] == pytest.approx(3, rel=1e-6)
    frame = calibration.load(tmp_path / "cal.json").predict(results)
    assert frame["predicted_latency_ms"].notna().all()
    cal = calibration.load(tmp_path / "cal.json")
    (annotated,) = cal.annotate(results[:1])
    assert annotated["prediction"]["latency_ms"]["device_threads"] == 4
    assert annotated["prediction"]["latency_ms"]["host_threads"] == 1
