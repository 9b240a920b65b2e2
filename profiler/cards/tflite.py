"""The TFLite card: tensors and operators read through the interpreter's details."""

import numpy as np

from profiler.cards.common import CardError, add_narrow, conv_class, empty_state, finish_card


TFLITE_CLASS = {"CONV_2D": "conv", "CONV_3D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "fc/matmul",
                "BATCH_MATMUL": "fc/matmul", "AVERAGE_POOL_2D": "pool", "MAX_POOL_2D": "pool", "MEAN": "pool",
                "ADD": "elementwise", "MUL": "elementwise", "SUB": "elementwise", "RELU": "elementwise",
                "RELU6": "elementwise", "LOGISTIC": "elementwise", "HARD_SWISH": "elementwise", "TANH": "elementwise",
                "QUANTIZE": "elementwise", "DEQUANTIZE": "elementwise", "RESHAPE": None, "SQUEEZE": None}
TFLITE_TRANSFORMER = {"SOFTMAX": "softmax_elements", "LOG_SOFTMAX": "softmax_elements", "GELU": "gelu_elements"}


def tflite_precision(weight_types, input_types, activation_types=()):
    """fp32, fp16, int8 dynamic (int8 weights, float activations) or int8 static (integer activations)."""
    if any(np.dtype(t).kind in "iu" for t in input_types) or any(np.dtype(t) in (np.int8, np.uint8, np.int16)
                                                                 for t in activation_types):
        return "int8 static"
    if any(np.dtype(t) in (np.int8, np.uint8) for t in weight_types):
        return "int8 dynamic"
    if any(np.dtype(t) == np.float16 for t in weight_types):
        return "fp16"
    return "fp32"


