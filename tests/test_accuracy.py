"""Accuracy on real data (scikit-learn's handwritten digits, a classifier trained by the project's own
code), evaluated inside the sandbox with the device's runtime, against a plain evaluation of the same
runtime's outputs; a regression model with a known error; bad data as one line per model."""

import json
import os

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

import profiler  # noqa: E402


def plain_scores(path, x):
    """The runtime's own outputs, sample by sample, with no edge-profiler code in between."""
    if path.endswith(".onnx"):
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return np.stack([session.run(None, {"input": row[None]})[0][0] for row in x])
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scores = []
    for row in x:
        scale, zero = inp["quantization"]
        if inp["dtype"] == np.int8:  # a full-integer model takes its input quantized with its own scale
            row = np.clip(np.round(row / scale + zero), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        value = interp.get_tensor(out["index"])[0].astype(np.float32)
        scale, zero = out["quantization"]
        scores.append((value - zero) * scale if out["dtype"] == np.int8 else value)
    return np.stack(scores)


def target(backend="local", **settings):
    return profiler.Target.from_env(os.path.join(ROOT, "env.template"), backend=backend, cpus=1, iterations=10,
                                    warmup=2, **settings)


def check_against_plain(record, path, data):
    from sklearn.metrics import f1_score, precision_score, recall_score

    arrays = np.load(data)
    x, y = arrays["x_data"], arrays["y_data"]
    predicted = plain_scores(path, x).argmax(axis=1)
    accuracy = record["accuracy"]
    assert accuracy["task"] == "classification" and accuracy["n"] == len(y) == 719
    assert round(accuracy["metrics"]["top1"] * len(y)) == int(np.sum(predicted == y))  # the same count, exactly
    assert accuracy["metrics"]["precision"] == pytest.approx(precision_score(y, predicted, average="macro"))
    assert accuracy["metrics"]["recall"] == pytest.approx(recall_score(y, predicted, average="macro"))
    assert accuracy["metrics"]["f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert accuracy["data_sha256"] == record["settings"]["data_sha256"]
    assert accuracy["metrics"]["top1"] > 0.9  # a trained classifier on held-out digits


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_digits_accuracy_in_the_sandbox_equals_a_plain_evaluation(request, digits, backend):
    if backend == "docker":
        request.getfixturevalue("docker_backend")
    paths = [digits["onnx"]] + ([digits["tflite"]] if digits["tflite"] else [])
    results = profiler.profile(paths, target(backend, data=digits["data"]), store=None, retries=0)
    assert [r["status"] for r in results] == ["ok"] * len(paths), [r.get("error") for r in results]
    for record, path in zip(results, paths):
        assert record["backend"] == backend
        check_against_plain(record, path, digits["data"])
    frame = results.to_pandas()
    assert frame["accuracy.metrics.top1"].tolist() == [r["accuracy"]["metrics"]["top1"] for r in results]


def test_accuracy_reaches_the_table_csv_and_the_store_key(digits, tmp_path):
    import csv

    store = tmp_path / "p.db"
    done = run_cli("profile", "--backend", "local", "--store", store, "--iterations", 10, "--data", digits["data"],
                   "--csv", tmp_path / "r.csv", digits["onnx"])
    assert done.returncode == 0, done.stderr
    (row,) = csv.DictReader(open(tmp_path / "r.csv"))
    assert "top-1 " in done.stdout and "(n=719)" in done.stdout
    assert float(row["accuracy_top1"]) > 0.9 and row["accuracy_task"] == "classification"
    without = profiler.profile([digits["onnx"]], target(), store=store, retries=0)  # no data: another key
    assert not without[0].get("from_store") and "accuracy" not in without[0]


def test_a_regression_model_has_its_known_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(4, 1)).astype(np.float32), np.array([0.25], np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["input", "w", "b"], ["y"])], "linear",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                              initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "linear.onnx")
    x = rng.normal(size=(200, 4)).astype(np.float32)
    offsets = np.where(np.arange(200) % 2 == 0, 0.5, -0.5)[:, None]
    np.savez(tmp_path / "reg.npz", x_data=x, y_data=(x @ w + b + offsets).astype(np.float64))
    (record,) = profiler.profile([str(tmp_path / "linear.onnx")], target(data=str(tmp_path / "reg.npz")), store=None,
                                 retries=0)
    metrics = record["accuracy"]["metrics"]
    assert record["accuracy"]["task"] == "regression" and record["accuracy"]["n"] == 200
    assert metrics["mae"] == pytest.approx(0.5, abs=1e-5) and metrics["mse"] == pytest.approx(0.25, abs=1e-5)
    assert metrics["rmse"] == pytest.approx(0.5, abs=1e-5)


