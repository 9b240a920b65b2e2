"""Export zoo models: python -m experiments.zoo NAME [NAME ...] --formats onnx pt tflite --out DIR.

Without a NAME it lists the zoo's names. Run it from the edge-profiler checkout (the experiments
are not installed with the package), or with PYTHONPATH=/path/to/edge-profiler from anywhere."""

import argparse
import os
import sys

from experiments import zoo


def export(name, formats, out, int8=False):
    """Write the requested formats of one zoo model; returns {format: path}."""
    os.makedirs(out, exist_ok=True)
    stem = name.replace(":", "_").replace("|", "").replace("~", "")
    written = {}
    model, shape = (None, None)
    for fmt in formats:
        path = os.path.join(out, f"{stem}.{fmt}")
        if os.path.exists(path):
            written[fmt] = path
            continue
        if fmt in ("onnx", "pt") and model is None:
            model, shape = zoo.build(name)
        if fmt == "onnx":
            zoo.export_onnx(model, shape, path + ".tmp")
        elif fmt == "pt":
            zoo.export_torchscript(model, shape, path + ".tmp")
        elif fmt == "tflite":
            from experiments.zoo import keras_models

            keras_models.export_tflite(name, path + ".tmp", int8=False)
        os.replace(path + ".tmp", path)
        written[fmt] = path
    if int8 and "tflite" in formats:
        from experiments.zoo import keras_models

        path = os.path.join(out, f"{stem}_int8.tflite")
        if not os.path.exists(path):
            keras_models.export_tflite(name, path + ".tmp", int8=True)
            os.replace(path + ".tmp", path)
        written["tflite_int8"] = path
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m experiments.zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help="zoo names to export (none: list the names)")
    parser.add_argument("--formats", nargs="+", default=["onnx", "pt"], choices=["onnx", "pt", "tflite"])
    parser.add_argument("--int8", action="store_true", help="also write a full-integer int8 TFLite")
    parser.add_argument("--out", default="models")
    opts = parser.parse_args(argv)
    if not opts.names:
        print("\n".join(zoo.names()))
        return 0
    for name in opts.names:
        try:
            for fmt, path in export(name, opts.formats, opts.out, opts.int8).items():
                print(f"{name}: {fmt} {path}")
        except (KeyError, ValueError) as exc:
            print(f"zoo: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
