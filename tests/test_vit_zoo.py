"""Vision transformers: the mmb-vit zoo builds the published architectures from transformers configs, the
card counts attention apart, and the files profile. Real transformers, torch, ONNX Runtime."""

import os

import pytest

pytest.importorskip("transformers", reason="the mmb-vit zoo needs transformers (make zoo-packages)")
torch = pytest.importorskip("torch")

import profiler  # noqa: E402
from experiments.zoo import mmb_vit  # noqa: E402
from profiler.analysis import model_card  # noqa: E402

# Hand counts. DeiT-tiny distilled at 224: 196 patches + class + distillation token = 198 tokens of 192,
# 3 heads, 12 layers; scores and weighted values are each tokens² × width per layer.
DEIT = "deit-tiny-distilled-patch16-224"
DEIT_COUNTS = {"macs_attention": 12 * 2 * 198 ** 2 * 192, "softmax_elements": 12 * 3 * 198 ** 2,
               "norm_elements": (2 * 12 + 1) * 198 * 192, "gelu_elements": 12 * 198 * 768}
# MobileViT-XXS at 256: 2×2 patches, so 4 sequences per block, of 32², 16² and 8² / 4 tokens, widths 64, 80,
# 96, with 2, 4 and 3 layers; SiLU, no GELU.
MOBILEVIT = "mobilevit-xx-small"
MOBILEVIT_COUNTS = {"macs_attention": 4 * 2 * (256 ** 2 * 64 * 2 + 64 ** 2 * 80 * 4 + 16 ** 2 * 96 * 3),
                    "gelu_elements": 0}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    return {name: mmb_vit.export(name, ["pt", "onnx"], str(folder)) for name in (DEIT, MOBILEVIT)}


def test_two_vit_families_build_export_and_have_cards_that_count_attention_by_hand(exported):
    for name, counts in ((DEIT, DEIT_COUNTS), (MOBILEVIT, MOBILEVIT_COUNTS)):
        paths = exported[name]
        assert set(paths) == {"pt", "onnx"} and all(os.path.getsize(p) > 1_000_000 for p in paths.values())
        cards = [model_card(paths[fmt]) for fmt in ("pt", "onnx")]
        assert cards[0]["macs"] == cards[1]["macs"] and cards[0]["macs"] > counts["macs_attention"] > 0
        for card in cards:
            for key, value in counts.items():
                assert card[key] == value, (name, key)
            # attention's products are part of fc/matmul, apart from the products with weights
            assert card["macs_attention"] < card["macs_by_class"]["fc/matmul"]
    # the published sizes: DeiT-tiny 5.9 M parameters and 1.26 GMACs; MobileViT-XXS 1.3 M and 0.41 GMACs
    deit, mobilevit = model_card(exported[DEIT]["onnx"]), model_card(exported[MOBILEVIT]["onnx"])
    assert deit["params"] == pytest.approx(5.9e6, rel=0.01) and deit["macs"] == pytest.approx(1.26e9, rel=0.01)
    assert mobilevit["params"] == pytest.approx(1.27e6, rel=0.01) and mobilevit["macs"] == pytest.approx(
        0.407e9, rel=0.01)


def test_the_exported_vits_profile_in_torch_and_onnx_runtime(exported):
    target = profiler.Target.from_env(None, backend="local", cpus=1, threads=1, warmup=1, iterations=3)
    paths = [exported[name][fmt] for name in (DEIT, MOBILEVIT) for fmt in ("pt", "onnx")]
    results = profiler.profile(paths, target, store=None, retries=0)
    assert [r["status"] for r in results] == ["ok"] * 4, [r.get("error") for r in results]
    assert {r["runtime"] for r in results} == {"torch", "onnx"}
    for record in results:
        assert record["latency_ms"]["median"] > 0 and record["model_card"]["macs_attention"] > 0


