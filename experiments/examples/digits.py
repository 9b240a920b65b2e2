"""A real classifier on real data: scikit-learn's handwritten digits (1,797 8×8 images), a small
multilayer perceptron trained here with a fixed seed (about a second), written as ONNX and, with
TensorFlow installed, as TFLite; plus the held-out images as the `--data` file.

    python -m experiments.examples.digits OUTPUT_FOLDER

writes digits_mlp.onnx, digits_mlp.tflite (if TensorFlow is installed), digits_mlp.pt (TorchScript,
if torch is installed) and digits_test.npz
(x_data: float32 images scaled to [0, 1], one per row; y_data: int64 labels).
"""

import os
import sys

import numpy as np

HIDDEN = 32
SEED = 0
TEST_SHARE = 0.4


def train():
    """(fitted MLPClassifier, x_test, y_test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=TEST_SHARE,
                                                        random_state=SEED, stratify=digits.target)
    model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=400, random_state=SEED).fit(x_train, y_train)
    return model, x_test, y_test.astype(np.int64)


def write_onnx(model, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
    inits = [numpy_helper.from_array(a.astype(np.float32), name)
             for a, name in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"])]
    graph = helper.make_graph(nodes, "digits_mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                   [1, w1.shape[0]])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, w2.shape[1]])],
                              initializer=inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    onnx.save(onnx_model, path)
    return path


def write_tflite(model, path):
    """The same weights as a Keras model, converted to TFLite (needs TensorFlow; None without it)."""
    try:
        import tensorflow as tf
    except ImportError:
        return None
    (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
    keras = tf.keras.Sequential([tf.keras.Input((w1.shape[0],), batch_size=1),
                                 tf.keras.layers.Dense(w1.shape[1], activation="relu"),
                                 tf.keras.layers.Dense(w2.shape[1])])
    keras.layers[0].set_weights([w1, b1])
    keras.layers[1].set_weights([w2, b2])
    with open(path, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(keras).convert())
    return path


def write_torchscript(model, path):
    """The same weights as a traced TorchScript module with its input shape inside (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    import json

    from profiler.runtimes.torch_adapter import SHAPES_FILE

    (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
    net = torch.nn.Sequential(torch.nn.Linear(*w1.shape), torch.nn.ReLU(), torch.nn.Linear(*w2.shape)).eval()
    with torch.no_grad():
        for layer, w, b in ((net[0], w1, b1), (net[2], w2, b2)):
            layer.weight.copy_(torch.from_numpy(w.T.astype(np.float32)))
            layer.bias.copy_(torch.from_numpy(b.astype(np.float32)))
    shape = [1, w1.shape[0]]
    spec = [{"name": "input", "shape": shape, "dtype": "float32"}]
    torch.jit.save(torch.jit.trace(net, torch.rand(shape)), path, _extra_files={SHAPES_FILE: json.dumps(spec)})
    return path


def write_data(x_test, y_test, path):
    np.savez(path, x_data=x_test, y_data=y_test)
    return path


def build(folder, tflite=True, torchscript=False):
    """{"onnx": path, "tflite": path or None, "torchscript": path or None, "data": path, "model": the
    fitted classifier}."""
    os.makedirs(folder, exist_ok=True)
    model, x_test, y_test = train()
    return {"onnx": write_onnx(model, os.path.join(folder, "digits_mlp.onnx")),
            "tflite": write_tflite(model, os.path.join(folder, "digits_mlp.tflite")) if tflite else None,
            "torchscript": write_torchscript(model, os.path.join(folder, "digits_mlp.pt")) if torchscript else None,
            "data": write_data(x_test, y_test, os.path.join(folder, "digits_test.npz")), "model": model}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    made = build(sys.argv[1], torchscript=True)
    print("\n".join(f"wrote {p}" for k, p in made.items() if k != "model" and p))
