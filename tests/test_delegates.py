"""What runs the model, one setting each: the TFLite delegate (XNNPACK, none, reference kernels or a
delegate library) and ONNX Runtime's execution providers; the record says what really ran, and
what is not there is one line, never a silent fallback."""

import json
import os

import pytest

from tests.conftest import ROOT, example, run_cli

import profiler  # noqa: E402


def target(**settings):
    return profiler.Target.from_env(None, backend="local", cpus=1, threads=1, warmup=2, iterations=10, **settings)


def test_the_tflite_delegate_is_a_setting_and_the_record_says_which_ran():
    setups = {}
    for delegate in (None, "xnnpack", "none", "reference"):
        (record,) = profiler.profile([example("tiny_cnn.tflite")], target(delegate=delegate), store=None, retries=0)
        assert record["status"] == "ok", record.get("error")
        setups[delegate] = record["runtime_setup"]
        assert (record["settings"].get("delegate") == delegate) if delegate else "delegate" not in record["settings"]
    assert setups[None] == setups["xnnpack"] == {"delegate": "xnnpack", "nodes": 5, "delegated_nodes": 5,
                                                 "delegate_kernels": 1}
    assert setups["none"] == {"delegate": "none", "nodes": 5, "delegated_nodes": 0, "delegate_kernels": 0}
    assert setups["reference"]["delegate"] == "reference" and setups["reference"]["delegated_nodes"] == 0


def test_a_delegate_library_that_is_not_there_is_one_line(tmp_path):
    out = tmp_path / "r.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--delegate",
                   "libarmnnDelegate.so:backends=CpuAcc;logging-severity=info", "--json", out,
                   example("tiny_cnn.tflite"), example("tiny_cnn.onnx"))
    assert done.returncode == 1 and "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    rows = {r["runtime"]: r for r in json.loads(out.read_text())}
    assert rows["tflite"]["status"] == "error" and "\n" not in rows["tflite"]["error"]
    assert rows["tflite"]["error"].startswith("DELEGATE=libarmnnDelegate.so:backends=CpuAcc;logging-severity=info: "
                                              "the delegate library cannot be loaded here")
    assert rows["onnx"]["status"] == "ok"  # the setting is TFLite's; the ONNX model runs as before
    bad = run_cli("profile", "--backend", "local", "--no-store", "--delegate", "gpu", example("tiny_cnn.tflite"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "DELEGATE=gpu" in bad.stderr


def test_execution_providers_are_what_the_session_used_or_one_line():
    (record,) = profiler.profile([example("tiny_cnn.onnx")], target(execution_providers="CPUExecutionProvider"),
                                 store=None, retries=0)
    assert record["status"] == "ok" and record["runtime_setup"] == {"providers": ["CPUExecutionProvider"]}
    (missing,) = profiler.profile([example("tiny_cnn.onnx")],
                                  target(execution_providers="TensorrtExecutionProvider,CPUExecutionProvider"),
                                  store=None, retries=0)
    assert missing["status"] == "error" and missing["error"].startswith(
        "EXECUTION_PROVIDERS: TensorrtExecutionProvider not available in this onnxruntime build")
    with pytest.raises(profiler.ConfigError, match="provider names"):
        target(execution_providers="cuda")


def test_an_edge_tpu_model_on_a_host_without_the_accelerator_says_how_to_measure_it(tmp_path):
    # an Edge TPU-compiled file: the tiny CNN with its first operator replaced by the Edge TPU's custom
    # op, written with TensorFlow's own flatbuffer tools
    pytest.importorskip("tensorflow")
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(example("tiny_cnn.tflite"))
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = "edgetpu-custom-op", 1
    model.operatorCodes.append(code)
    model.subgraphs[0].operators[0].opcodeIndex = len(model.operatorCodes) - 1
    path = tmp_path / "m_edgetpu.tflite"
    flatbuffer_utils.write_model(model, str(path))
    (record,) = profiler.profile([str(path)], target(), store=None, retries=0)
    assert record["status"] == "error"
    assert record["error"].endswith("an Edge TPU model (compiled for the accelerator); measure it on the device with "
                                    "--on and DELEGATE=libedgetpu.so.1")


FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def test_trtexec_output_is_a_gpu_row_and_a_cpu_to_gpu_calibration_says_so(tmp_path, models):
    from calibration.importers import detect, load

    log = os.path.join(FIXTURES, "trtexec_resnet18.log")
    assert detect(log) == "trtexec"
    (row,) = load(log)
    assert (row.model, row.threads, row.runtime, row.accelerator) == ("resnet18", 1, "tensorrt", "gpu (TensorRT)")
    assert row.metrics == {"latency_ms": 1.93, "gpu_compute_ms": 1.82}
    # three GPU rows against this host's CPU profiles of the same names: fitted, and said
    results = profiler.profile([example("tiny_cnn.onnx"), models["slow"], models["dynamic"]], target(), store=None,
                               retries=0)
    host = tmp_path / "host.json"
    host.write_text(json.dumps(list(results)))
    logs = []
    for record, median in zip(results, (1.9, 7.5, 2.1)):
        text = open(log).read().replace("resnet18", record["model"]).replace("median = 1.93 ms", f"median = {median} ms")
        path = tmp_path / f"{record['model']}.log"
        path.write_text(text)
        logs.append(path)
    done = run_cli("calibrate", *logs, "--host", host, "--method", "ols", "--metric", "latency_ms",
                   "--out", tmp_path / "cal.json")
    assert done.returncode == 0, done.stderr
    assert "the device rows ran on gpu (TensorRT) and the host profiles on this host's CPU" in done.stderr
    assert json.loads((tmp_path / "cal.json").read_text())["accelerator"] == "gpu (TensorRT)"
    cpu_row = tmp_path / "cpu.csv"  # one of the three measured on the device's CPU instead
    cpu_row.write_text(f"model,threads,latency_ms\n{results[1]['model']},1,30.0\n")
    refused = run_cli("calibrate", logs[0], logs[2], cpu_row, "--host", host)
    assert refused.returncode == 2 and "the device rows mix cpu and gpu (TensorRT)" in refused.stderr
