"""LiteRT (ai-edge-litert), falling back to the older tflite_runtime package."""

from . import InputSpec, ModelError

try:
    from ai_edge_litert import interpreter as _interpreter

    PACKAGE = "ai-edge-litert"
except ImportError:  # devices that still ship the older package
    from tflite_runtime import interpreter as _interpreter

    PACKAGE = "tflite-runtime"


def version():
    from importlib.metadata import version as dist_version

    try:
        return dist_version(PACKAGE)
    except Exception:
        return getattr(_interpreter, "__version__", "unknown")


def load(path, threads):
    try:
        interp = _interpreter.Interpreter(model_path=path, num_threads=threads)
        interp.allocate_tensors()
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a loadable TFLite model ({message})") from None
    return interp


def describe(interp):
    specs = []
    for detail in interp.get_input_details():
        signature = detail.get("shape_signature")
        shape = list(signature if signature is not None and len(signature) else detail["shape"])
        specs.append(InputSpec(detail["name"], [int(d) if d > 0 else None for d in shape],
                               detail["dtype"].__name__))
    return specs


def runner(interp, inputs):
    details = {d["name"]: d for d in interp.get_input_details()}
    resized = False
    for name, array in inputs.items():
        if list(details[name]["shape"]) != list(array.shape):
            interp.resize_tensor_input(details[name]["index"], list(array.shape))
            resized = True
    if resized:
        interp.allocate_tensors()
    for name, array in inputs.items():
        interp.set_tensor(details[name]["index"], array)
    # Inputs stay in the interpreter's buffers, so a run is invoke() alone.
    return interp.invoke


def outputs(interp, inputs):
    """The model's outputs for these inputs, as float arrays: float inputs are quantized with the
    input tensor's own scale and zero point, quantized outputs dequantized with theirs."""
    import numpy as np

    details = {d["name"]: d for d in interp.get_input_details()}
    for name, array in inputs.items():
        detail = details[name]
        scale, zero = detail.get("quantization") or (0.0, 0)
        if np.dtype(detail["dtype"]).kind in "iu" and np.asarray(array).dtype.kind == "f" and scale:
            info = np.iinfo(detail["dtype"])
            array = np.clip(np.round(array / scale + zero), info.min, info.max)
        interp.set_tensor(detail["index"], np.asarray(array, dtype=detail["dtype"]))
    interp.invoke()
    found = []
    for detail in interp.get_output_details():
        value = interp.get_tensor(detail["index"])
        scale, zero = detail.get("quantization") or (0.0, 0)
        found.append((value.astype(np.float32) - zero) * scale if value.dtype.kind in "iu" and scale else value)
    return found
