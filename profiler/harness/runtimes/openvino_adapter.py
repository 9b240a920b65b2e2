"""OpenVINO Runtime, CPU plugin: an IR (.xml with its .bin beside it) or, with --runtime openvino, an
ONNX file read by OpenVINO's own frontend.

Compiled for the cost of one request: the target's threads as the inference thread count, the
latency hint, one stream and f32 inference (the CPU plugin would choose bf16 on a host with AMX), as
`benchmark_app -hint none -nstreams 1 -nthreads N -nireq 1 -api sync -infer_precision f32` measures."""

import openvino as ov

from . import InputSpec, ModelError, first_line

PACKAGE = "openvino"

_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i8": "int8", "u8": "uint8", "i16": "int16",
           "i32": "int32", "i64": "int64", "boolean": "bool"}


def version():
    return ov.get_version().split("-")[0]


def load(path, threads):
    core = ov.Core()
    try:
        model = core.read_model(path)
        # f32 as the model's own precision: on a host with AMX the CPU plugin would pick bf16 itself
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": int(threads),
                                                     "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                                     "INFERENCE_PRECISION_HINT": "f32"})
    except Exception as exc:  # OpenVINO raises RuntimeError with several lines of its own
        raise ModelError(f"{path}: not a loadable OpenVINO model ({first_line(exc)})") from None
    return compiled


def describe(compiled):
    specs = []
    for port in compiled.inputs:
        element = port.get_element_type().get_type_name()
        if element not in _DTYPES:
            raise ModelError(f"input {port.get_any_name()!r} has unsupported type {element}")
        shape = port.get_partial_shape()
        dims = None if shape.rank.is_dynamic else [d.get_length() if d.is_static else None for d in shape]
        specs.append(InputSpec(port.get_any_name(), dims, _DTYPES[element]))
    return specs


def runner(compiled, inputs):
    request = compiled.create_infer_request()
    for name, array in inputs.items():
        request.set_tensor(name, ov.Tensor(array))  # kept in the request: a run is infer() alone
    return request.infer


def outputs(compiled, inputs):
    """The model's outputs for these inputs, as numpy arrays (evaluation on --data)."""
    request = compiled.create_infer_request()
    results = request.infer({name: array for name, array in inputs.items()})
    return [results[port] for port in compiled.outputs]
