"""The harness on its own, as a user runs it on a device: python -m profiler.harness."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from profiler.harness.stats import latency_stats, percentile


def harness(*args):
    done = subprocess.run([sys.executable, "-m", "profiler.harness", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("kind", ["onnx", "tflite", "torch"])
def test_each_runtime_gives_consistent_statistics(models, kind):
    done, (record,) = harness(models[kind], "--threads", 1, "--warmup", 3, "--iterations", 40)
    assert done.returncode == 0, done.stderr
    assert record["status"] == "ok" and record["runtime"] == kind
    stats = record["latency_ms"]
    assert 0 < stats["min"] <= stats["median"] <= stats["p90"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert stats["min"] <= stats["mean"] <= stats["max"]
    assert record["iterations"] == 40 and record["load_ms"] > 0 and record["first_inference_ms"] > 0
    assert record["peak_memory_mb"] > record["idle_memory_mb"] > 0
    assert record["throughput_ips"] == pytest.approx(1000 / stats["mean"], rel=1e-3)
    assert len(record["sha256"]) == 64 and record["runtime_version"]


def test_statistics_match_numpy():
    rng = np.random.default_rng(1)
    samples = list(rng.gamma(2.0, 1.5, 257))
    stats = latency_stats(samples)
    assert stats["median"] == pytest.approx(np.median(samples), abs=1e-6)
    assert stats["p99"] == pytest.approx(np.percentile(samples, 99), abs=1e-6)
    assert stats["iqr"] == pytest.approx(np.percentile(samples, 75) - np.percentile(samples, 25), abs=1e-6)
    assert stats["std"] == pytest.approx(np.std(samples, ddof=1), abs=1e-6)
    assert percentile([5.0], 0.99) == 5.0


def test_device_csv_is_what_calibrate_reads(models, tmp_path):
    out = tmp_path / "device.csv"
    done, records = harness(models["onnx"], models["tflite"], "--iterations", 20, "--csv", out)
    assert done.returncode == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["model"] for r in rows] == ["tiny_cnn", "tiny_cnn"]
    assert float(rows[0]["latency_ms"]) == records[0]["latency_ms"]["median"]
    assert rows[0]["threads"] == "1"


def test_dynamic_dims_need_input_shapes(models):
    done, (record,) = harness(models["dynamic_hw"], "--iterations", 5)
    assert done.returncode == 1 and record["status"] == "error"
    # the advice proposes a real image side for each dynamic size, never a 1×1 image
    assert "INPUT_SHAPES=input:1x3x224x224 (224 stands for each dynamic size; give yours)" in record["error"]
    # A dynamic batch dimension alone takes BATCH.
    done, (record,) = harness(models["dynamic"], "--iterations", 5, "--batch", 4)
    assert record["status"] == "ok" and record["input_shapes"] == {"input": [4, 3, 32, 32]}
    done, (record,) = harness(models["dynamic"], "--iterations", 5, "--input-shapes", "input:2x3x32x32")
    assert record["status"] == "ok" and record["input_shapes"] == {"input": [2, 3, 32, 32]}
    # throughput counts the samples that ran: the pinned batch of 2
    assert record["batch"] == 2
    assert record["throughput_ips"] == pytest.approx(2 * 1000 / record["latency_ms"]["mean"], rel=1e-3)
    done, (record,) = harness(models["dynamic"], "--iterations", 5, "--batch", 4, "--input-shapes", "input:1x3x32x32")
    assert record["status"] == "error" and "BATCH=4 conflicts with INPUT_SHAPES=input:1x3x32x32" in record["error"]


def test_input_shapes_naming_a_missing_input_is_an_error(models):
    done, (record,) = harness(models["onnx"], "--iterations", 5, "--input-shapes", "pixels:1x3x64x64")
    assert record["status"] == "error" and "'pixels'" in record["error"] and "inputs: input" in record["error"]


def test_a_crashing_model_does_not_stop_the_others(models):
    done, records = harness(models["corrupt"], models["onnx"], "--iterations", 5)
    assert [r["status"] for r in records] == ["error", "ok"]
    assert "not a loadable ONNX model" in records[0]["error"]
    # One line per failed model; the rest of stderr is instability warnings on a busy machine.
    errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING: ")]
    assert errors == [f"{records[0]['model']}: error: {records[0]['error']}"]


def test_an_output_that_cannot_be_written_fails_before_measuring(models, tmp_path):
    for option in ("--json", "--csv"):
        done, records = harness(models["onnx"], option, tmp_path)
        assert done.returncode == 2 and records == []
        assert done.stderr.strip().splitlines()[-1] == \
            f"python -m profiler.harness: error: {option} {tmp_path}: is a folder, not a file"
    assert list(tmp_path.iterdir()) == []


def test_timeout_is_a_row(models):
    done, records = harness(models["slow"], models["onnx"], "--iterations", 100000, "--timeout", 1)
    assert [r["status"] for r in records] == ["timeout", "timeout"]
    done, records = harness(models["slow"], models["onnx"], "--iterations", 3, "--timeout", 30)
    assert [r["status"] for r in records] == ["ok", "ok"]


def test_torch_export_program(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1)).eval()
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(model, (torch.rand(1, 3, 16, 16),)), str(path))
    done, (record,) = harness(path, "--iterations", 10)
    assert record["status"] == "ok", record["error"]
    assert record["runtime"] == "torch" and record["input_shapes"] == {"input": [1, 3, 16, 16]}


def test_empty_run_imports_the_runtime_and_loads_no_model():
    done, (record,) = harness("--empty", "--runtime", "tflite")
    assert done.returncode == 0, done.stderr
    assert record["empty_run"] is True and record["runtime"] == "tflite" and record["import_ms"] > 0
    assert record["runtime_package"] in ("ai-edge-litert", "tflite-runtime") and record["runtime_version"]
    for args, message in [(("--empty",), "--empty needs --runtime"), ((), "give at least one model file")]:
        done = subprocess.run([sys.executable, "-m", "profiler.harness", *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2 and done.stderr.strip().endswith(f"error: {message}")


def scripted(path, module):
    """A TorchScript file with its input shape stored, as the zoo writes them."""
    import torch

    from profiler.harness.runtimes.torch_adapter import SHAPES_FILE

    spec = [{"name": "input", "shape": [1, 4], "dtype": "float32"}]
    torch.jit.save(torch.jit.script(module), str(path), _extra_files={SHAPES_FILE: json.dumps(spec)})
    return path


def test_a_torch_allocation_failure_is_oom_not_error(tmp_path):
    import torch

    class Huge(torch.nn.Module):
        def forward(self, x):
            return x.sum() + torch.zeros(1 << 42).sum()  # 16 TiB: the allocator refuses it

    done, (record,) = harness(scripted(tmp_path / "huge.pt", Huge()), "--iterations", 2)
    assert record["status"] == "oom", record
    assert "could not allocate memory" in record["error"] and "DefaultCPUAllocator" in record["error"]


def test_an_error_row_is_one_line_that_keeps_the_cause(tmp_path):
    import torch

    class Failing(torch.nn.Module):
        def __init__(self, message: str):
            super().__init__()
            self.message = message

        def forward(self, x):
            if bool(x.sum() > -1e9):
                raise RuntimeError(self.message)
            return x

    message = "while running layer 7 of 12:\n" + "  context line\n" * 60 + "the cause: shape 3 != 4"
    done, (record,) = harness(scripted(tmp_path / "failing.pt", Failing(message)), "--iterations", 2)
    assert record["status"] == "error"
    assert "\n" not in record["error"] and record["error"].endswith("the cause: shape 3 != 4"), record["error"]


@pytest.mark.parametrize("line", ["{x", '{"path": 5}', "[1, 2]", '{"model": 1, "status": "ok"}', "{" * 100_000,
                                  '{"model": "m"}', "not json", b'{"status": "ok"}'])
def test_a_stray_line_is_not_a_record_for_any_backend(line):
    from profiler.sandbox.base import harness_record

    assert harness_record(line) is None  # the reader every backend (local, Docker, Slurm, SSH) parses through


def test_a_record_line_is_a_record_and_the_slurm_node_report_too():
    from profiler.sandbox.base import harness_record

    assert harness_record('{"model": "m", "status": "ok", "x": 1}')["x"] == 1
    assert harness_record(b'{"empty_run": true, "runtime": "onnx"}')["runtime"] == "onnx"
    assert harness_record('{"unreadable": "a", "node": "vm"}', keys=("unreadable", "node"))["node"] == "vm"
