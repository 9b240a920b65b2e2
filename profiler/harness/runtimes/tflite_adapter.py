"""LiteRT (ai-edge-litert), falling back to the older tflite_runtime package."""

from . import InputSpec, ModelError, delegate_library, first_line

try:
    from ai_edge_litert import interpreter

    PACKAGE = "ai-edge-litert"
except ImportError:  # devices that still ship the older package
    from tflite_runtime import interpreter

    PACKAGE = "tflite-runtime"


def version():
    from importlib.metadata import version as dist_version

    try:
        return dist_version(PACKAGE)
    except Exception:
        return getattr(interpreter, "__version__", "unknown")


EDGETPU_OP = b"edgetpu-custom-op"


def load(path, threads, delegate=None):
    """delegate: None or 'xnnpack' (the runtime's default, XNNPACK), 'none' (the builtin kernels, no
    delegate), 'reference' (the reference kernels), or a delegate library path with its options
    ('libarmnnDelegate.so:backends=CpuAcc;logging-severity=info', 'libedgetpu.so.1'), loaded with
    the runtime's own load_delegate. A model the default delegate cannot prepare runs on the builtin
    kernels, and info() says so."""
    resolver = {None: interpreter.OpResolverType.AUTO, "xnnpack": interpreter.OpResolverType.AUTO,
                "none": interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                "reference": interpreter.OpResolverType.BUILTIN_REF}
    delegates, fallback = [], None
    if delegate not in resolver:
        library, options = delegate_library(delegate)
        try:
            delegates = [interpreter.load_delegate(library, options)]
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"DELEGATE={delegate}: the delegate library cannot be loaded here "
                             f"({' '.join(str(exc).split())[:160]})") from None
    kind = resolver.get(delegate, interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    try:
        interp = _make(path, threads, kind, delegates)
    except Exception as exc:
        message = first_line(exc)
        if _edgetpu(path) and not delegates:
            raise ModelError(f"{path}: an Edge TPU model (compiled for the accelerator); measure it on the device "
                             "with --on and DELEGATE=libedgetpu.so.1") from None
        if delegate in (None, "xnnpack") and ("XNNPACK" in message or "Delegate" in message):
            # the phones run such a file; the builtin kernels run it here, and the record says so
            fallback = message
            try:
                interp = _make(path, threads, resolver["none"], [])
            except Exception as again:
                raise ModelError(f"{path}: not a loadable TFLite model ({first_line(again)})") from None
        else:
            raise ModelError(f"{path}: not a loadable TFLite model ({message})") from None
    interp._edge_profiler_setup = {"delegate_asked": delegate or "xnnpack", "xnnpack_failed": fallback}
    return interp


def _make(path, threads, kind, delegates):
    interp = interpreter.Interpreter(model_path=path, num_threads=threads, experimental_delegates=delegates or None,
                                      experimental_op_resolver_type=kind)
    interp.allocate_tensors()
    return interp


def _edgetpu(path):
    try:
        with open(path, "rb") as f:
            return EDGETPU_OP in f.read()
    except OSError:
        return False


def delegated_nodes(interp):
    """(nodes of the model, nodes a delegate took, delegate kernels): a node is taken when no tensor
    that the run needs is its output unless a delegate kernel produces that tensor instead."""
    ops = interp._get_ops_details()
    kernels = [op for op in ops if op["op_name"] == "DELEGATE"]
    nodes = [op for op in ops if op["op_name"] != "DELEGATE"]
    if not kernels:
        return len(nodes), 0, 0
    by_delegate = {int(t) for op in kernels for t in op["outputs"]}
    producer = {int(t): op for op in nodes for t in op["outputs"]}
    needed = [int(d["index"]) for d in interp.get_output_details()] + [int(t) for op in kernels for t in op["inputs"]]
    executed, seen = set(), set()
    while needed:
        tensor = needed.pop()
        if tensor in seen or tensor in by_delegate or tensor not in producer:
            continue
        seen.add(tensor)
        op = producer[tensor]
        if op["index"] not in executed:
            executed.add(op["index"])
            needed += [int(t) for t in op["inputs"] if t >= 0]
    return len(nodes), len(nodes) - len(executed), len(kernels)


def info(interp):
    """What ran the model: the delegate and how many of the model's nodes it took."""
    setup = getattr(interp, "_edge_profiler_setup", {})
    total, taken, kernels = delegated_nodes(interp)
    asked = setup.get("delegate_asked", "xnnpack")
    name = ("xnnpack" if asked == "xnnpack" and kernels else "none" if asked == "xnnpack" else asked)
    found = {"delegate": name, "nodes": total, "delegated_nodes": taken, "delegate_kernels": kernels}
    if setup.get("xnnpack_failed"):
        found["fallback"] = f"XNNPACK could not prepare the model ({setup['xnnpack_failed']}); builtin kernels ran"
    return found


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
