"""Feature calibration: LOO model selection on synthetic truths, and the real Pi 5 data (small version)."""

import os

import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.fitting import AUTO_OVER_RELATIVE, auto_choice, fit_group
from calibration.models import feature_matrix
from tests.conftest import SHARED

DATASET = os.path.join(SHARED, "datasets", "nb201-pi5")


def synthetic(n, seed):
    rng = np.random.default_rng(seed)
    conv, pool = rng.uniform(0.2, 4.0, n), rng.uniform(0.1, 3.0, n)
    records = [{"model": f"m{i}", "latency_ms": {"median": c + p}, "op_time_ms": {"conv_kxk": c, "pool": p},
                "model_card": {"macs_by_class": {"conv_kxk": 1e6 * c, "pool": 1e5 * p}, "nodes": 40}}
               for i, (c, p) in enumerate(zip(conv, pool))]
    return records, conv, pool, rng


def choose(records, y):
    names = [r["model"] for r in records]
    fit = fit_group(names, records, [r["latency_ms"]["median"] for r in records], y, "auto")
    return fit


def test_a_purely_linear_truth_keeps_the_relative_model_which_holds_it():
    records, conv, pool, rng = synthetic(12, 1)
    host = conv + pool
    y = 3.0 * host + 0.1 + rng.normal(0, 0.01, len(host)) * host
    fit = choose(records, y)
    # ratio + constant is the line: ols is no better by the margin a switch needs, so relative stays
    errors = fit["auto"]["loo_mape"]
    assert fit["auto"]["chose"] == "relative", fit["auto"]["why"]
    assert not errors["ols"] < AUTO_OVER_RELATIVE * errors["relative"]
    test_records, conv2, pool2, _ = synthetic(5, 3)
    for record, c, p in zip(test_records, conv2, pool2):
        assert fit.predict(c + p, record)["value"] == pytest.approx(3.0 * (c + p) + 0.1, rel=0.03)


def test_without_a_relative_fit_the_simplest_good_candidate_is_chosen():
    assert auto_choice({"ols": 5.0, "loglinear": 4.9, "features": 4.0}) == "features"
    assert auto_choice({"ols": 5.0, "loglinear": 4.9, "features": 4.9}) == "ols"
    assert auto_choice({"ols": 5.0, "relative": 6.0, "features": 2.0}) == "features"  # under 40% of 6.0
    assert auto_choice({"ols": 3.0, "relative": 6.0, "features": 2.5}) == "relative"


def test_two_op_classes_at_different_ratios_choose_features():
    records, conv, pool, rng = synthetic(12, 2)
    y = 5.0 * conv + 1.0 * pool + 0.05
    fit = choose(records, y)
    assert fit["auto"]["chose"] == "features", fit["auto"]["why"]
    assert fit["loo_mape"] < 1.0
    # The fit recovers the two ratios on whichever representation of the classes it selected.
    test_records, conv2, pool2, _ = synthetic(5, 3)
    for record, c, p in zip(test_records, conv2, pool2):
        assert fit.predict(c + p, record)["value"] == pytest.approx(5 * c + p + 0.05, rel=0.02)


def test_auto_scores_features_by_nested_leave_one_out_and_keeps_the_fixed_selection_figure():
    records, conv, pool, rng = synthetic(8, 6)
    y = (4.0 * conv + 1.5 * pool + 0.05) * (1 + rng.normal(0, 0.02, len(conv)))
    auto = choose(records, y)
    # This truth has a relative noise, so the relative model may win; the feature candidate's score is checked.
    assert auto["auto"]["chose"] in ("features", "relative"), auto["auto"]["why"]
    fit = fit_group([r["model"] for r in records], records, [r["latency_ms"]["median"] for r in records], y,
                         "features")
    X = feature_matrix(records, fit["model"]["selected"])
    # Independently: refit only the weights of the selected features on each fold (plain least squares).
    loo = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        design = np.column_stack([X[keep], np.ones(keep.sum())])
        coef = np.linalg.lstsq(design, y[keep], rcond=None)[0]
        assert np.all(coef[:-1] >= -1e-9)  # non-negative up to rounding, so the constrained fit is this one
        loo.append(X[i] @ coef[:-1] + coef[-1])
    expected = 100 * np.mean(np.abs(np.array(loo) - y) / y)
    assert fit["selected_loo_mape"] == pytest.approx(expected, rel=1e-3)
    # The reported error, and the one `auto` compares, is the nested one (selection redone in every
    # fold): the fixed-selection figure flatters the feature model on few references.
    assert fit["loo_mape"] == pytest.approx(100 * np.mean([abs(r["loo"] - r["device"]) / r["device"]
                                                         for r in fit["references"]]))
    assert auto["auto"]["loo_mape"]["features"] == pytest.approx(fit["loo_mape"])


