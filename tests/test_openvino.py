"""OpenVINO, the fourth runtime: IR files and ONNX through its frontend, the same record, caps and
evaluation as the other runtimes, a card from OpenVINO's own graph, ONNX → IR variants checked
against their source, and `calibrate` importing the output of the benchmark_app the package ships."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import example, run_cli

ov = pytest.importorskip("openvino", reason="the openvino extra")

import profiler  # noqa: E402
from profiler.analysis import model_card  # noqa: E402


def target(**settings):
    return profiler.Target.from_env(None, backend="local", cpus=1, threads=1, warmup=2, iterations=20, **settings)


def to_ir(source, folder):
    path = os.path.join(folder, os.path.splitext(os.path.basename(source))[0] + ".xml")
    ov.save_model(ov.convert_model(source), path, compress_to_fp16=False)
    return path


def test_an_ir_is_profiled_and_evaluated_like_its_onnx_source(digits, tmp_path):
    ir = to_ir(digits["onnx"], str(tmp_path))
    results = profiler.profile([digits["onnx"], ir], target(data=digits["data"]), store=None, retries=0)
    onnx_row, ir_row = results
    assert ir_row["status"] == "ok" and ir_row["runtime"] == "openvino", ir_row.get("error")
    assert ir_row["runtime_version"] and ir_row["latency_ms"]["median"] > 0 and ir_row["peak_memory_mb"] > 0
    assert ir_row["accuracy"]["metrics"]["top1"] == pytest.approx(onnx_row["accuracy"]["metrics"]["top1"], abs=0.002)
    assert ir_row["model_card"]["macs"] == onnx_row["model_card"]["macs"] == 88_064
    assert ir_row["model_card"]["macs_by_class"]["conv_kxk"] == onnx_row["model_card"]["macs_by_class"]["conv_kxk"]
    (through_frontend,) = profiler.profile([digits["onnx"]], target(), store=None, retries=0, runtime="openvino")
    assert through_frontend["status"] == "ok" and through_frontend["runtime"] == "openvino"


@pytest.mark.docker
def test_one_onnx_model_with_onnxruntime_and_openvino_in_one_docker_command(docker_backend, tmp_path):
    out = tmp_path / "r.json"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = run_cli("profile", "--backend", "docker", "--no-store", "--iterations", 10, "--memory", "512m",
                   "--variants", "openvino", "--json", out, example("tiny_cnn.onnx"), timeout=900, env=env)
    assert done.returncode == 0, done.stderr
    rows = {r["runtime"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"onnx", "openvino"}
    for runtime, record in rows.items():  # the IR's weights reached the container beside it
        assert record["status"] == "ok" and record["backend"] == "docker" and record["enforced"]["memory"]
        assert record["runtime_version"] and record["model_card"]["macs"] == model_card(example("tiny_cnn.onnx"))["macs"]
    assert rows["openvino"]["runtime_package"] == "openvino" and rows["onnx"]["runtime_package"] == "onnxruntime"


def test_onnx_becomes_an_ir_variant_checked_against_its_source(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    results = profiler.profile([digits["onnx"]], target(data=digits["data"]), store=None, retries=0,
                               variants="openvino,openvino-int8")
    rows = {r["model"]: r for r in results}
    int8 = rows["digits_cnn.onnx-openvino.int8-static"]  # NNCF on the data's calibration samples
    assert int8["status"] == "ok" and int8["precision"] == "int8 static", int8.get("error")
    assert int8["variant"]["calibration"] == {"array": "x_calibration", "samples": 100, "scored": False}
    assert int8["accuracy"]["agreement"]["top1"] >= 0.97
    converted = rows["digits_cnn.onnx-openvino"]
    assert converted["status"] == "ok" and converted["runtime"] == "openvino"
    check = converted["variant"]["conversion"]
    assert check["top1"] == 1.0 and check["relative"] < 1e-3 and check["macs"]["converted"] == 88_064
    assert converted["accuracy"]["agreement"]["top1"] >= 0.99


def test_calibrate_imports_the_benchmark_app_the_package_ships(models, digits, tmp_path):
    benchmark_app = shutil.which("benchmark_app", path=os.path.dirname(sys.executable))
    assert benchmark_app, "openvino installs benchmark_app beside the interpreter"
    sources = {"tiny_cnn": example("tiny_cnn.onnx"), "slow": models["slow"], "digits_cnn": digits["onnx"]}
    device, irs = [], []
    for name, source in sources.items():
        ir = to_ir(source, str(tmp_path))
        irs.append(ir)
        log = tmp_path / f"{name}.txt"
        done = subprocess.run([benchmark_app, "-m", ir, "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads",
                               "1", "-nireq", "1", "-api", "sync", "-infer_precision", "f32", "-niter", "50"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-500:]
        log.write_text(done.stdout)
        device.append(log)
    from calibration.importers import detect, load

    rows = [row for log, name in zip(device, sources) for row in load(str(log), model=name)]
    assert {detect(str(log)) for log in device} == {"benchmark_app"}
    assert all(row.threads == 1 and row.runtime == "openvino" and row.metrics["latency_ms"] > 0
               and row.metrics["load_ms"] > 0 for row in rows)
    host = tmp_path / "host.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 20, "--json", host, *irs)
    assert done.returncode == 0, done.stderr
    # one log per model, named after it (benchmark_app names no file), fitted against the host's IR profiles
    fitted = run_cli("calibrate", *device, "--host", host, "--method", "ols", "--metric", "latency_ms",
                     "--out", tmp_path / "cal.json")
    assert fitted.returncode == 0, fitted.stderr
    cal = json.loads((tmp_path / "cal.json").read_text())
    (fit,) = cal["fits"]
    assert cal["runtime"] == "openvino" and fit["n"] == 3 and fit["threads"] == 1
    assert sorted(r["model"] for r in fit["references"]) == sorted(sources)
