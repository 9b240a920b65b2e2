"""Real classifiers on real data: scikit-learn's handwritten digits (1,797 8×8 images), split with a
fixed seed, and two networks trained here on the same 1,078 images:

- a small CNN (two 3×3 convolutions, 16 and 32 channels, then a linear layer), trained with torch
  (fixed seed, a few seconds), written as ONNX, TorchScript, a torch.export program (.pt2) and, with
  TensorFlow installed, TFLite (the same weights in Keras);
- a multilayer perceptron (one hidden layer of 32, scikit-learn), as ONNX and TFLite: faster and
  a little less accurate, the other end of the accuracy-latency front.

Both take a flat row of 64 pixels (the CNN reshapes it to 1×8×8 inside), so one data file serves
every format.

    python -m experiments.examples.digits OUTPUT_FOLDER

writes digits_cnn.onnx, digits_cnn.pt, digits_cnn.tflite, digits_mlp.onnx, digits_mlp.tflite (the
TFLite files if TensorFlow is installed) and digits_test.npz (x_data: 719 held-out float32 images
scaled to [0, 1], one per row; y_data: their int64 labels; x_calibration: 100 training images that
an int8-static variant calibrates on, so that no scored image was seen by the quantizer).
"""

import os
import sys

import numpy as np

HIDDEN = 32
SEED = 0
TEST_SHARE = 0.4


def split():
    """(x_train, x_test, y_train, y_test): pixels scaled to [0, 1] as float32, labels as int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target.astype(np.int64), test_size=TEST_SHARE,
                                                        random_state=SEED, stratify=digits.target)
    return x_train, x_test, y_train, y_test


def train():
    """(fitted MLPClassifier, x_test, y_test)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, x_test, y_train, y_test = split()
    with warnings.catch_warnings():  # the fixed iteration count is the recipe; it is not meant to converge
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=400, random_state=SEED).fit(x_train, y_train)
    return model, x_test, y_test


EPOCHS = 30


def cnn():
    """The CNN, untrained: 64 pixels -> 1×8×8 -> conv 3×3 (16) -> conv 3×3 stride 2 (32) -> linear (10)."""
    from torch import nn

    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def train_cnn(x_train, y_train):
    """The CNN trained with Adam, 30 epochs of batches of 32, fixed seed, one thread (repeatable)."""
    import torch

    threads = torch.get_num_threads()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    try:
        net = cnn()
        optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
        x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
        order = torch.Generator().manual_seed(SEED)
        for _ in range(EPOCHS):
            for batch in torch.randperm(len(x), generator=order).split(32):
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def write_cnn_onnx(net, path):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 64), path, input_names=["input"], output_names=["logits"],
                          opset_version=17, dynamo=False)
    return path


def write_cnn_torchscript(net, path):
    """Traced, with its input shape inside (what `profile` reads for a TorchScript file)."""
    import json

    import torch

    from profiler.harness.runtimes.torch_adapter import SHAPES_FILE

    spec = [{"name": "input", "shape": [1, 64], "dtype": "float32"}]
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 64)), path, _extra_files={SHAPES_FILE: json.dumps(spec)})
    return path


def write_cnn_exported(net, path):
    """A torch.export program (.pt2), the form PyTorch's own deployment tools start from."""
    import torch

    torch.export.save(torch.export.export(net, (torch.zeros(1, 64),)), path)
    return path


