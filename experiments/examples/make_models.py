"""Regenerate the bundled example models (committed beside this script).

    python experiments/examples/make_models.py          # ONNX + TorchScript (+ TFLite with TensorFlow)
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from experiments.examples.models import cnn_onnx, cnn_tflite, cnn_torchscript  # noqa: E402

SHAPE = dict(size=64, channels=(16, 32, 64))


def main():
    made = [cnn_onnx(os.path.join(HERE, "tiny_cnn.onnx"), **SHAPE)]
    for build, name in ((cnn_torchscript, "tiny_cnn.pt"), (cnn_tflite, "tiny_cnn.tflite")):
        try:
            made.append(build(os.path.join(HERE, name), **SHAPE))
        except ImportError as exc:
            print(f"skipped {name}: {exc.name} is not installed", file=sys.stderr)
    for path in made:
        print(f"{path}: {os.path.getsize(path) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
