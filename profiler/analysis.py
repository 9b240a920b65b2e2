"""Static model card: file size, parameter count and an op histogram.

ONNX is read with the `onnx` package; TFLite through the interpreter's tensor and op
details; TorchScript through its parameters and graph. Unknown ops never fail a card.
"""

import os
from collections import Counter


def model_card(path, target=None, shapes=None):
    ext = os.path.splitext(path)[1].lower()
    card = {"size_mb": round(os.path.getsize(path) / (1024 * 1024), 4), "params": None, "ops": {}}
    reader = {".onnx": _onnx, ".tflite": _tflite, ".pt": _torchscript, ".pth": _torchscript}.get(ext)
    if reader:
        card.update(reader(path))
    return card


def _onnx(path):
    import numpy as np
    import onnx

    model = onnx.load(path, load_external_data=False)
    params = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    ops = Counter(node.op_type for node in model.graph.node)
    return {"params": params, "ops": dict(ops.most_common())}


def _tflite(path):
    import numpy as np

    from profiler.runtimes import tflite_adapter

    interp = tflite_adapter._interpreter.Interpreter(model_path=path)
    ops = Counter(op["op_name"] for op in interp._get_ops_details())
    consumed = set()
    for op in interp._get_ops_details():
        consumed.update(int(i) for i in op["inputs"] if i >= 0)
    params = 0
    for tensor in interp.get_tensor_details():
        # Constant tensors (weights, biases) are the ones whose buffers the file carries.
        if tensor["index"] in consumed and not _is_activation(interp, tensor):
            params += int(np.prod(tensor["shape"])) if len(tensor["shape"]) else 1
    return {"params": params, "ops": dict(ops.most_common())}


def _is_activation(interp, tensor):
    inputs = {d["index"] for d in interp.get_input_details()}
    if tensor["index"] in inputs:
        return True
    produced = {int(o) for op in interp._get_ops_details() for o in op["outputs"]}
    return tensor["index"] in produced


def _torchscript(path):
    import torch

    module = torch.jit.load(path, map_location="cpu")
    params = sum(p.numel() for p in module.parameters())
    ops = Counter(node.kind().split("::")[-1] for node in module.inlined_graph.nodes()
                  if not node.kind().startswith("prim::"))
    return {"params": params, "ops": dict(ops.most_common())}