def write_cnn_tflite(net, path):
    """The same weights as a Keras model (NHWC; flattened in torch's channel-first order), converted to
    TFLite (needs TensorFlow; None without it)."""
    tf = _tensorflow()
    if tf is None:
        return None
    layers = tf.keras.layers
    first, second, linear = net[1], net[3], net[6]
    keras = tf.keras.Sequential([tf.keras.Input((64,), batch_size=1), layers.Reshape((8, 8, 1)),
                                 layers.Conv2D(16, 3, padding="same", activation="relu"),
                                 layers.ZeroPadding2D(1), layers.Conv2D(32, 3, strides=2, activation="relu"),
                                 layers.Permute((3, 1, 2)), layers.Flatten(), layers.Dense(10)])
    weights = lambda t: t.detach().numpy()  # noqa: E731
    keras.layers[1].set_weights([weights(first.weight).transpose(2, 3, 1, 0), weights(first.bias)])
    keras.layers[3].set_weights([weights(second.weight).transpose(2, 3, 1, 0), weights(second.bias)])
    keras.layers[6].set_weights([weights(linear.weight).T, weights(linear.bias)])
    _convert(tf, keras, path)
    return path


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
    tf = _tensorflow()
    if tf is None:
        return None
    (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
    keras = tf.keras.Sequential([tf.keras.Input((w1.shape[0],), batch_size=1),
                                 tf.keras.layers.Dense(w1.shape[1], activation="relu"),
                                 tf.keras.layers.Dense(w2.shape[1])])
    keras.layers[0].set_weights([w1, b1])
    keras.layers[1].set_weights([w2, b2])
    _convert(tf, keras, path)
    return path


def _tensorflow():
    """TensorFlow, imported without its start-up log on the terminal; None when it is not installed."""
    from profiler.harness.files import silenced

    try:
        with silenced():
            import tensorflow as tf
    except ImportError:
        return None
    return tf


def _convert(tf, keras, path):
    from profiler.harness.files import silenced

    with silenced():  # the converter prints its graph's signature and progress
        data = tf.lite.TFLiteConverter.from_keras_model(keras).convert()
    with open(path, "wb") as f:
        f.write(data)


CALIBRATION = 100  # training images an int8-static variant calibrates on, never scored


def write_data(x_test, y_test, path, x_calibration=None):
    arrays = {"x_data": x_test, "y_data": y_test}
    if x_calibration is not None:
        arrays["x_calibration"] = x_calibration
    np.savez(path, **arrays)
    return path


NAMES = {"onnx": "digits_cnn.onnx", "tflite": "digits_cnn.tflite", "torchscript": "digits_cnn.pt", "exported": "digits_cnn.pt2",
         "data": "digits_test.npz", "mlp_onnx": "digits_mlp.onnx", "mlp_tflite": "digits_mlp.tflite"}


def build(folder, tflite=True, torchscript=False, mlp=False, exported=False):
    """{"onnx", "tflite", "torchscript", "exported" (.pt2): the CNN's files (None when not asked for or
    without TensorFlow), "mlp_onnx", "mlp_tflite": the perceptron's (with mlp), "data": the held-out .npz}.

    Files made before by the same code and packages come from the export cache (experiments.zoo.cache):
    training is deterministic, so they are the same files."""
    from experiments.zoo import cache

    os.makedirs(folder, exist_ok=True)
    key = cache.key(("experiments.examples.digits",), ("torch", "onnx", "tensorflow", "scikit-learn", "numpy"), SEED)
    wanted = ["onnx", "data"] + (["tflite"] if tflite else []) + (["torchscript"] if torchscript else []) \
        + (["exported"] if exported else [])
    wanted += (["mlp_onnx"] + (["mlp_tflite"] if tflite else [])) if mlp else []
    made = {kind: None for kind in ("onnx", "tflite", "torchscript", "exported", "data")}
    made.update({kind: os.path.join(folder, NAMES[kind]) for kind in wanted})
    if all(cache.fetch(key, made[kind]) for kind in wanted):
        return made
    x_train, x_test, y_train, y_test = split()
    net = train_cnn(x_train, y_train)
    made.update(onnx=write_cnn_onnx(net, made["onnx"]), data=write_data(x_test, y_test, made["data"],
                                                                      x_train[:CALIBRATION]))
    if tflite:
        made["tflite"] = write_cnn_tflite(net, made["tflite"])
    if torchscript:
        made["torchscript"] = write_cnn_torchscript(net, made["torchscript"])
    if exported:
        made["exported"] = write_cnn_exported(net, made["exported"])
    if mlp:
        model = train()[0]
        made["mlp_onnx"] = write_onnx(model, made["mlp_onnx"])
        if tflite:
            made["mlp_tflite"] = write_tflite(model, made["mlp_tflite"])
    for path in made.values():
        if path:
            cache.keep(key, path)
    return made


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    made = build(sys.argv[1], torchscript=True, mlp=True, exported=True)
    print("\n".join(f"wrote {p}" for p in made.values() if p))
