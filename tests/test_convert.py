"""The device's format from the user's: ONNX (and TorchScript, through its ONNX export) to TFLite with
onnx2tf, a torch.export program with litert-torch, checked against the source before it is profiled.
Real converters, real runtimes."""

import json
import os

import numpy as np
import pytest

from tests.conftest import example, run_cli

pytest.importorskip("onnx2tf", reason="ONNX to TFLite needs `make convert-packages`")
pytest.importorskip("tensorflow", reason="onnx2tf converts through TensorFlow (the tf extra)")

import profiler  # noqa: E402


def target(**settings):
    return profiler.Target.from_env(None, backend="local", cpus=1, threads=1, warmup=2, iterations=20, **settings)


def converted_like_its_source(converted, source):
    """A converted digits CNN: checked on the data before it was kept, its MACs the source's, and profiled
    and evaluated as the device file it stands for: the same answers as its source."""
    assert converted["runtime"] == "tflite" and converted["precision"] == "fp32"
    check = converted["variant"]["conversion"]
    assert check["inputs"] == "data" and check["top1"] >= 0.99 and check["relative"] < 1e-3
    assert check["macs"]["source"] == check["macs"]["converted"] == converted["model_card"]["macs"] == 88_064
    agreement = converted["accuracy"]["agreement"]
    assert agreement["top1"] >= 0.99 and converted["accuracy"]["n"] == 719
    assert converted["accuracy"]["metrics"]["top1"] == pytest.approx(source["accuracy"]["metrics"]["top1"], abs=0.005)


def test_the_digits_cnn_from_onnx_and_from_torchscript_becomes_tflite_that_agrees(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    results = profiler.profile([digits["onnx"], digits["torchscript"]], target(data=digits["data"]), store=None,
                               retries=0, variants="tflite")
    rows = {r["model"]: r for r in results}
    assert all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    for name in ("digits_cnn.onnx-tflite", "digits_cnn.pt-onnx.onnx-tflite"):
        converted_like_its_source(rows[name], rows["digits_cnn"])
    # the same operators as the Keras-made twin of the same network
    from profiler.analysis import model_card

    assert rows["digits_cnn.onnx-tflite"]["model_card"]["ops"] == model_card(digits["tflite"])["ops"]


def test_the_digits_cnn_as_a_torch_export_program_becomes_tflite_through_litert_torch(digits, tmp_path, monkeypatch):
    pytest.importorskip("litert_torch", reason="a .pt2 to TFLite needs `make convert-packages`")
    from profiler.analysis import model_card

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    results = profiler.profile([digits["exported"]], target(data=digits["data"]), store=None, retries=0,
                               variants="tflite,tflite-fp16")
    rows = {r["model"]: r for r in results}
    assert set(rows) == {"digits_cnn", "digits_cnn.pt2-tflite", "digits_cnn.pt2-tflite.fp16"}
    assert all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    source, converted = rows["digits_cnn"], rows["digits_cnn.pt2-tflite"]
    assert source["runtime"] == "torch" and source["model_card"]["macs"] == 88_064  # the program has a card too
    converted_like_its_source(converted, source)
    assert rows["digits_cnn.pt2-tflite.fp16"]["precision"] == "fp16"
    # no layout work the Keras-made twin lacks: the same reshapes, pad and transpose
    ops, twin = converted["model_card"]["ops"], model_card(digits["tflite"])["ops"]
    assert {op: n for op, n in ops.items() if "CONV" not in op} == {op: n for op, n in twin.items() if "CONV" not in op}
    assert sum(n for op, n in ops.items() if "CONV" in op) == twin["CONV_2D"]


def test_an_image_model_converts_to_nhwc_and_its_variants_follow(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    results = profiler.profile([example("tiny_cnn.onnx")], target(), store=None, retries=0,
                               variants="tflite,tflite-int8")
    rows = {r["model"]: r for r in results}
    assert set(rows) == {"tiny_cnn", "tiny_cnn.onnx-tflite", "tiny_cnn.onnx-tflite.int8-dynamic"}
    assert all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    assert rows["tiny_cnn.onnx-tflite.int8-dynamic"]["precision"] == "int8 dynamic"
    check = rows["tiny_cnn.onnx-tflite"]["variant"]["conversion"]
    assert check["inputs"] == "random" and check["relative"] < 1e-3
    assert check["macs"]["source"] == check["macs"]["converted"]


def test_a_converted_file_that_computes_something_else_is_refused(tmp_path):
    from experiments.examples.digits import build
    from profiler.conversions import check_conversion
    from profiler.variants import VariantError

    made = build(str(tmp_path), mlp=True)
    # the digits perceptron in TFLite takes and gives what the CNN does, and answers differently
    with pytest.raises(VariantError, match="changes the function: outputs up to .*same top class on"):
        check_conversion(made["onnx"], made["mlp_tflite"], made["data"])


def test_a_conversion_that_fails_is_an_error_row_and_leaves_nothing_in_the_cache(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Unknown", ["x"], ["y"], domain="com.example")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--retries", 0, "--variants",
                   "tflite", "--json", out, path, example("tiny_cnn.onnx"), env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    rows = {r["model"]: r for r in json.loads(out.read_text())}
    assert rows["custom.tflite"]["status"] == "error" and "could not make the tflite variant" in \
        rows["custom.tflite"]["error"]
    assert rows["tiny_cnn.onnx-tflite"]["status"] == "ok"
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(tmp_path / "cache") for f in files
                 if ".partial-" in f or f.endswith(".check.json") and not os.path.exists(os.path.join(d, f)[:-11])]
    assert leftovers == []
    assert not [d for d, subs, files in os.walk(tmp_path / "cache") if not subs and not files]


def test_a_nas_bench_201_cell_gets_its_tflite_file_through_the_conversion(tmp_path):
    from experiments.zoo.__main__ import export

    from profiler.analysis import model_card

    name = "nb201:|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|skip_connect~2|"
    written = export(name, ["onnx", "tflite"], str(tmp_path))
    onnx_card, tflite_card = model_card(written["onnx"]), model_card(written["tflite"])
    assert onnx_card["macs"] == tflite_card["macs"] > 0
    assert tflite_card["ops"]["CONV_2D"] == onnx_card["ops"]["Conv"]
    (record,) = profiler.profile([written["tflite"]], target(), store=None, retries=0)
    assert record["status"] == "ok" and record["runtime"] == "tflite"
