"""The PyTorch card (TorchScript .pt/.pth and torch.export programs .pt2): the module exported to ONNX
at its profiled input shape (the trace gives every op its shapes), then read as ONNX."""

import io

from profiler.cards.common import CardError
from profiler.cards.onnx import onnx_card_from_model
from profiler.harness.files import silenced


def torchscript_to_onnx(path, shapes, fold_constants=False,
                        why="no model card: the ONNX exporter that counts its operators failed"):
    """(ONNX bytes, the module) of a TorchScript file or exported program exported at its input shapes
    (embedded in the file, or given: name -> dims); a CardError of one line when it cannot be exported."""
    import json
    import warnings

    import torch

    from profiler.harness.runtimes.torch_adapter import SHAPES_FILE, export_specs

    if path.endswith(".pt2"):  # an exported program: its own input shapes, its module already in inference form
        with silenced():  # torch logs a failed load's whole traceback before it raises
            program = torch.export.load(path)
        module = program.module()
        stored = {s.name: s.shape for s in export_specs(program)}
        mode = torch.onnx.TrainingMode.PRESERVE  # such a module refuses train()/eval()
    else:
        extra = {SHAPES_FILE: ""}
        module = torch.jit.load(path, map_location="cpu", _extra_files=extra).eval()
        stored = {s["name"]: s["shape"] for s in json.loads(extra[SHAPES_FILE])} if extra[SHAPES_FILE] else {}
        mode = torch.onnx.TrainingMode.EVAL
    stored.update(shapes)
    if not stored or any(d is None for shape in stored.values() for d in shape):
        raise CardError(f"{path}: the PyTorch file has no fixed input shapes; set INPUT_SHAPES")
    example = tuple(torch.rand(shape) for shape in stored.values())
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), silenced():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, buffer, dynamo=False, opset_version=17, training=mode,
                              do_constant_folding=fold_constants, input_names=list(stored))
    except Exception as exc:  # the exporter cannot express every network; its IR dump is not for the user
        text = " ".join(str(exc).split())
        raise CardError(f"{path}: {why} ({text[:160]})") from None
    return buffer.getvalue(), module


def torchscript_card(path, shapes, batch=1):
    """Exported to ONNX at the profiled shape (the trace gives every op its shapes)."""
    import onnx

    data, module = torchscript_to_onnx(path, shapes)
    card = onnx_card_from_model(onnx.load_from_string(data), {}, batch)
    card["params"] = int(sum(p.numel() for p in module.parameters()))
    return card
