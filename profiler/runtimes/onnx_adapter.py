"""ONNX Runtime, CPU execution provider."""

import onnxruntime as ort

from . import InputSpec, ModelError

PACKAGE = "onnxruntime"

_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
}


def version():
    return ort.__version__


def load(path, threads, profile_path=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if profile_path:
        options.enable_profiling = True
        options.profile_file_prefix = profile_path
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        raise ModelError(f"{path}: not a loadable ONNX model ({_first_line(exc)})") from None


def describe(session):
    specs = []
    for node in session.get_inputs():
        if node.type not in _DTYPES:
            raise ModelError(f"input {node.name!r} has unsupported type {node.type}")
        shape = [d if isinstance(d, int) else None for d in node.shape]
        specs.append(InputSpec(node.name, shape, _DTYPES[node.type]))
    return specs


def runner(session, inputs):
    run, feeds = session.run, dict(inputs)
    return lambda: run(None, feeds)


def _first_line(exc):
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
