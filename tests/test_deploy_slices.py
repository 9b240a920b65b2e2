"""The slices users deploy: priors by precision and thread count, `auto` scored by nested
leave-one-out, references chosen for the relative model, intervals that keep their word."""

import json

import numpy as np
import pytest

from calibration.fitting import fit_group
from calibration.models import CONSTANT
from calibration.priors import PRIORS, PRIOR_SCHEMA, load_prior, prior_key, split_key
from calibration.references import design_columns, design_order, order
from tests.test_relative_calibration import records_from, spread


def write_priors(path, keys):
    shape = {"constant": 1.0, "nodes": 0.01}
    path.write_text(json.dumps({"schema": PRIOR_SCHEMA, "version": 1,
                                "priors": {key: {"shape": shape, "source": key} for key in keys}}))
    return str(path)


def test_the_prior_of_the_same_precision_at_the_nearest_thread_count_is_taken(tmp_path):
    path = write_priors(tmp_path / "priors.json", ["tflite", "tflite int8", "tflite @2", "tflite @4",
                                                   "tflite int8 @2", "torch"])

    def key(runtime, precision, threads):
        prior = load_prior(runtime, path, precision=precision, threads=threads)
        return prior and prior["key"]

    assert key("tflite", "fp32", 1) == "tflite"
    assert key("tflite", "int8 static", 1) == "tflite int8"
    assert key("tflite", "int8 dynamic", 4) == "tflite int8 @2"  # the nearest int8 count
    assert key("tflite", "fp32", 3) == "tflite @2"  # a tie goes to fewer threads
    assert key("tflite", "fp32", 4) == "tflite @4"
    assert key("tflite", "fp16", 2) == "tflite @2"  # not int8: the fp32 priors
    assert key("torch", "int8 static", 2) == "torch"  # no int8 prior for torch: its fp32 one
    assert key("onnx", "fp32", 1) is None
    assert prior_key("tflite", "int8 static", 4) == "tflite int8 @4" and prior_key("torch", "fp32", 1) == "torch"


def test_every_shipped_prior_key_reads_back():
    with open(PRIORS) as f:
        shipped = json.load(f)["priors"]
    for key in shipped:
        runtime, precision, threads = split_key(key)
        assert load_prior(runtime, precision=precision, threads=threads)["key"] == key


def test_a_calibration_across_threads_and_in_int8_takes_and_names_its_prior(tmp_path):
    import pandas as pd

    import calibration

    rng, host, conv = spread(12, 3)
    records = records_from(host, {"conv_kxk": conv, "depthwise": 0.2 * conv})
    for record in records:
        record.update(runtime="tflite", precision="int8 static", threads=1)
    device = pd.DataFrame({"model": [r["model"] for r in records], "threads": 4,
                           "latency_ms": 0.4 * host * (1 + rng.normal(0, 0.02, len(host)))})
    path = write_priors(tmp_path / "priors.json", ["tflite", "tflite int8", "tflite @4", "tflite int8 @2"])
    cal = calibration.fit(device, host=records, method="relative", prior=path)
    (fit,) = [f for f in cal.data["fits"] if f["metric"] == "latency_ms"]
    assert (fit["threads"], fit["host_threads"]) == (4, 1)
    assert fit["prior"]["key"] == "tflite int8 @2"
    from calibration.report import fit_table

    assert any("prior 'tflite int8 @2' learned on tflite int8 @2" in line for line in fit_table(cal.data))
    # fp32 references at 4 threads take the fp32 4-thread shape
    for record in records:
        record["precision"] = "fp32"
    cal = calibration.fit(device, host=records, method="relative", prior=path)
    assert cal.data["fits"][0]["prior"]["key"] == "tflite @4"


def test_auto_scores_every_candidate_by_nested_leave_one_out():
    rng, host, conv = spread(10, 5)
    noise = {f"macs:{c}": rng.uniform(0, 1e9, len(host)) for c in ("conv_1x1", "grouped", "fc/matmul")}
    records = records_from(host, {"conv_kxk": conv, **{k.split(":")[1]: v for k, v in noise.items()}})
    device = 2.5 * host * (1 + rng.normal(0, 0.05, len(host)))
    names = [r["model"] for r in records]
    fit = fit_group(names, records, host, device, "auto", prior=None)
    for candidate in ("relative", "features"):
        alone = fit_group(names, records, host, device, candidate, prior=None)
        # the score is the nested one (every choice made again in each fold), not the one with the
        # full set's choices held fixed
        assert fit["auto"]["loo_mape"][candidate] == pytest.approx(alone["loo_mape"])
    assert "nested" in fit["auto"]["why"]


def test_the_design_spreads_the_references_over_the_relative_models_columns():
    rng, host, conv = spread(80, 7)
    depthwise = conv * rng.choice([0.0, 0.01, 0.5], len(host), p=[0.45, 0.45, 0.1])
    nodes = rng.uniform(20, 400, len(host))
    records = records_from(host, {"conv_kxk": conv, "depthwise": depthwise}, nodes=nodes)
    for k in (3, 5, 8):
        picks = design_order(records, k)
        assert len(set(picks)) == k == len(picks)
        A, columns = design_columns(records)
        assert columns[0] == "host_latency_ms" and columns[-1] == CONSTANT

        def logdet(chosen):
            return np.linalg.slogdet(1e-2 * np.eye(A.shape[1]) + A[chosen].T @ A[chosen])[1]

        # more information about the model's columns than the facility-location set of the same size
        assert logdet(picks) > logdet(order(records, k)[0])
    # a design that continues a measured set keeps it first
    assert design_order(records, 6, have=[4, 9])[:2] == [4, 9]


def test_a_device_with_known_multiplicative_noise_is_covered_about_95_percent():
    """Held-out coverage of the relative model's 95% interval on a synthetic device whose latency is
    2.5× the host's with 8% log-normal noise: k = 10 references, 200 draws."""
    rng, host, conv = spread(400, 13)
    records = records_from(host, {"conv_kxk": conv})
    device = 2.5 * host * np.exp(rng.normal(0, 0.08, len(host)))
    names = [r["model"] for r in records]
    inside = []
    for _ in range(200):
        refs = rng.choice(len(host), 10, replace=False)
        held = rng.choice(np.setdiff1d(np.arange(len(host)), refs), 20, replace=False)
        fit = fit_group([names[i] for i in refs], [records[i] for i in refs], host[refs], device[refs],
                             "relative", prior=None)
        for i in held:
            p = fit.predict(host[i], records[i])
            inside.append(p["low"] <= device[i] <= p["high"])
    coverage = float(np.mean(inside))
    assert 0.90 <= coverage <= 0.98, coverage
