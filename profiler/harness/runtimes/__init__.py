"""Runtime adapters: one small module per runtime, each with the same four verbs.

    load(path, threads)                      -> session
    describe(session)                        -> [InputSpec, ...]
    make_inputs(specs, batch, seed, shapes)  -> inputs    (shared, below)
    runner(session, inputs)                  -> zero-argument callable running once

Adapters are imported inside the sandbox: they depend on numpy and their runtime only.
"""

import importlib
import os
from dataclasses import dataclass

EXTENSIONS = {
    ".onnx": "onnx",
    ".tflite": "tflite",
    ".pt": "torch",
    ".pth": "torch",
    ".pt2": "torch",
    ".xml": "openvino",  # an OpenVINO IR: its weights in the .bin beside it
}
RUNTIMES = ("onnx", "tflite", "torch", "openvino")


class ModelError(Exception):
    """The model file cannot be loaded or fed; the message names the problem."""


@dataclass
class InputSpec:
    name: str
    shape: list  # ints, None for a dynamic dimension; None for the whole shape if unknown
    dtype: str  # numpy dtype name


def runtime_for(path, override=None):
    if override:
        if override not in RUNTIMES:
            raise ModelError(f"unknown runtime {override!r} (choose from {', '.join(RUNTIMES)})")
        return override
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        known = ", ".join(sorted(EXTENSIONS))
        raise ModelError(f"{path}: unknown model extension {ext or '(none)'!r} (known: {known})")
    return EXTENSIONS[ext]


def as_nhwc(array, sample_shape):
    """NCHW samples transposed to NHWC when the model takes NHWC (a TFLite conversion of an ONNX
    model); any other array as it is. sample_shape: the model's shape of one sample, batch left out."""
    if getattr(array, "ndim", 0) == 4 and sample_shape and list(sample_shape) != list(array.shape[1:]) \
            and list(sample_shape) == [array.shape[i] for i in (2, 3, 1)]:
        return array.transpose(0, 2, 3, 1)
    return array


def first_line(exc):
    """An exception's first line (at most 200 characters), or its type's name when it says nothing."""
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def delegate_library(text):
    """'libarmnnDelegate.so:backends=CpuAcc;logging-severity=info' -> ('libarmnnDelegate.so',
    {'backends': 'CpuAcc', 'logging-severity': 'info'}); a ModelError when it names no .so file."""
    import re

    found = re.fullmatch(r"(?P<library>.+?\.so(?:\.\d+)*)(?::(?P<options>.*))?", text.strip())
    if not found:
        raise ModelError(f"DELEGATE={text}: none, xnnpack, reference, or a delegate library (.so) with options "
                         "as key=value;key=value after a colon")
    options = {}
    for item in filter(None, (part.strip() for part in (found.group("options") or "").split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ModelError(f"DELEGATE option {item!r}: write key=value pairs separated by ';'")
        options[key.strip()] = value.strip()
    return found.group("library"), options


def adapter(runtime):
    return importlib.import_module(f"{__name__}.{runtime}_adapter")


def parse_input_shapes(text):
    """'input:1x3x224x224,mask:1x128' -> {'input': [1, 3, 224, 224], 'mask': [1, 128]}."""
    shapes = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, dims = item.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.lower().split("x")]
            if any(d <= 0 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise ModelError(f"INPUT_SHAPES: cannot read {item!r}; expected name:1x3x224x224") from None
    return shapes


DYNAMIC_ADVICE = 224  # the size an error message proposes for a dynamic dimension (an image side)


def resolve_shapes(specs, batch, pinned, model):
    """Concrete shape per input: INPUT_SHAPES first, then batch for a dynamic first dim."""
    names = {spec.name for spec in specs}
    unknown = sorted(set(pinned) - names)
    if unknown:
        raise ModelError(
            f"{model}: INPUT_SHAPES names input {unknown[0]!r}, which the model does not have "
            f"(inputs: {', '.join(sorted(names))})")
    shapes = {}
    for spec in specs:
        if spec.name in pinned:
            shape = list(pinned[spec.name])
            if batch != 1 and shape and shape[0] != batch:
                raise ModelError(f"{model}: BATCH={batch} conflicts with INPUT_SHAPES={spec.name}:"
                                 + "x".join(map(str, shape)) + f" (batch {shape[0]}); give the batch in one of them")
        elif spec.shape is None:
            raise ModelError(f"{model}: input {spec.name!r} has no recorded shape; "
                             f"set INPUT_SHAPES={spec.name}:1x3x224x224 (your shape)")
        else:
            shape = [d if isinstance(d, int) and d > 0 else None for d in spec.shape]
            if shape and shape[0] is None:
                shape[0] = batch
            elif shape and batch != 1 and shape[0] == 1:
                shape[0] = batch
            if any(d is None for d in shape):
                raise ModelError(
                    f"{model}: input {spec.name!r} has dynamic dimensions {spec.shape}; "
                    f"pin them with INPUT_SHAPES={spec.name}:" + "x".join(str(d or DYNAMIC_ADVICE) for d in shape)
                    + f" ({DYNAMIC_ADVICE} stands for each dynamic size; give yours)")
        shapes[spec.name] = shape
    return shapes


def make_inputs(specs, shapes, seed):
    """Seeded random inputs of the right dtype: floats in [0, 1), ints in a small range."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        shape = shapes[spec.name]
        if dtype.kind == "f":
            inputs[spec.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif dtype.kind == "b":
            inputs[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            low, high = max(info.min, -128 if dtype.kind == "i" else 0), min(info.max, 127)
            inputs[spec.name] = rng.integers(low, high + 1, shape).astype(dtype)
        else:
            raise ModelError(f"input {spec.name!r} has unsupported dtype {dtype}")
    return inputs
