"""Static model card: size, parameters, MACs by operator class, op histogram, activation bytes.

`macs` follows the published convention (convolutions plus fc/matmul); `macs_int` of them run
as integer arithmetic (int8 weights: QLinear/Integer ops, QDQ pairs, TFLite int8 kernels, dynamic-
range ones included), `macs_float` in floating point. `macs_attention` are the fc/matmul MACs of
products between two activations (attention's scores and its weighted values), apart from products
with weights; `softmax_elements`, `norm_elements` (layer, group and instance normalisation) and
`gelu_elements` count the outputs of those transformer operators. `macs_by_class`
also lists the work of pooling (output elements × window), elementwise ops (output
elements) and other ops. ONNX is read with shape inference; TFLite through the
interpreter's tensor and op details; TorchScript through an ONNX export at the profiled
input shape. Unknown op types are counted under `other` and never fail a card.
"""

import os

READERS = {".onnx": ("onnx", "onnx_card"), ".tflite": ("tflite", "tflite_card"), ".pt": ("torchscript", "torchscript_card"),
           ".pth": ("torchscript", "torchscript_card"), ".pt2": ("torchscript", "torchscript_card"), ".xml": ("openvino", "openvino_card")}


def model_card(path, target=None, shapes=None):
    """The card of one model file; shapes (name -> dims) pin dynamic inputs. The readers, one per
    format, are the modules of `profiler.cards`."""
    import importlib

    from profiler.harness.runtimes import parse_input_shapes

    if shapes is None and target is not None and target.input_shapes:
        shapes = parse_input_shapes(target.input_shapes)
    batch = target.batch if target is not None else 1
    ext = os.path.splitext(path)[1].lower()
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: is empty (0 bytes), not a model")
    card = {"size_mb": round(os.path.getsize(path) / (1024 * 1024), 4)}
    if ext not in READERS:
        return card
    module, reader = READERS[ext]
    card.update(getattr(importlib.import_module(f"profiler.cards.{module}"), reader)(path, shapes or {}, batch))
    return card
