"""Across families on real phones (small version of experiments/mmb_phones): the smallest network of
each of the 20 families whose smallest network is smallest, exported by the zoo, profiled on this
host as TFLite, calibrated on 10 and the other 10 predicted."""

import os

import pytest

from tests.conftest import SHARED

DATASET = os.path.join(SHARED, "datasets", "mmb-cnn")
MAIN = "Pixel 4, TFLite fp32, 1 big core"
IPHONE = "iPhone 7, TFLite fp32, 1 big core"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(DATASET), reason="../shared/datasets/mmb-cnn is absent")
def test_mmb_phones_small(tmp_path):
    from experiments.mmb_phones.run import main

    args = ["--dataset", DATASET, "--models", "20", "--pick", "per-family", "--iterations", "15", "--draws", "8",
            "--ks", "10", "--slices", MAIN, IPHONE,
            "--no-families", "--no-op-profile", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    results = main(args)
    for name in (MAIN, IPHONE):
        draws = results[name]["draws"]
        auto, ols, flops = draws[(10, "auto")], draws[(10, "ols")], draws[(10, "flops")]
        # A floor well below the full run's figures, and above both baselines.
        assert auto["within10"] >= 45.0, (name, auto)
        assert auto["spearman"] >= 0.95, (name, auto)
        assert auto["mape"] < ols["mape"] and auto["mape"] < 0.5 * flops["mape"], (name, auto, ols, flops)
        # ten references chosen by `calibrate suggest` cover every operator class the others lean on
        suggested = results[name]["chosen"][(10, "suggest")]
        assert suggested["outside_mix"] == 0 and len(suggested["references"]) == 10, suggested
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "20 of the 20 profiles were made by this run" in text, text[:2000]
    assert (tmp_path / "out" / "pred_vs_measured_k10.png").stat().st_size > 10_000
    # The slices users deploy, from the same one-thread host profiles: two threads on the iPhone, four
    # little cores on the Pixel (prior from the other phone's nearest thread count), and int8.
    from experiments.mmb_phones import deploy

    slices = ["iPhone 7, TFLite fp32, 2large", "Pixel 4, TFLite fp32, 4small"]
    deployed = deploy.main(["--dataset", DATASET, "--models", "20", "--pick", "per-family", "--iterations", "15",
                            "--draws", "8", "--ks", "5", "--no-op-profile", "--only", "TFLite fp32", "--cache",
                            str(tmp_path / "cache"), "--out", str(tmp_path / "deploy")])
    assert set(slices) <= set(deployed), sorted(deployed)
    for name in slices:
        row = deployed[name]["k"][5]
        assert deployed[name]["prior"].startswith({"iPhone 7": "pixel4", "Pixel 4": "iphone7"}[name.split(",")[0]])
        assert row["relative"]["spearman"] >= 0.9, (name, row)
        assert 0 <= row["relative"]["coverage"] <= 100 and sum(row["chose"].values()) == 8
    assert "iphone7 tflite-2.10 fp32 2large" in deployed["Pixel 4, TFLite fp32, 4small"]["prior"]
    assert "| iPhone 7, TFLite fp32, 2large | 20 |" in (tmp_path / "deploy" / "RESULTS.md").read_text()
    # The zoo's TFLite files are the tf2cv twins the phones ran: within 3% of the device's file sizes.
    import pandas as pd

    sizes = pd.read_csv(os.path.join(DATASET, "mmb_cnn_latency_dev.csv")).groupby("model")["size_bytes"].first()
    models = tmp_path / "cache" / "models"
    for path in models.glob("*.tflite"):
        assert abs(path.stat().st_size / sizes[path.stem] - 1) < 0.03, path.name
