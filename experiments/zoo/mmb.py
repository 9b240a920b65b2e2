"""The mmb-cnn networks: 102 CNNs in 25 families, as the phones of ../shared/datasets/mmb-cnn ran them.

- PyTorch (ONNX and TorchScript): `pytorchcv.model_provider.get_model(name)`, random weights.
- TFLite: the same networks from their Keras twins (tf2cv), converted with TensorFlow's own
  converter, as the device's TFLite files were made; fp32, or full-integer int8.
- TFLite from ONNX (`tflite_onnx`): the ONNX export converted by edge-profiler's own route
  (`profiler.conversions.onnx_to_tflite`, onnx2tf) and checked against it, as a user's PyTorch
  model would reach the device's format.

Both packages are optional (`make zoo-packages` installs them, with tf-keras: tf2cv is written for
Keras 2). Input 1×3×224×224 for every network.
"""

import csv
import os
import warnings

INPUT_SHAPE = (1, 3, 224, 224)
# Native input sizes that the builders assert; both networks end in adaptive pooling, so they
# are built at their own size and run at 224 like every other network.
NATIVE_SIZE = {"efficientnet_edge_medium_b": 240, "efficientnet_edge_large_b": 300}


def default_dataset(folder="mmb-cnn"):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(os.path.dirname(root), "shared", "datasets", folder)


def names(dataset=None, filename="mmb_cnn_latency_dev.csv"):
    """The network names of the dataset, sorted."""
    path = os.path.join(dataset or default_dataset(), filename)
    with open(path, newline="") as f:
        return sorted({row["model"] for row in csv.DictReader(f)})


def _missing(package, how):
    return ImportError(f"the mmb networks need {package}: {how}")


def _pytorchcv():
    """pytorchcv's model provider, without torchvision.

    The provider imports every model module, and one (propainter_rfc, no mmb network) imports
    torchvision.ops; PyPI's torchvision does not load beside the CPU torch build. Without
    torchvision, that one import gets a placeholder that fails only if a network uses it."""
    import importlib.util
    import sys
    import types

    placeholder = importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules
    if placeholder:
        class DeformConv2d:
            def __init__(self, *args, **kwargs):
                raise ImportError("this network needs torchvision.ops.DeformConv2d")

        ops = types.ModuleType("torchvision.ops")
        ops.DeformConv2d = DeformConv2d
        package = types.ModuleType("torchvision")
        package.ops = ops
        sys.modules.update({"torchvision": package, "torchvision.ops": ops})
    try:
        from pytorchcv.model_provider import get_model
    except ImportError:
        raise _missing("pytorchcv", "make zoo-packages") from None
    finally:
        if placeholder:  # only pytorchcv's import saw it; torch itself must still find no torchvision
            sys.modules.pop("torchvision.ops", None)
            sys.modules.pop("torchvision", None)
    return get_model


def build_torch(name, seed=0):
    """The pytorchcv network in eval mode."""
    import torch

    get_model = _pytorchcv()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in NATIVE_SIZE:
            return get_model(name, pretrained=False).eval()
        return get_model(name, pretrained=False, in_size=INPUT_SHAPE[2:]).eval()


def _tensorflow():
    """TensorFlow with Keras 2 (tf-keras), which tf2cv's layers are written against."""
    import sys

    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("TensorFlow was imported before the mmb exporter could select Keras 2; "
                           "export mmb TFLite models in a process of their own")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    if not hasattr(np, "int"):  # tf2cv predates NumPy 1.24, which removed this alias
        np.int = int
    import tensorflow as tf

    try:
        import tf_keras  # noqa: F401
        from tf2cv.model_provider import get_model
    except ImportError:
        raise _missing("tf2cv and tf-keras", "make zoo-packages") from None
    return tf, get_model