def test_mobilevitv2_folds_its_patches_by_reshape_to_the_same_values():
    model = mmb_vit.build_torch("mobilevitv2-1.0-imagenet1k-256")
    x = torch.rand(mmb_vit.input_shape("mobilevitv2-1.0-imagenet1k-256"), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reshaped = model(x)
        for module in model.modules():
            module.__dict__.pop("folding", None)  # transformers' own fold (col2im) again
        folded = model(x)
    assert float(folded.abs().max()) > 1e-3  # activations of a trained network's scale, not vanished
    assert torch.equal(reshaped, folded)


def test_random_weights_keep_activations_at_a_trained_networks_scale():
    """Batch norm's statistics are set from data, so no layer computes on subnormal floats."""
    model = mmb_vit.build_torch(MOBILEVIT)
    with torch.no_grad():
        out = model.model(pixel_values=torch.rand(mmb_vit.input_shape(MOBILEVIT)), output_hidden_states=True)
    scales = [float(h.abs().max()) for h in out.hidden_states]
    assert min(scales) > 1e-3, scales


def test_an_einsum_product_of_two_activations_is_attention_work():
    from onnx import TensorProto, helper

    from profiler.cards.onnx import onnx_card_from_model

    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 2, 10, 8])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, 2, 12, 8])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 10, 12])
    probs = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2, 10, 12])
    graph = helper.make_graph([helper.make_node("Einsum", ["q", "k"], ["scores"], equation="bhlk,bhtk->bhlt"),
                               helper.make_node("Softmax", ["scores"], ["probs"], axis=-1)],
                              "attention", [q, k], [probs], value_info=[out])
    card = onnx_card_from_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), {})
    assert card["macs"] == card["macs_attention"] == card["macs_by_class"]["fc/matmul"] == 2 * 10 * 12 * 8
    assert card["softmax_elements"] == 2 * 10 * 12


def test_attention_is_counted_alike_in_onnx_in_the_converted_tflite_and_in_openvino(tmp_path):
    """A patch embedding and one attention block: 16 tokens of 16, one head. Hand count: scores and
    weighted values 2 × 16 × 16 × 16 MACs, softmax 16 × 16, one layer norm over 16 × 16, GELU over 16 × 32."""
    pytest.importorskip("onnx2tf", reason="ONNX to TFLite needs `make convert-packages`")
    ov = pytest.importorskip("openvino")
    from experiments.zoo import export_onnx
    from profiler.conversions import check_conversion, onnx_to_tflite

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.patch, self.norm = torch.nn.Conv2d(3, 16, 2, 2), torch.nn.LayerNorm(16)
            self.qkv, self.out, self.fc = torch.nn.Linear(16, 48), torch.nn.Linear(16, 16), torch.nn.Linear(16, 32)

        def forward(self, image):
            x = self.patch(image).flatten(2).transpose(1, 2)
            q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
            x = x + self.out(torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1) @ v)
            return torch.nn.functional.gelu(self.fc(x)).mean(1)

    torch.manual_seed(0)
    source, tflite, ir = (str(tmp_path / f"block.{ext}") for ext in ("onnx", "tflite", "xml"))
    export_onnx(Block().eval(), (1, 3, 8, 8), source, opset=mmb_vit.TFLITE_OPSET)
    onnx_to_tflite(source, tflite)
    assert check_conversion(source, tflite)["relative"] < 1e-3
    ov.save_model(ov.convert_model(source), ir)
    hand = {"macs_attention": 2 * 16 * 16 * 16, "softmax_elements": 16 * 16, "norm_elements": 16 * 16,
            "gelu_elements": 16 * 32}
    cards = {path: model_card(path) for path in (source, tflite, ir)}
    assert "GELU" in cards[tflite]["ops"] and "ScaledDotProductAttention" in cards[ir]["ops"]
    for path, card in cards.items():
        assert {key: card[key] for key in hand} == hand, path
        assert card["macs"] == cards[source]["macs"], path


@pytest.mark.skipif(not os.path.isdir(mmb_vit.default_dataset()), reason="../shared/datasets/mmb-vit is absent")
def test_the_vit_study_calibrates_a_few_networks_of_the_dev_phones(tmp_path):
    """experiments/mmb_phones/vit.py end to end on six small ViTs of six families: exported, profiled on
    this host, calibrated against both phones' PyTorch Mobile rows."""
    from experiments.mmb_phones import vit

    few = ["levit-128S", "mobilevit-xx-small", "mit-b0", "swiftformer-xs", DEIT, "van-tiny"]
    results = vit.main(["--models", *few, "--draws", "2", "--ks", "4", "--no-families", "--cache",
                        str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert set(results) == {name for name, (_, host) in vit.SLICES.items() if host == "torch"}
    for result in results.values():
        assert result["networks"] == 6
        for method in vit.METHODS:
            row = result["draws"][(4, method)]
            assert 0 <= row["within10"] <= 100 and row["mape"] > 0
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "6 of 6 within 2%" in text and "Pixel 4, PyTorch Mobile fp32, 1 big core (6 networks)" in text
