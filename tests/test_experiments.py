"""The seed experiments' quick variants, end to end (Docker backend when an engine answers)."""

import os

import pytest


def test_experiment_one_quick_with_device_csv(tmp_path):
    pytest.importorskip("tensorflow", reason="Experiment I makes its TFLite models with the tf extra")
    from experiments.exp1_tflite.run import main

    rows = main(["--quick", "--backend", "local", "--out", str(tmp_path / "first"),
                 "--models-dir", str(tmp_path / "models")])
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
    again = main(["--quick", "--out", str(tmp_path / "second"), "--rows", str(tmp_path / "first" / "results.csv"),
                  "--device-csv", str(device)])
    assert [r["mean_ms"] for r in again] == pytest.approx([r["mean_ms"] for r in rows])  # read back, not measured
    text = (tmp_path / "second" / "RESULTS.md").read_text()
    assert "Calibration against the device" in text
    assert "unchecked: 2 references, which a line fits exactly" in text and "R² = 1.000" not in text
    assert (tmp_path / "second" / "calibration_latency_ms.png").stat().st_size > 10_000


def test_experiment_two_quick(tmp_path):
    pytest.importorskip("torch")
    from experiments.exp2_pytorch.run import main

    rows = main(["--quick", "--backend", "local", "--repetitions", "1", "--out", str(tmp_path), "--models-dir",
                 str(tmp_path / "models")])
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["iterations"] for r in rows if "_3d" in r["model"]} == {5}
    for r in rows:
        assert r["mean_rss_mb"] > 0 and r["total_runtime_s"] > 0 and r["peak_memory_mb"] > 0
    assert os.path.exists(tmp_path / "RESULTS.md") and os.path.exists(tmp_path / "results.csv")
    assert "every configuration ran once (give --repetitions 2 or more)" in (tmp_path / "RESULTS.md").read_text()


def test_swapped_pairs_are_weighed_against_the_noise():
    from experiments.seedlib import swapped_pairs

    # {(model, cpus): (mean, std, n)}: a and b swap by 1% with 2% noise; c and d swap by 30% with 1% noise.
    latency = {("a", 1): (10.0, 0.2, 5), ("b", 1): (10.1, 0.2, 5), ("a", 2): (5.05, 0.1, 5), ("b", 2): (5.0, 0.1, 5),
               ("c", 1): (20.0, 0.2, 5), ("d", 1): (26.0, 0.2, 5), ("c", 2): (13.0, 0.1, 5), ("d", 2): (10.0, 0.1, 5),
               ("e", 1): (1.0, 0.01, 5), ("e", 2): (0.5, 0.01, 5)}
    lines = swapped_pairs(latency, ["a", "b", "c", "d", "e"], 1, 2)
    assert len(lines) == 2
    assert lines[0].startswith("   - Swapped: a and b, 1.0% apart at CPU = 1 and 1.0% at CPU = 2") and "within the noise" in lines[0]
    assert lines[1].startswith("   - Swapped: c and d, 30.0% apart at CPU = 1 and 30.0% at CPU = 2") and "beyond the noise" in lines[1]


def test_an_unstable_reference_is_measured_again_and_the_steadiest_kept():
    from experiments.seedlib import _steadier, _unstable
    from profiler.config import load_target
    from profiler.sandbox.local import LocalBackend
    from tests.conftest import example

    backend, target = LocalBackend(notice=lambda m: None), load_target(None, {"CPUS": "1", "ITERATIONS": "30",
                                                                              "WARMUP": "3", "BACKEND": "local"})
    measured = []
    backend.run(target, [example("tiny_cnn.onnx")], measured.append, runtime="onnx")
    (record,) = measured
    steady = {record["sha256"]: record}
    assert (_steadier(backend, target, "onnx", dict(steady), lambda r: None) > 0) == _unstable(record)
    shaky = dict(record, latency_ms=dict(record["latency_ms"], iqr=record["latency_ms"]["median"], ci_rel=1.0),
                 flags=["unstable"])  # IQR = median, as the harness flags it
    fresh, saved = {record["sha256"]: shaky}, []
    assert _steadier(backend, target, "onnx", fresh, saved.append) >= 1
    kept = fresh[record["sha256"]]
    assert kept["remeasured"] >= 1 and saved[-1] is kept and kept["latency_ms"]["iqr"] < kept["latency_ms"]["median"]
    assert kept["model_card"]["macs"] > 0  # a re-measurement is a whole record, card included


def test_the_export_cache_serves_the_same_file_and_is_keyed_by_code_packages_and_arguments(tmp_path, monkeypatch):
    import subprocess
    import sys

    from experiments.zoo import cache
    from tests.conftest import ROOT

    arch = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), EDGE_PROFILER_EXPORT_CACHE="1")

    def export(out):
        done = subprocess.run([sys.executable, "-m", "experiments.zoo", f"nb201:{arch}", "--formats", "onnx",
                               "--out", str(tmp_path / out)], cwd=ROOT, capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        (path,) = (tmp_path / out).glob("*.onnx")
        return path

    first = export("a")
    (kept,) = (tmp_path / "cache" / "edge-profiler" / "zoo").glob("*/*.onnx")
    assert kept.read_bytes() == first.read_bytes() and not list(kept.parent.glob("*.tmp"))
    kept.write_bytes(b"the cached copy")  # what the second export returns is the cache's file, not a new export
    assert export("b").read_bytes() == b"the cached copy"
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])
    monkeypatch.setenv("EDGE_PROFILER_EXPORT_CACHE", "0")  # off: made again, and nothing new is kept
    made = cache.make(kept.parent.name, str(tmp_path / first.name), lambda tmp: open(tmp, "wb").write(b"new"))
    assert open(made, "rb").read() == b"new" and kept.read_bytes() == b"the cached copy"
    # The key moves with the exporter's source, a package version and each argument, and with nothing else.
    base = cache.key(("experiments.zoo.nb201",), ("torch",), arch, 0)
    assert base == cache.key(("experiments.zoo.nb201",), ("torch",), arch, 0)
    assert len({base, cache.key(("experiments.zoo.nb201",), ("torch",), arch, 1),
                cache.key(("experiments.zoo.image",), ("torch",), arch, 0),
                cache.key(("experiments.zoo.nb201",), ("onnx",), arch, 0)}) == 4