def test_a_model_with_no_operator_of_a_selected_class_is_predicted_not_refused():
    records, conv, pool, rng = synthetic(12, 5)
    y = 5.0 * conv + 1.0 * pool + 0.05
    fit = choose(records, y)
    assert fit["auto"]["chose"] == "features", fit["auto"]["why"]
    # The selection needs the pool class: a pool-free model spends 0 ms there, it does not lack the feature.
    assert any("pool" in name for name in fit["model"]["selected"]), fit["model"]["selected"]
    no_pool = {"model": "no_pool", "latency_ms": {"median": 2.0}, "op_time_ms": {"conv_kxk": 2.0},
               "model_card": {"macs_by_class": {"conv_kxk": 2e6}, "nodes": 40}}
    assert fit.predict(2.0, no_pool)["value"] == pytest.approx(5 * 2.0 + 0.05, rel=0.02)
    # A record with no operator profile and no card at all still lacks them, and says how to get them.
    with pytest.raises(CalibrationError, match="lacks feature"):
        fit.predict(2.0, {"model": "bare", "latency_ms": {"median": 2.0}})


def test_never_more_coefficients_than_references_minus_two():
    records, conv, pool, rng = synthetic(5, 4)
    y = 5.0 * conv + 1.0 * pool + rng.normal(0, 0.05, 5)
    fit = fit_group([r["model"] for r in records], records, conv + pool, y, "features")
    assert len(fit["model"]["selected"]) + 1 <= len(records) - 2


@pytest.mark.skipif(not os.path.isdir(DATASET), reason="../shared/datasets/nb201-pi5 is absent")
def test_nb201_pi5_small(tmp_path):
    from experiments.nb201_pi5.run import main

    table = main(["--dataset", DATASET, "--networks", "30", "--draws", "10", "--ks", "10",
                  "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    features = table[("latency", 10, "features")]
    assert features["within10"] >= 85.0, features
    # every fitted method's 95% interval is checked on the held-out networks (20 per draw, 10 draws)
    assert all(50.0 <= table[("latency", 10, m)]["coverage"] <= 100.0 for m in ("ols", "relative", "features"))
    assert "95% interval coverage" in (tmp_path / "out" / "RESULTS.md").read_text()
    assert "30 of the 30 networks were profiled by this run" in (tmp_path / "out" / "RESULTS.md").read_text()
    assert (tmp_path / "out" / "pred_vs_measured_k10.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "calibrate_example" / "calib_auto.json").exists()
    again = main(["--dataset", DATASET, "--networks", "30", "--draws", "10", "--ks", "10", "--no-example",
                  "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "again")])
    assert "0 of the 30 networks were profiled by this run" in (tmp_path / "again" / "RESULTS.md").read_text()
    assert again[("latency", 10, "features")] == features  # the store's profiles, the same draws: the same fit


def test_three_references_pick_the_feature_that_fits_not_the_first_one():
    from calibration.models import FeatureCalibration

    rng = np.random.default_rng(7)
    X = rng.uniform(1, 10, (3, 4))
    y = 2.0 * X[:, 2] + 0.5
    model = FeatureCalibration().fit(X, y)
    assert list(model.selected_) == [2]
    assert model.predict(X) == pytest.approx(y, rel=1e-4)


@pytest.mark.skipif(not os.path.isdir(DATASET), reason="../shared/datasets/nb201-pi5 is absent")
@pytest.mark.parametrize("args, message", [(["--ks", "3"], "k = 3 is out of range"),
                                           (["--ks", "40"], "k = 40 is out of range"),
                                           (["--draws", "0"], "--draws must be at least 1")])
def test_nb201_refuses_impossible_draws_before_any_work(tmp_path, args, message):
    from experiments.nb201_pi5.run import main

    with pytest.raises(SystemExit, match=message):
        main(["--dataset", DATASET, "--networks", "40", "--cache", str(tmp_path / "cache"),
              "--out", str(tmp_path / "out"), *args])
    assert list(tmp_path.iterdir()) == []