def export_tflite(name, path, int8=False, seed=0):
    """The tf2cv twin of `name`, converted to TFLite (NHWC input 1×224×224×3)."""
    tf, get_model = _tensorflow()
    tf.random.set_seed(seed)
    kwargs = {} if name in NATIVE_SIZE else {"in_size": INPUT_SHAPE[2:]}
    net = get_model(name, pretrained=False, data_format="channels_last", **kwargs)
    shape = (1, INPUT_SHAPE[2], INPUT_SHAPE[3], INPUT_SHAPE[1])
    function = tf.function(lambda x: net(x, training=False)).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], net)
    # Convert the frozen function itself. Lowering to a SavedModel first (the default) traces every
    # Keras layer's call again and takes ten times longer; the TFLite graph is the same op for op.
    converter.experimental_lower_to_saved_model = False
    from experiments.zoo.keras_models import convert

    return convert(tf, converter, shape, path, int8, seed, integer_io=False, samples=4)


# What each format's file depends on besides the network's name (experiments.zoo.cache keys).
EXPORTERS = {"tflite": (("experiments.zoo.mmb", "experiments.zoo.keras_models"),
                        ("tensorflow", "tf-keras", "tf2cv", "numpy")),
             "onnx": (("experiments.zoo.mmb", "experiments.zoo", "profiler.harness.runtimes.torch_adapter"),
                      ("torch", "pytorchcv", "onnx"))}
EXPORTERS["tflite_int8"] = EXPORTERS["tflite"]
EXPORTERS["pt"] = EXPORTERS["onnx"]
EXPORTERS["tflite_onnx"] = (EXPORTERS["onnx"][0] + ("profiler.conversions",),
                            EXPORTERS["onnx"][1] + ("onnx2tf", "tensorflow", "onnxruntime"))
EXPORTERS["tflite_pt2"] = (EXPORTERS["onnx"][0] + ("profiler.conversions",),
                           ("torch", "pytorchcv", "litert-torch", "litert-converter", "ai-edge-litert"))
# The file each format is written to, for a network `name`.
FILES = {"tflite": "{}.tflite", "tflite_int8": "{}_int8.tflite", "tflite_onnx": "{}_from_onnx.tflite",
         "tflite_pt2": "{}_from_pt2.tflite", "onnx": "{}.onnx", "pt": "{}.pt"}


def cache_key(name, fmt, seed=0):
    from experiments.zoo import cache

    modules, packages = EXPORTERS[fmt]
    return cache.key(modules, packages, name, fmt, seed)


def export(name, formats, folder, int8=False):
    """Write the requested formats ('onnx', 'pt', 'tflite', 'tflite_onnx', 'tflite_pt2': converted by
    onnx2tf from the ONNX export, or by litert-torch from the torch.export program) of one network;
    returns {format: path}. 'tflite' needs a process where TensorFlow is not loaded yet or runs Keras 2;
    'tflite_onnx' a process of its own for the same reason.

    Files already there are kept, so an interrupted export resumes; files exported before by the same
    code and packages come from the export cache (experiments.zoo.cache)."""
    from experiments.zoo import cache, export_converted_tflite, export_onnx, export_torchscript

    os.makedirs(folder, exist_ok=True)
    written, model = {}, None
    wanted = [(fmt, FILES[fmt].format(name)) for fmt in formats]
    if int8:
        wanted.append(("tflite_int8", FILES["tflite_int8"].format(name)))
    for fmt, filename in wanted:
        def write(tmp, fmt=fmt):
            nonlocal model
            if fmt in ("onnx", "pt", "tflite_onnx", "tflite_pt2") and model is None:
                model = build_torch(name)
            if fmt == "onnx":
                export_onnx(model, INPUT_SHAPE, tmp)
            elif fmt == "pt":
                export_torchscript(model, INPUT_SHAPE, tmp)
            elif fmt in ("tflite_onnx", "tflite_pt2"):
                export_converted_tflite(model, INPUT_SHAPE, tmp, via=fmt.split("_")[1])
            else:
                export_tflite(name, tmp, int8=fmt == "tflite_int8")

        written[fmt] = cache.make(cache_key(name, fmt), os.path.join(folder, filename), write)
    return written