BAD_DATA = {
    "wrong shape": (lambda x, y: {"x_data": np.zeros((5, 65), np.float32), "y_data": y[:5]}, "has shape [65]"),
    "wrong dtype": (lambda x, y: {"x_data": np.array(["a"] * 5), "y_data": y[:5]}, "not numbers"),
    "labels out of range": (lambda x, y: {"x_data": x[:5], "y_data": np.array([0, 1, 2, 3, 12])}, "outside the"),
    "NaN": (lambda x, y: {"x_data": np.where(np.arange(64) == 3, np.nan, x[:5]).astype(np.float32),
                          "y_data": y[:5]}, "NaN"),
    "counts differ": (lambda x, y: {"x_data": x[:5], "y_data": y[:4]}, "different numbers of samples"),
    "no x_data": (lambda x, y: {"images": x[:5]}, "needs x_data"),
    "uint64 labels": (lambda x, y: {"x_data": x[:5], "y_data": np.array([0, 1, 2, 3, 2 ** 64 - 1], np.uint64)},
                      "(0…18446744073709551615)"),
    "no samples": (lambda x, y: {"x_data": x[:0], "y_data": y[:0]}, "x_data holds no samples"),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_is_an_error_row_of_one_line_for_that_model(digits, tmp_path, case):
    make, message = BAD_DATA[case]
    arrays = np.load(digits["data"])
    np.savez(tmp_path / "bad.npz", **make(arrays["x_data"], arrays["y_data"]))
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--retries", 0, "--data",
                   tmp_path / "bad.npz", "--json", tmp_path / "r.json", digits["onnx"])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (record,) = json.load(open(tmp_path / "r.json"))
    assert record["status"] == "error" and message in record["error"] and "\n" not in record["error"]


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_a_10_gib_array_under_a_512_mib_cap_is_an_error_row_before_it_is_read(digits, tmp_path, backend):
    from tests.bigdata import huge_zero_npz

    huge_zero_npz(tmp_path / "huge.npz", "x_data", (10 * 2 ** 30 // 256, 64))  # 10 GiB of float32 samples
    done = run_cli("profile", "--backend", backend, "--memory", "512m", "--no-store", "--iterations", 5,
                   "--retries", 0, "--data", tmp_path / "huge.npz", "--json", tmp_path / "r.json", digits["onnx"],
                   timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (record,) = json.load(open(tmp_path / "r.json"))
    if not record["enforced"]["memory"]:
        pytest.skip(f"the {backend} backend could not enforce the memory cap here")
    assert record["status"] == "error" and "\n" not in record["error"], record
    assert "10.0 GiB" in record["error"] and "512 MiB memory cap" in record["error"]


@pytest.mark.parametrize("content, message", [(b"not an archive", "not a readable .npz"), (None, "not found")])
def test_a_data_file_that_is_not_an_npz_is_named(digits, tmp_path, content, message):
    path = tmp_path / "d.npz"
    if content is not None:
        path.write_bytes(content)
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--data", path,
                   "--json", tmp_path / "r.json", digits["onnx"])
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    text = done.stderr if content is None else json.load(open(tmp_path / "r.json"))[0]["error"]
    assert message in text


def test_a_calibration_fitted_on_fp32_refuses_an_int8_record_without_force(tmp_path):
    import pandas as pd
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import calibration
    from tests.conftest import example

    quantized = str(tmp_path / "tiny_int8.onnx")
    quantize_dynamic(example("tiny_cnn.onnx"), quantized, weight_type=QuantType.QInt8)
    results = profiler.profile([example("tiny_cnn.onnx"), quantized], target(), store=None, retries=0)
    assert [r["precision"] for r in results] == ["fp32", "int8 dynamic"]
    references = [dict(results[0], model=f"m{i}", sha256=None, latency_ms={"median": 0.2 * (i + 1)})
                  for i in range(6)]
    device = pd.DataFrame({"model": [f"m{i}" for i in range(6)], "threads": 1,
                           "latency_ms": [0.9 * (i + 1) for i in range(6)]})
    cal = calibration.fit(device, host=references, method="ols")
    assert cal.data["precision"] == "fp32"
    with pytest.raises(calibration.CalibrationError, match="fitted on fp32 references, not int8 dynamic"):
        cal.predict([results[1]])
    assert any("fitted on fp32 references, not int8 dynamic" in w and "--force" in w for w in cal.warnings)
    mixed = cal.predict([results[0], results[1]])  # a row without a prediction says why
    assert mixed["predicted_latency_ms"].notna().tolist() == [True, False]
    assert "not int8 dynamic" in mixed.loc[1, "no_prediction"]
    forced = cal.predict([results[1]], force=True)
    assert forced.loc[0, "predicted_latency_ms"] > 0
    same = cal.predict([results[0]])
    assert same.loc[0, "predicted_latency_ms"] > 0


def test_int8_variants_are_made_profiled_and_evaluated_beside_the_original(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    paths = [digits["onnx"]] + ([digits["tflite"]] if digits["tflite"] else [])
    before = set(os.listdir(os.path.dirname(digits["onnx"])))
    results = profiler.profile(paths, target(data=digits["data"]), store=None, retries=0,
                               variants="int8,int8-dynamic,fp16")
    assert set(os.listdir(os.path.dirname(digits["onnx"]))) == before  # nothing written beside the user's file
    kinds = {(r["runtime"], (r.get("variant") or {}).get("kind")): r for r in results}
    expected = {("onnx", None), ("onnx", "int8-static"), ("onnx", "int8-dynamic"), ("onnx", "fp16")}
    if digits["tflite"]:
        expected |= {("tflite", None), ("tflite", "int8-static"), ("tflite", "int8-dynamic"), ("tflite", "fp16")}
    assert set(kinds) == expected and all(r["status"] == "ok" for r in results)
    for (runtime, kind), record in kinds.items():
        assert record["precision"] == {None: "fp32", "int8-static": "int8 static", "int8-dynamic": "int8 dynamic",
                                       "fp16": "fp16"}[kind]
        assert record["path"].startswith(str(tmp_path / "cache"))  or kind is None
        check_against_plain(record, record["path"], digits["data"])
        fp32 = kinds[(runtime, None)]["accuracy"]["metrics"]["top1"]
        assert abs(record["accuracy"]["metrics"]["top1"] - fp32) <= 0.03, (runtime, kind)
    for runtime in {r for r, _ in kinds}:  # calibrated on the data file's own calibration samples, never scored
        assert kinds[(runtime, "int8-static")]["variant"]["calibration"] == {"array": "x_calibration", "samples": 100,
                                                                             "scored": False}
    made = {r["path"]: os.path.getmtime(r["path"]) for r in results if r.get("variant")}
    again = profiler.profile(paths, target(data=digits["data"]), store=None, retries=0, variants="int8")
    assert all(os.path.getmtime(r["path"]) == made[r["path"]] for r in again if r.get("variant"))  # from the cache
    frame = results.to_pandas()
    assert set(frame["precision"]) >= {"fp32", "int8 static", "int8 dynamic"}


def test_the_front_keeps_exactly_the_models_no_other_beats_on_both(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    results = profiler.profile([digits["onnx"]], target(data=digits["data"], device_ram_mb=4096), store=None,
                               retries=0, variants="int8-dynamic,fp16")
    table = results.front()
    assert len(table) == 3 and table["latency_ms"].is_monotonic_increasing
    for _, row in table.iterrows():
        beaten = ((table["latency_ms"] <= row["latency_ms"]) & (table["accuracy"] >= row["accuracy"])
                  & ((table["latency_ms"] < row["latency_ms"]) | (table["accuracy"] > row["accuracy"]))).any()
        assert row["on_front"] == (not beaten)
        assert row["fits_device_ram"] == (row["peak_memory_mb"] <= 4096) and row["memory_basis"] == "host"
    best = table["accuracy"].max()
    if best < 1:
        assert results.front(min_accuracy=min(1.0, best + 1e-6)).empty
    assert len(results.front(budget_ms=table["latency_ms"].min())) >= 1
    with pytest.raises(profiler.ProfileError, match="min_accuracy: 2: a top-1 share at most 1"):
        results.front(min_accuracy=2.0)


def test_without_labels_a_variant_is_compared_with_its_original(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    x = np.load(digits["data"])["x_data"][:300]
    np.savez(tmp_path / "unlabelled.npz", x_data=x)
    store = profiler.Store(str(tmp_path / "s.db"))
    results = profiler.profile([digits["onnx"]], target(data=str(tmp_path / "unlabelled.npz")), store=store,
                               retries=0, variants="int8-dynamic")
    original, variant = sorted(results, key=lambda r: bool(r.get("variant")))
    agreement = variant["accuracy"]["agreement"]
    fp32, int8 = plain_scores(digits["onnx"], x), plain_scores(variant["path"], x)
    assert agreement["with"] == original["model"] and agreement["n"] == 300
    assert round(agreement["top1"] * 300) == int(np.sum(fp32.argmax(axis=1) == int8.argmax(axis=1)))
    assert agreement["max_abs_diff"] == pytest.approx(float(np.abs(int8 - fp32).max()), rel=1e-4)
    assert agreement["mean_abs_diff"] == pytest.approx(float(np.abs(int8 - fp32).mean()), rel=1e-4)
    assert "agreement" not in original["accuracy"] and original["accuracy"]["task"] == "outputs"
    assert all("outputs" not in r["accuracy"] for r in results)  # the raw outputs stay out of the results
    # the store keeps them, so a later run's new variant is compared with a stored original (served
    # when its figures were steady, measured again otherwise: the agreement is the same either way)
    (stored,) = [r for r in store.records() if r["path"] == original["path"]]
    assert stored["accuracy"]["outputs"]["kind"] == "values" and stored["accuracy"]["outputs"]["shape"] == [300, 10]
    again = profiler.profile([digits["onnx"]], target(data=str(tmp_path / "unlabelled.npz")), store=store,
                             retries=0, variants="int8-dynamic,fp16")
    fp16 = next(r for r in again if (r.get("variant") or {}).get("kind") == "fp16")
    assert fp16["accuracy"]["agreement"]["top1"] == pytest.approx(
        np.mean(plain_scores(fp16["path"], x).argmax(axis=1) == fp32.argmax(axis=1)))
    assert fp16["accuracy"]["agreement"]["max_abs_diff"] == pytest.approx(
        float(np.abs(plain_scores(fp16["path"], x) - fp32).max()), rel=1e-4)


def test_a_reference_compares_every_other_model_in_the_csv(digits, tmp_path):
    if not digits["tflite"]:
        pytest.skip("no TFLite digits model (TensorFlow not installed)")
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--retries", 0, "--data",
                   digits["data"], "--reference", digits["onnx"], "--csv", tmp_path / "r.csv",
                   digits["onnx"], digits["tflite"])
    assert done.returncode == 0, done.stderr
    import pandas as pd

    rows = pd.read_csv(tmp_path / "r.csv").set_index("runtime")
    x = np.load(digits["data"])["x_data"]
    same = np.mean(plain_scores(digits["onnx"], x).argmax(axis=1) == plain_scores(digits["tflite"], x).argmax(axis=1))
    assert rows.loc["tflite", "agreement_with"] == rows.loc["onnx", "model"]
    assert rows.loc["tflite", "agreement_top1"] == pytest.approx(same)
    assert pd.isna(rows.loc["onnx", "agreement_with"]) and rows.loc["onnx", "precision"] == "fp32"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--reference", digits["onnx"],
                   digits["tflite"])
    assert done.returncode == 2 and "not one of the models" in done.stderr and "Traceback" not in done.stderr


def test_references_that_mix_precisions_get_a_fit_per_precision(tmp_path):
    import pandas as pd
    from onnxconverter_common import float16
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import calibration
    import onnx
    from tests.conftest import example

    quantized, half = str(tmp_path / "tiny_int8.onnx"), str(tmp_path / "tiny_fp16.onnx")
    quantize_dynamic(example("tiny_cnn.onnx"), quantized, weight_type=QuantType.QInt8)
    onnx.save(float16.convert_float_to_float16(onnx.load(example("tiny_cnn.onnx")), keep_io_types=True), half)
    fp32, int8, fp16 = profiler.profile([example("tiny_cnn.onnx"), quantized, half], target(), store=None, retries=0)
    assert (fp32["precision"], int8["precision"], fp16["precision"]) == ("fp32", "int8 dynamic", "fp16")

    def references(record, prefix, count):
        return [dict(record, model=f"{prefix}{i}", sha256=None, latency_ms={"median": 0.2 * (i + 1)})
                for i in range(count)]

    slopes = {"f": 4.5, "q": 7.0}
    host = references(fp32, "f", 6) + references(int8, "q", 6)
    device = pd.DataFrame({"model": [r["model"] for r in host], "threads": 1,
                           "latency_ms": [slopes[r["model"][0]] * r["latency_ms"]["median"] for r in host]})
    cal = calibration.fit(device, host=host, method="ols")
    fits = {f["precision"]: f for f in cal.data["fits"] if f["metric"] == "latency_ms"}
    assert set(fits) == {"fp32", "int8 dynamic"} and cal.data["per_precision"]
    assert fits["fp32"]["a"] == pytest.approx(4.5) and fits["int8 dynamic"]["a"] == pytest.approx(7.0)
    predicted = cal.predict([fp32, int8])
    assert predicted.loc[0, "predicted_latency_ms"] == pytest.approx(4.5 * fp32["latency_ms"]["median"], rel=1e-6)
    assert predicted.loc[1, "predicted_latency_ms"] == pytest.approx(7.0 * int8["latency_ms"]["median"], rel=1e-6)
    with pytest.raises(calibration.CalibrationError, match="not fp16"):
        cal.predict([fp16])
    assert any("not fp16" in w and "--force" in w for w in cal.warnings)
    assert cal.predict([fp16], force=True).loc[0, "predicted_latency_ms"] > 0

    # too few int8 references for a fit of their own: fp32 keeps its fit, int8 gets none, and it is said
    few = references(fp32, "f", 6) + references(int8, "q", 2)
    cal = calibration.fit(device[device["model"].isin([r["model"] for r in few])], host=few, method="ols")
    assert [f.get("precision") for f in cal.data["fits"]] == ["fp32"]
    assert cal.data["precisions_without_fit"] == [{"metric": "latency_ms", "threads": 1, "precision": "int8 dynamic",
                                                   "n": 2}]
    from calibration.report import warnings

    assert any("int8 dynamic: only 2 reference(s)" in line for line in warnings(cal.data))


def test_a_torchscript_model_gets_its_variants_through_its_onnx_export(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made = digits
    results = profiler.profile([made["torchscript"]], target(data=made["data"]), store=None, retries=0,
                               variants="int8")
    kinds = {(r["runtime"], (r.get("variant") or {}).get("kind")): r for r in results}
    assert set(kinds) == {("torch", None), ("onnx", "onnx"), ("onnx", "int8-static")}
    assert all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    original, export, int8 = kinds[("torch", None)], kinds[("onnx", "onnx")], kinds[("onnx", "int8-static")]
    assert (export["precision"], int8["precision"]) == ("fp32", "int8 static")
    for record in (export, int8):
        check_against_plain(record, record["path"], made["data"])
        assert record["variant"]["of"] == original["model"] and record["accuracy"]["agreement"]["with"] == original["model"]
    assert export["accuracy"]["agreement"]["top1"] == 1.0 and export["accuracy"]["agreement"]["max_abs_diff"] < 1e-4
    assert export["accuracy"]["metrics"]["top1"] == original["accuracy"]["metrics"]["top1"]
    assert export["model"] == "digits_cnn.pt-onnx" and int8["model"] == "digits_cnn.pt-onnx.int8-static"
    assert abs(int8["accuracy"]["metrics"]["top1"] - original["accuracy"]["metrics"]["top1"]) <= 0.03


def test_the_api_takes_the_data_as_arrays(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    arrays = np.load(digits["data"])
    x, y = arrays["x_data"][:200], arrays["y_data"][:200]
    (from_arrays,) = profiler.profile([digits["onnx"]], target(data=(x, y)), store=None, retries=0)
    np.savez(tmp_path / "same.npz", x_data=x, y_data=y)
    (from_file,) = profiler.profile([digits["onnx"]], target(data=str(tmp_path / "same.npz")), store=None, retries=0)
    assert from_arrays["accuracy"]["n"] == 200 and from_arrays["accuracy"]["task"] == "classification"
    assert from_arrays["accuracy"]["metrics"] == from_file["accuracy"]["metrics"]
    assert target(data={"x_data": x, "y_data": y}).data == target(data=(x, y)).data  # one file per content
    with pytest.raises(profiler.ConfigError, match="data: an .npz path, an array"):
        target(data=123)
