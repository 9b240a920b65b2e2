"""Export zoo models: python -m experiments.zoo NAME [NAME ...] --formats onnx pt tflite --out DIR.

Without a NAME it lists the zoo's names. Run it from the edge-profiler checkout (the experiments
are not installed with the package), or with PYTHONPATH=/path/to/edge-profiler from anywhere."""

import argparse
import os
import sys

from experiments import zoo
from experiments.zoo import cache, keras_models


# What each format's file depends on besides the model's name (experiments.zoo.cache keys).
TORCH_SOURCES = ("experiments.zoo", "experiments.zoo.image", "experiments.zoo.video", "experiments.zoo.nb201",
                 "profiler.harness.runtimes.torch_adapter")
# A network without a Keras re-definition (NAS-Bench-201 cells, the 3D networks, ...) reaches TFLite
# from its ONNX export through the tool's own conversion (profile --variants tflite: onnx2tf, checked).
EXPORTERS = {"onnx": (TORCH_SOURCES, ("torch", "onnx")), "pt": (TORCH_SOURCES, ("torch",)),
             "tflite": (("experiments.zoo.keras_models", "profiler.conversions") + TORCH_SOURCES,
                        ("tensorflow", "numpy", "torch", "onnx", "onnx2tf", "onnxruntime"))}
EXPORTERS["tflite_int8"] = EXPORTERS["tflite"]


def cache_key(name, fmt):
    modules, packages = EXPORTERS[fmt]
    return cache.key(modules, packages, name, fmt)


def export(name, formats, out, int8=False):
    """Write the requested formats of one zoo model; returns {format: path}. Files already there are
    kept; files exported before by the same code and packages come from the export cache."""
    os.makedirs(out, exist_ok=True)
    stem = name.replace(":", "_").replace("|", "").replace("~", "")
    written = {}
    model, shape = (None, None)
    for fmt in formats:
        def write(tmp, fmt=fmt):
            nonlocal model, shape
            if model is None and (fmt in ("onnx", "pt") or not keras_models.has_keras_model(name)):
                model, shape = zoo.build(name)
            if fmt == "onnx":
                zoo.export_onnx(model, shape, tmp)
            elif fmt == "pt":
                zoo.export_torchscript(model, shape, tmp)
            elif keras_models.has_keras_model(name):
                keras_models.export_tflite(name, tmp, int8=False)
            else:
                zoo.export_converted_tflite(model, shape, tmp)

        written[fmt] = cache.make(cache_key(name, fmt), os.path.join(out, f"{stem}.{fmt}"), write)
    if int8 and "tflite" in formats:
        written["tflite_int8"] = cache.make(cache_key(name, "tflite_int8"), os.path.join(out, f"{stem}_int8.tflite"),
                                            lambda tmp: keras_models.export_tflite(name, tmp, int8=True))
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
