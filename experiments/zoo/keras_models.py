"""Keras re-definitions of zoo models, converted to TFLite (needs the optional `tf` extra).

The layouts match the PyTorch definitions, so the TFLite, ONNX and TorchScript cards of
one network agree. float32, or full-integer int8 calibrated on a random representative set.
"""

import numpy as np


def _squeezenet(tf, classes=1000):
    layers = tf.keras.layers
    inputs = tf.keras.Input((224, 224, 3), batch_size=1, name="input")

    def fire(x, squeeze, expand):
        s = layers.Conv2D(squeeze, 1, activation="relu")(x)
        return layers.Concatenate()([layers.Conv2D(expand, 1, activation="relu")(s),
                                     layers.Conv2D(expand, 3, padding="same", activation="relu")(s)])

    x = layers.Conv2D(64, 3, strides=2, activation="relu")(inputs)
    x = layers.MaxPooling2D(3, 2)(x)
    x = fire(fire(x, 16, 64), 16, 64)
    x = layers.MaxPooling2D(3, 2)(x)
    x = fire(fire(x, 32, 128), 32, 128)
    x = layers.MaxPooling2D(3, 2)(x)
    for squeeze, expand in ((48, 192), (48, 192), (64, 256), (64, 256)):
        x = fire(x, squeeze, expand)
    x = layers.Conv2D(classes, 1, activation="relu")(x)
    outputs = layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, outputs, name="squeezenet1_1")


def has_keras_model(name):
    """Whether the zoo has a Keras re-definition of this network (else TFLite comes by conversion)."""
    return (name.startswith("mobilenet_v2_") and "3d" not in name) or name in ("inception_v3", "squeezenet1_1")


def keras_model(name):
    import tensorflow as tf

    if name.startswith("mobilenet_v2_") and "3d" not in name:
        width = float(name.rsplit("_", 1)[1])
        return tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=width, weights=None, classes=1000), (1, 224, 224, 3)
    if name == "inception_v3":
        return tf.keras.applications.InceptionV3(input_shape=(299, 299, 3), weights=None, classes=1000), (1, 299, 299, 3)
    if name == "squeezenet1_1":
        return _squeezenet(tf), (1, 224, 224, 3)
    raise KeyError(f"no Keras definition for {name!r} (TFLite: mobilenet_v2_*, squeezenet1_1, inception_v3)")


def convert(tf, converter, shape, path, int8=False, seed=0, integer_io=True, samples=8):
    """Write the converter's TFLite file: float32, or full-integer int8 calibrated on a random
    representative set (with int8 input and output, or float ones around the int8 graph)."""
    if int8:
        rng = np.random.default_rng(seed)

        def representative():
            for _ in range(samples):
                yield [rng.random(shape, dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if integer_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    data = converter.convert()
    with open(path, "wb") as f:
        f.write(data)
    return path


def export_tflite(name, path, int8=False, seed=0):
    import tensorflow as tf

    tf.random.set_seed(seed)
    model, shape = keras_model(name)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    # The frozen function itself: lowering to a SavedModel first (from_keras_model's way) traces every
    # layer's call again and takes several times longer, for the same graph op for op.
    converter.experimental_lower_to_saved_model = False
    return convert(tf, converter, shape, path, int8, seed)
