"""Small CNNs built by this project, for the demo, the tests and the benchmarks.

The ONNX builder needs only the `onnx` package; TorchScript needs torch and
TFLite needs TensorFlow (the optional `tf` extra), so each is imported lazily.
"""

import numpy as np


def cnn_onnx(path, *, size=32, channels=(8, 16), classes=10, seed=0, dynamic_batch=False, dynamic_hw=False,
             extra_weights_mb=0, opset=17):
    """Conv-ReLU stack, global average pool and a dense head, written as ONNX.

    extra_weights_mb adds a large constant that is folded into the output, so the
    runtime must hold it in memory (used to test the memory cap)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev, width = "input", 3
    for i, out in enumerate(channels):
        w = (rng.standard_normal((out, width, 3, 3)) * 0.1).astype(np.float32)
        b = np.zeros(out, np.float32)
        inits += [numpy_helper.from_array(w, f"conv{i}.w"), numpy_helper.from_array(b, f"conv{i}.b")]
        nodes.append(helper.make_node("Conv", [prev, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2 if i else 1] * 2))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
        prev, width = f"relu{i}", out
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["pool"]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    fc = (rng.standard_normal((width, classes)) * 0.1).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "fc.w"), numpy_helper.from_array(np.zeros(classes, np.float32), "fc.b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits" if not extra_weights_mb else "fc"]))
    if extra_weights_mb:
        count = int(extra_weights_mb * 1024 * 1024 // 4)
        big = rng.random(count, dtype=np.float32)
        inits += [numpy_helper.from_array(big, "ballast"), numpy_helper.from_array(np.zeros(1, np.int64), "zero")]
        nodes.append(helper.make_node("ReduceMax", ["ballast"], ["ballast_max"], keepdims=0))
        nodes.append(helper.make_node("Mul", ["ballast_max", "zero_f"], ["ballast_zero"]))
        inits.append(numpy_helper.from_array(np.zeros((), np.float32), "zero_f"))
        nodes.append(helper.make_node("Add", ["fc", "ballast_zero"], ["logits"]))
    batch = "batch" if dynamic_batch else 1
    height, width_dim = ("height", "width") if dynamic_hw else (size, size)
    graph = helper.make_graph(
        nodes, "edge_profiler_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, height, width_dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edge-profiler")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def cnn_torchscript(path, *, size=32, channels=(8, 16), classes=10, seed=0):
    """The same network as cnn_onnx, as TorchScript with its input shape stored inside."""
    import json

    import torch
    from torch import nn

    from profiler.harness.runtimes.torch_adapter import SHAPES_FILE

    torch.manual_seed(seed)
    layers, width = [], 3
    for i, out in enumerate(channels):
        layers += [nn.Conv2d(width, out, 3, stride=2 if i else 1, padding=1), nn.ReLU()]
        width = out
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)).eval()
    shape = [1, 3, size, size]
    scripted = torch.jit.trace(net, torch.rand(shape))
    spec = [{"name": "input", "shape": shape, "dtype": "float32"}]
    torch.jit.save(scripted, str(path), _extra_files={SHAPES_FILE: json.dumps(spec)})
    return path


def cnn_tflite(path, *, size=32, channels=(8, 16), classes=10, seed=0):
    """The same network as cnn_onnx, converted to float32 TFLite (needs TensorFlow)."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    inputs = tf.keras.Input((size, size, 3), batch_size=1, name="input")
    x = inputs
    for i, out in enumerate(channels):
        x = tf.keras.layers.Conv2D(out, 3, strides=2 if i else 1, padding="same", activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(classes)(x)
    model = tf.keras.Model(inputs, outputs)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with open(path, "wb") as f:
        f.write(converter.convert())
    return path