def tflite_card(path, shapes, batch=1):
    from profiler.harness.runtimes import tflite_adapter

    try:
        # Builtin kernels only: the card needs the graph, not XNNPACK (which would also log to stderr)
        resolver = getattr(tflite_adapter.interpreter, "OpResolverType", None)
        extra = {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if resolver else {}
        interp = tflite_adapter.interpreter.Interpreter(model_path=path, **extra)
        interp.allocate_tensors()
        ops = interp._get_ops_details()
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
    except Exception as exc:
        raise CardError(f"{path}: not a TFLite model ({str(exc).splitlines()[0][:120]})") from None
    produced = {int(o) for op in ops for o in op["outputs"]}
    # A grouped convolution converted from a framework without native groups is SPLIT -> one
    # CONV_2D per group -> CONCATENATION: a convolution fed by one part of a split is grouped work.
    split_parts = {int(o) for op in ops if op["op_name"] in ("SPLIT", "SPLIT_V") and len(op["outputs"]) > 1
                   for o in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    graph = {"produced": produced, "inputs": graph_inputs, "split_parts": split_parts}
    state, params, counted, weight_types, activation_types = empty_state(), 0, set(), set(), set()
    for op in ops:
        name = op["op_name"]
        if name == "DELEGATE":  # the runtime's delegate node wraps ops listed on their own
            continue
        state["ops"][name] += 1
        state["nodes"] += 1
        inputs = [tensors[i] for i in op["inputs"] if i >= 0]
        outputs = [tensors[i] for i in op["outputs"] if i >= 0]
        for tensor in inputs:
            index = tensor["index"]
            if index not in produced and index not in graph_inputs and index not in counted:
                counted.add(index)
                weight_types.add(tensor["dtype"])
                if tensor["dtype"] in (np.float32, np.float16, np.int8, np.uint8) and len(tensor["shape"]):
                    params += int(np.prod(tensor["shape"]))
        out_shape = [int(d) for d in outputs[0]["shape"]] if outputs else None
        out_elems = int(np.prod(out_shape)) if out_shape else 0
        for tensor in outputs:
            state["activation_bytes"] += int(np.prod(tensor["shape"])) * np.dtype(tensor["dtype"]).itemsize
            if name not in ("QUANTIZE", "DEQUANTIZE"):
                activation_types.add(tensor["dtype"])
        op_work(name, inputs, out_elems, state, graph)
        if name in TFLITE_TRANSFORMER:
            state[TFLITE_TRANSFORMER[name]] += out_elems
    state["norm_elements"] += _tflite_norm_elements(ops, tensors)
    card = finish_card(state, params)
    card["precision"] = tflite_precision(weight_types, [d["dtype"] for d in interp.get_input_details()],
                                         activation_types)
    return card


def op_work(name, inputs, out_elems, state, graph):
    """One operator's work added to state by class (with its integer, narrow and attention parts).
    graph: the tensors other operators produce ("produced"), the graph's inputs ("inputs") and the
    parts of SPLIT outputs ("split_parts": a convolution fed by one is grouped work)."""
    kind = TFLITE_CLASS.get(name, "other")
    if kind == "conv":
        weight = [int(d) for d in inputs[1]["shape"]]  # [O, kh, kw, I] (3D: [kd, kh, kw, I, O])
        if name == "CONV_3D":
            kernel, per_out = weight[:3], weight[3]
            in_channels = int(inputs[0]["shape"][-1])
        else:
            kernel, per_out = weight[1:3], weight[3]
            in_channels = int(inputs[0]["shape"][-1])
        groups = max(1, in_channels // per_out)
        cls = "grouped" if inputs[0]["index"] in graph["split_parts"] else conv_class(kernel, groups, in_channels)
        macs = out_elems * per_out * int(np.prod(kernel))
        state["macs_by_class"][cls] += macs
        state["macs_int"] += macs if _int_weights(inputs) else 0
        if name != "CONV_3D":
            add_narrow(state, cls, weight[0] // groups, macs)
    elif kind == "depthwise":
        weight = [int(d) for d in inputs[1]["shape"]]  # [1, kh, kw, C*multiplier]
        macs = out_elems * int(np.prod(weight[1:3]))
        state["macs_by_class"]["depthwise"] += macs
        state["macs_int"] += macs if _int_weights(inputs) else 0
    elif kind == "fc/matmul":
        k = int(inputs[1]["shape"][-1] if name == "FULLY_CONNECTED" else inputs[0]["shape"][-1])
        state["macs_by_class"]["fc/matmul"] += out_elems * k
        state["macs_int"] += out_elems * k if _int_weights(inputs) else 0
        if all(t["index"] in graph["produced"] or t["index"] in graph["inputs"] for t in inputs[:2]):
            state["macs_attention"] += out_elems * k
    elif kind == "pool":
        source = int(np.prod(inputs[0]["shape"]))
        # The window is not exposed by the interpreter; input/output spatial ratio bounds it (exact for global).
        state["macs_by_class"]["pool"] += max(source, out_elems)
    elif kind == "elementwise":
        state["macs_by_class"]["elementwise"] += out_elems
    elif kind is not None:
        state["macs_by_class"]["other"] += out_elems


def _tflite_norm_elements(ops, tensors):
    """Normalised elements of a TFLite graph: converters spell layer normalisation out (MEAN,
    SQUARED_DIFFERENCE or SUB and MUL, RSQRT); each normalisation takes one RSQRT of its statistics,
    which is then broadcast over the elements it normalises (the MUL that takes the RSQRT's output)."""
    rsqrt = {int(op["outputs"][0]) for op in ops if op["op_name"] == "RSQRT"}
    total = 0
    for op in ops:
        if op["op_name"] == "MUL" and rsqrt & {int(i) for i in op["inputs"]}:
            total += int(np.prod(tensors[int(op["outputs"][0])]["shape"]))
    return total


def _int_weights(inputs):
    """An int8 kernel: int8 weights (full-integer or dynamic-range), or int8 operands of a matmul."""
    return len(inputs) > 1 and inputs[1]["dtype"] in (np.int8, np.uint8)
