"""ONNX Runtime, CPU execution provider."""

import onnxruntime as ort

from . import InputSpec, ModelError, first_line

PACKAGE = "onnxruntime"

_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
}


def version():
    return ort.__version__


def load(path, threads, profile_path=None, providers=None):
    """providers: execution providers in order of preference (EXECUTION_PROVIDERS), default the CPU
    one; one that this onnxruntime build does not have is a ModelError, never a silent fallback."""
    providers = list(providers or ["CPUExecutionProvider"])
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise ModelError(f"EXECUTION_PROVIDERS: {', '.join(missing)} not available in this onnxruntime build "
                         f"(available: {', '.join(ort.get_available_providers())})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if profile_path:
        options.enable_profiling = True
        options.profile_file_prefix = profile_path
    try:
        return ort.InferenceSession(path, options, providers=providers)
    except Exception as exc:  # onnxruntime raises several private exception types
        raise ModelError(f"{path}: not a loadable ONNX model ({first_line(exc)})") from None


def info(session):
    """What ran the model: the execution providers the session really uses."""
    return {"providers": session.get_providers()}


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


def outputs(session, inputs):
    """The model's outputs for these inputs, as numpy arrays (evaluation on --data)."""
    return session.run(None, dict(inputs))


def op_times(path, threads, inputs, runs, classify):
    """Per-operator-class time (ms per inference) from onnxruntime's own profiler.

    A separate profiling session, so the timed loop is never slowed by it. classify(op_name,
    input_shapes) -> class name. 'overhead' is the run time not spent inside any node."""
    import json
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ort-profile-") as folder:
        session = load(path, threads, profile_path=os.path.join(folder, "ort"))
        run = runner(session, inputs)
        for _ in range(runs):
            run()
        with open(session.end_profiling()) as f:
            events = json.load(f)
    totals, model_us = {}, 0.0
    for event in events:
        if event.get("cat") != "Node" and event.get("name") == "model_run":
            model_us += event.get("dur", 0)
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        shapes = [list(s.values())[0] for s in args.get("input_type_shape", []) if s]
        cls = classify(args.get("op_name", ""), shapes)
        totals[cls] = totals.get(cls, 0.0) + event.get("dur", 0)
    # The first run after session creation is profiled too; divide by all runs profiled.
    per_run = {cls: us / 1000.0 / runs for cls, us in totals.items()}
    per_run["overhead"] = max(0.0, model_us / 1000.0 / runs - sum(per_run.values()))
    return {cls: round(ms, 6) for cls, ms in sorted(per_run.items())}
