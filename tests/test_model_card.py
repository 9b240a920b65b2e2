"""Model cards against published figures, across formats, and on unknown ops."""

import pytest

from profiler.analysis import model_card
from tests.conftest import run_cli

PUBLISHED = [  # name, MACs, tolerance, params, tolerance (224×224 / 299×299, 1000 classes)
    ("mobilenet_v2_1.0", 300e6, 0.03, 3.50e6, 0.02),
    ("resnet18", 1.82e9, 0.02, 11.69e6, 0.01),
    ("squeezenet1_1", 0.35e9, 0.05, 1.24e6, 0.02),
    ("inception_v3", 5.7e9, 0.05, 23.8e6, 0.03),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from experiments.zoo.__main__ import export

    folder = tmp_path_factory.mktemp("zoo")
    cache = {}

    def get(name, formats=("onnx",)):
        key = (name, tuple(formats))
        if key not in cache:
            cache[key] = export(name, list(formats), str(folder))
        return cache[key]

    return get


@pytest.mark.parametrize("name, macs, macs_tol, params, params_tol", PUBLISHED)
def test_card_matches_published_figures(exported, name, macs, macs_tol, params, params_tol):
    card = model_card(exported(name)["onnx"])
    assert card["macs"] == pytest.approx(macs, rel=macs_tol)
    assert card["params"] == pytest.approx(params, rel=params_tol)
    assert sum(card["macs_by_class"].values()) >= card["macs"]
    assert card["activation_bytes"] > 0 and card["nodes"] == sum(card["ops"].values())


def test_classes_are_the_right_ones(exported):
    mobilenet = model_card(exported("mobilenet_v2_1.0")["onnx"])["macs_by_class"]
    assert mobilenet["depthwise"] > 0 and mobilenet["conv_1x1"] > mobilenet["conv_kxk"] and mobilenet["grouped"] == 0
    resnet = model_card(exported("resnet18")["onnx"])["macs_by_class"]
    assert resnet["depthwise"] == 0 and resnet["conv_kxk"] > 10 * resnet["conv_1x1"]
    assert resnet["fc/matmul"] == 512 * 1000 and resnet["pool"] > 0


@pytest.mark.parametrize("name", ["mobilenet_v2_1.0", "squeezenet1_1"])
def test_formats_agree_within_one_percent(exported, name):
    formats = ["onnx", "pt"]
    try:
        import tensorflow  # noqa: F401

        formats.append("tflite")
    except ImportError:
        pass
    paths = exported(name, formats)
    cards = {fmt: model_card(path) for fmt, path in paths.items()}
    if "tflite" not in cards:
        pytest.skip("TensorFlow is not installed: ONNX and TorchScript compared only")
    reference = cards["onnx"]
    for fmt, card in cards.items():
        assert card["macs"] == pytest.approx(reference["macs"], rel=0.01), fmt
        assert card["params"] == pytest.approx(reference["params"], rel=0.01), fmt
        assert card["macs_narrow"] == pytest.approx(reference["macs_narrow"], rel=0.01), fmt
    assert 0 < reference["macs_narrow"] < reference["macs"]  # both have narrow and wide convolutions


def test_narrow_convolutions_are_counted_by_their_output_channels_per_group(tmp_path):
    from experiments.examples.models import cnn_onnx

    from profiler.cards.common import NARROW_CHANNELS

    wide = model_card(cnn_onnx(tmp_path / "wide.onnx", channels=(NARROW_CHANNELS + 1, 64)))
    narrow = model_card(cnn_onnx(tmp_path / "narrow.onnx", channels=(NARROW_CHANNELS, 8)))
    assert wide["macs_narrow"] == 0
    assert narrow["macs_narrow"] == narrow["macs_by_class"]["conv_kxk"] > 0


def test_onnx_and_torchscript_agree(exported):
    paths = exported("shufflenet_v2_1.0", ("onnx", "pt"))
    onnx_card, pt_card = model_card(paths["onnx"]), model_card(paths["pt"])
    assert onnx_card["macs"] == pytest.approx(146e6, rel=0.03)  # ShuffleNetV2 1.0×: 146 M
    assert pt_card["macs"] == pytest.approx(onnx_card["macs"], rel=0.01)
    assert pt_card["params"] == pytest.approx(onnx_card["params"], rel=0.01)


def test_video_models_have_cards(exported):
    card = model_card(exported("mobilenet_v2_3d_1.0")["onnx"])
    assert card["macs"] > 0 and card["macs_by_class"]["depthwise"] > 0


def test_unknown_op_still_gets_a_card(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("MysteryOp", ["c"], ["y"], domain="com.example")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "mystery.onnx"
    onnx.save(model, path)
    card = model_card(str(path))
    assert card["ops"] == {"Conv": 1, "MysteryOp": 1}
    assert card["macs_by_class"]["conv_kxk"] == 4 * 8 * 8 * 3 * 9 and card["params"] == 108
    done = run_cli("profile", "--card-only", path)
    assert done.returncode == 0 and "MysteryOp×1" in done.stdout


def test_card_in_profile_results(models, tmp_path):
    import json

    out = tmp_path / "r.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--json", out, models["onnx"])
    card = json.loads(out.read_text())[0]["model_card"]
    assert card["params"] > 0 and card["macs"] > 0 and "Conv" in card["ops"]
    assert "MMACs" in done.stdout


def test_a_torchscript_network_the_exporter_cannot_express_gets_a_one_line_card_error(tmp_path):
    """Adaptive pooling to a size that does not divide the input (AlexNet, VGG16 at 384 px) has no
    ONNX form: the card says so in one line, and the exporter's IR dump reaches no output."""
    import json
    import subprocess
    import sys

    import torch

    from profiler.harness.runtimes.torch_adapter import SHAPES_FILE
    from tests.conftest import ROOT

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d((7, 7))).eval()
    path = tmp_path / "adaptive.pt"
    spec = [{"name": "input", "shape": [1, 3, 40, 40], "dtype": "float32"}]
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 40, 40)), str(path), _extra_files={SHAPES_FILE: json.dumps(spec)})
    done = subprocess.run([sys.executable, "-m", "profiler.cli", "--card-only", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == "", done.stdout[:500]  # an error row: the other cards would run
    assert done.stderr.count("\n") == 1 and "the ONNX exporter that counts its operators failed" in done.stderr, \
        done.stderr[:800]


def test_integer_and_float_macs_are_counted_apart_in_every_precision(tmp_path, monkeypatch):
    import numpy as np

    from profiler import variants
    from tests.conftest import example

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "d.npz"
    np.savez(data, x_data=np.random.default_rng(0).random((20, 3, 64, 64), dtype=np.float32))
    fp32 = model_card(example("tiny_cnn.onnx"))
    assert fp32["macs_int"] == 0 and fp32["macs_float"] == fp32["macs"] > 0
    made = {kind: path for kind, path, _ in variants.make(example("tiny_cnn.onnx"),
                                                          ["int8-dynamic", "int8-static", "fp16"], str(data))}
    for kind, path in made.items():
        card = model_card(path)
        assert card["macs"] == fp32["macs"], kind  # quantizing changes how, not how much
        assert card["macs_int"] + card["macs_float"] == card["macs"]
        assert card["macs_int"] == (0 if kind == "fp16" else card["macs"]), (kind, card["macs_int"], card["ops"])
    lite = model_card(example("tiny_cnn.tflite"))
    assert lite["macs_int"] == 0 and lite["macs_float"] == lite["macs"]
    (kind, path, _), = variants.make(example("tiny_cnn.tflite"), ["int8-dynamic"], None)
    card = model_card(path)
    assert card["macs_int"] == card["macs"] == lite["macs"]
    done = run_cli("profile", "--card-only", path)
    assert f"integer     {card['macs_int']:,}, float 0" in done.stdout, done.stdout
