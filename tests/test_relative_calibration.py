"""The relative model: fitted on relative error, shrunk towards the plain ratio; operator-mix flags."""

import numpy as np
import pytest

from calibration import metrics as M
from calibration.api import Calibration, load
from calibration.fitting import build, fit_group
from calibration.predicting import Predictor


def records_from(host, macs_by_class, nodes=None):
    out = []
    for i, h in enumerate(host):
        card = {"macs_by_class": {c: float(v[i]) for c, v in macs_by_class.items()},
                "nodes": float(nodes[i]) if nodes is not None else 50.0}
        card["macs"] = sum(card["macs_by_class"].values())
        out.append({"model": f"m{i}", "status": "ok", "latency_ms": {"median": float(h)}, "model_card": card})
    return out


def spread(n, seed):
    """Host latencies from 1 to 1000 ms, as a zoo of small and large networks gives."""
    rng = np.random.default_rng(seed)
    host = np.exp(rng.uniform(np.log(1.0), np.log(1000.0), n))
    conv = host * 1e6 * rng.uniform(0.8, 1.2, n)
    return rng, host, conv


def test_a_relative_error_truth_is_fitted_better_relatively_than_absolutely():
    rng, host, conv = spread(60, 11)
    # The device is 3× the host, with a noise proportional to the latency (as timing noise is).
    device = 3.0 * host * (1 + rng.normal(0, 0.03, len(host)))
    records = records_from(host, {"conv_kxk": conv})
    refs, held = np.arange(20), np.arange(20, 60)
    names = [r["model"] for r in records]

    def held_out_mape(method):
        fit = fit_group([names[i] for i in refs], [records[i] for i in refs], host[refs], device[refs], method)
        predicted = [fit.predict(host[i], records[i])["value"] for i in held]
        return M.mape(device[held], predicted), fit

    relative, fit = held_out_mape("relative")
    absolute, _ = held_out_mape("features")
    ols, _ = held_out_mape("ols")
    assert relative < 5.0, relative
    assert relative < 0.5 * min(absolute, ols), (relative, absolute, ols)
    # Its interval is relative, from the references' leave-one-out residuals: about ±2 × 3%.
    prediction = fit.predict(10.0, records_from([10.0], {"conv_kxk": [1e7]})[0])
    assert 0.85 < prediction["low"] / prediction["value"] < 0.97
    assert 1.03 < prediction["high"] / prediction["value"] < 1.15


def test_a_class_the_device_runs_slowly_is_learned_when_references_allow():
    rng, host, conv = spread(80, 12)
    grouped_share = np.where(rng.random(80) < 0.4, rng.uniform(0.2, 0.6, 80), 0.0)
    grouped = conv * grouped_share
    # Grouped convolutions add 6 ms per GMAC on the device: 1.4–2.2× the plain ratio where they carry 20–60% of the work.
    device = (3.0 * host + 6e-6 * grouped) * (1 + rng.normal(0, 0.01, 80))
    records = records_from(host, {"conv_kxk": conv - grouped, "grouped": grouped})
    names = [r["model"] for r in records]
    errors = {}
    for method in ("relative", "ols"):
        fit = fit_group(names[:40], records[:40], host[:40], device[:40], method)
        predicted = [fit.predict(host[i], records[i])["value"] for i in range(40, 80)]
        errors[method] = M.mape(device[40:], predicted)
    assert errors["relative"] < 2.5, errors  # about the 1% noise
    assert errors["relative"] < 0.3 * errors["ols"], errors


def test_few_references_give_the_plain_ratio():
    rng, host, conv = spread(3, 13)
    device = 2.0 * host
    records = records_from(host, {"conv_kxk": conv})
    fit = fit_group([r["model"] for r in records], records, host, device, "relative")
    assert fit["model"]["selected"] == ["host_latency_ms"]
    assert fit.predict(7.0, records_from([7.0], {"conv_kxk": [7e6]})[0])["value"] == pytest.approx(14.0)


