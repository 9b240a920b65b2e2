"""The seed experiments' quick variants, end to end (Docker backend when an engine answers)."""

import os

import pytest


def test_experiment_one_quick_with_device_csv(tmp_path):
    pytest.importorskip("tensorflow", reason="Experiment I makes its TFLite models with the tf extra")
    from experiments.exp1_tflite.run import main

    rows = main(["--quick", "--out", str(tmp_path / "first"), "--models-dir", str(tmp_path / "models")])
    assert {r["status"] for r in rows} == {"ok"}
    assert {(r["cpus"], r["threads"]) for r in rows} == {(1, 1), (2, 2)}
    assert len(rows) == 2 * 2 * 2  # models × CPU counts × repetitions
    text = (tmp_path / "first" / "RESULTS.md").read_text()
    assert "CPU = 4 could not run: this host has 2 cores" in text
    assert "Kendall τ" in text and "Run-to-run variance" in text
    for figure in ("time_per_model.png", "peak_memory.png"):
        assert (tmp_path / "first" / figure).stat().st_size > 10_000

    # A device CSV turns on the calibration and its figure (device = 2.5 × host mean + 0.1).
    means = {}
    for r in rows:
        means.setdefault((r["model"], r["threads"]), []).append(r["mean_ms"])
    device = tmp_path / "device.csv"
    device.write_text("model,threads,latency_ms\n" + "".join(
        f"{m},{t},{2.5 * sum(v) / len(v) + 0.1}\n" for (m, t), v in means.items()))
    main(["--quick", "--out", str(tmp_path / "second"), "--models-dir", str(tmp_path / "models"),
          "--device-csv", str(device)])
    text = (tmp_path / "second" / "RESULTS.md").read_text()
    assert "Calibration against the device" in text and "R² = " in text
    assert (tmp_path / "second" / "calibration_latency_ms.png").stat().st_size > 10_000


def test_experiment_two_quick(tmp_path):
    pytest.importorskip("torch")
    from experiments.exp2_pytorch.run import main

    rows = main(["--quick", "--out", str(tmp_path), "--models-dir", str(tmp_path / "models")])
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["iterations"] for r in rows if "_3d" in r["model"]} == {5}
    for r in rows:
        assert r["mean_rss_mb"] > 0 and r["total_runtime_s"] > 0 and r["peak_memory_mb"] > 0
    assert os.path.exists(tmp_path / "RESULTS.md") and os.path.exists(tmp_path / "results.csv")