def test_a_model_outside_the_references_operator_mix_is_flagged_with_advice():
    rng, host, conv = spread(12, 14)
    device = 3.0 * host
    references = records_from(host, {"conv_kxk": conv, "grouped": np.zeros(12)})
    fit = fit_group([r["model"] for r in references], references, host, device, "relative")
    assert fit["mix"]["grouped"]["share"] == 0.0
    inside = records_from([5.0], {"conv_kxk": [5e6], "grouped": [0.0]})[0]
    outside = records_from([5.0], {"conv_kxk": [3e6], "grouped": [2e6]})[0]
    assert "outside_mix" not in fit.predict(5.0, inside)
    assert fit.predict(5.0, outside)["outside_mix"] == ["grouped"]

    calibration = {"runtime": None, "fits": [fit.with_fields(metric="latency_ms", threads=1)]}
    predictor = Predictor(calibration, warn=lambda m: None)
    candidates = records_from([5.0, 6.0, 7.0], {"conv_kxk": [3e6, 5e6, 1e6], "grouped": [2e6, 0.0, 6e6]})
    for i, record in enumerate(candidates):
        record["model"] = ["regnet_a", "resnet_b", "regnet_c"][i]
        record["threads"] = 1
        predictor.annotate(record)
    advice = predictor.mix_advice(candidates)
    assert len(advice) == 1, advice
    assert "grouped" in advice[0] and "2 model(s)" in advice[0]
    assert "measuring regnet_c or regnet_a on the device" in advice[0], advice[0]  # the largest share first


def test_relative_fit_survives_save_and_load(tmp_path):
    rng, host, conv = spread(12, 15)
    grouped = conv * 0.3
    records = records_from(host, {"conv_kxk": conv, "grouped": grouped})
    device = 2.5 * host * (1 + rng.normal(0, 0.02, 12))
    device_rows = [type("Row", (), {"model": r["model"], "threads": 1, "sha256": None, "metrics": {"latency_ms": d},
                                    "source": "test"})() for r, d in zip(records, device)]
    for r in records:
        r["threads"] = 1
    built = Calibration(build(device_rows, records, "relative"))
    built.save(tmp_path / "calib.json")
    loaded = load(tmp_path / "calib.json")
    probe = records_from([4.0], {"conv_kxk": [4e6], "grouped": [1.2e6]})[0]
    assert (loaded["fits"][0].predict(4.0, probe)["value"]
            == pytest.approx(built["fits"][0].predict(4.0, probe)["value"]))


def test_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    from calibration.models import RelativeCalibration

    check_estimator(RelativeCalibration())


def test_calibrate_relative_end_to_end_with_figures(tmp_path):
    """`calibrate --method relative --plot` as a user runs it: fit table, calibration file, figures."""
    import json

    from tests.conftest import run_cli

    rng, host, conv = spread(12, 16)
    grouped = conv * np.where(np.arange(12) % 3 == 0, 0.4, 0.0)
    records = records_from(host, {"conv_kxk": conv - grouped, "grouped": grouped})
    device = (2.5 * host + 4e-6 * grouped) * (1 + rng.normal(0, 0.02, 12))
    for record in records:
        record["threads"] = 1
    (tmp_path / "host.json").write_text(json.dumps(records))
    (tmp_path / "device.csv").write_text("model,threads,latency_ms\n" + "".join(
        f"{r['model']},1,{d:.4f}\n" for r, d in zip(records, device)))
    done = run_cli("calibrate", tmp_path / "device.csv", "--host", tmp_path / "host.json", "--method", "relative",
                   "--out", tmp_path / "calib.json", "--plot", tmp_path / "figures")
    assert done.returncode == 0, done.stderr
    assert "relative" in done.stdout and "features used: host_latency_ms" in done.stdout
    assert (tmp_path / "figures" / "calibration_latency_ms.png").stat().st_size > 10_000
    fit = json.loads((tmp_path / "calib.json").read_text())["fits"][0]
    assert fit["method"] == "relative" and fit["loo_mape"] < 10
