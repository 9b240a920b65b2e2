"""Static model card: size, parameters, MACs by operator class, op histogram, activation bytes.

`macs` follows the published convention (convolutions plus fc/matmul); `macs_int` of them run
as integer arithmetic (int8 weights: QLinear/Integer ops, QDQ pairs, TFLite int8 kernels, dynamic-
range ones included), `macs_float` in floating point. `macs_attention` are the fc/matmul MACs of
products between two activations (attention's scores and its weighted values), apart from products
with weights; `softmax_elements`, `norm_elements` (layer, group and instance normalisation) and
`gelu_elements` count the outputs of those transformer operators. `macs_by_class`
also lists the work of pooling (output elements × window), elementwise ops (output
elements) and other ops. ONNX is read with shape inference; TFLite through the
interpreter's tensor and op details; TorchScript through an ONNX export at the profiled
input shape. Unknown op types are counted under `other` and never fail a card.
"""

import io
import os
from collections import Counter

import numpy as np

from profiler.harness.files import silenced
from profiler.schema import TRANSFORMER_COUNTS

CLASSES = ("conv_1x1", "conv_kxk", "depthwise", "grouped", "fc/matmul", "pool", "elementwise", "other")
MAC_CLASSES = ("conv_1x1", "conv_kxk", "depthwise", "grouped", "fc/matmul")

ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Relu", "Relu6", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
               "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu", "Erf", "Sqrt", "Pow", "Exp", "Log", "Neg", "Abs", "Max",
               "Min", "Sum", "Mean", "BatchNormalization", "InstanceNormalization", "Dropout", "Softplus", "Mish",
               "Swish", "Where", "Not", "And", "Or", "Equal", "Less", "Greater", "Cast"}
POOLS = {"AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
NO_WORK = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "ConstantOfShape", "Size"}

TFLITE_CLASS = {"CONV_2D": "conv", "CONV_3D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "fc/matmul",
                "BATCH_MATMUL": "fc/matmul", "AVERAGE_POOL_2D": "pool", "MAX_POOL_2D": "pool", "MEAN": "pool",
                "ADD": "elementwise", "MUL": "elementwise", "SUB": "elementwise", "RELU": "elementwise",
                "RELU6": "elementwise", "LOGISTIC": "elementwise", "HARD_SWISH": "elementwise", "TANH": "elementwise",
                "QUANTIZE": "elementwise", "DEQUANTIZE": "elementwise", "RESHAPE": None, "SQUEEZE": None}


class CardError(Exception):
    pass


def model_card(path, target=None, shapes=None):
    """The card of one model file; shapes (name -> dims) pin dynamic inputs."""
    from profiler.harness.runtimes import parse_input_shapes

    if shapes is None and target is not None and target.input_shapes:
        shapes = parse_input_shapes(target.input_shapes)
    batch = target.batch if target is not None else 1
    ext = os.path.splitext(path)[1].lower()
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: is empty (0 bytes), not a model")
    card = {"size_mb": round(os.path.getsize(path) / (1024 * 1024), 4)}
    reader = {".onnx": onnx_card, ".tflite": tflite_card, ".pt": torchscript_card, ".pth": torchscript_card,
              ".xml": openvino_card}.get(ext)
    if reader is None:
        return card
    card.update(reader(path, shapes or {}, batch))
    return card


NARROW_CHANNELS = 32  # a convolution with at most this many output channels (per group) is narrow


def _empty():
    return {"macs_by_class": {c: 0 for c in CLASSES}, "ops": Counter(), "activation_bytes": 0, "nodes": 0,
            "macs_narrow": 0, "macs_int": 0, "unresolved": [], **{k: 0 for k in TRANSFORMER_COUNTS}}


ONNX_TRANSFORMER = {"Softmax": "softmax_elements", "LogSoftmax": "softmax_elements",
                    "LayerNormalization": "norm_elements", "GroupNormalization": "norm_elements",
                    "InstanceNormalization": "norm_elements", "SimplifiedLayerNormalization": "norm_elements",
                    "Gelu": "gelu_elements", "FastGelu": "gelu_elements", "BiasGelu": "gelu_elements",
                    "Erf": "gelu_elements"}  # an exact GELU below opset 20 is x·½(1 + erf(x/√2)): one Erf
TFLITE_TRANSFORMER = {"SOFTMAX": "softmax_elements", "LOG_SOFTMAX": "softmax_elements", "GELU": "gelu_elements"}
OV_TRANSFORMER = {"Softmax": "softmax_elements", "SoftMax": "softmax_elements", "LogSoftmax": "softmax_elements",
                  "MVN": "norm_elements", "GroupNormalization": "norm_elements", "Gelu": "gelu_elements",
                  "Erf": "gelu_elements"}


def _finish(state, params):
    by_class = {k: int(v) for k, v in state["macs_by_class"].items()}
    macs = int(sum(by_class[c] for c in MAC_CLASSES))
    return {"params": int(params), "macs": macs, "macs_int": int(state["macs_int"]),
            "macs_float": macs - int(state["macs_int"]), "macs_by_class": by_class,
            "macs_narrow": int(state["macs_narrow"]), "nodes": state["nodes"],
            **{k: int(state[k]) for k in TRANSFORMER_COUNTS},
            "activation_bytes": int(state["activation_bytes"]), "ops": dict(state["ops"].most_common())}


def add_narrow(state, cls, out_per_group, macs):
    """Narrow convolutions run slower per MAC on phone CPUs than wide ones (their kernels fill the
    vector units less), so their MACs are counted apart (depthwise ones have a class of their own)."""
    if cls in ("conv_1x1", "conv_kxk", "grouped") and out_per_group <= NARROW_CHANNELS:
        state["macs_narrow"] += macs


def conv_class(kernel, groups, in_channels):
    if groups == 1:
        return "conv_1x1" if int(np.prod(kernel)) == 1 else "conv_kxk"
    return "depthwise" if groups == in_channels else "grouped"


# ---------------------------------------------------------------- ONNX

def onnx_card(path, shapes, batch=1):
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise CardError(f"{path}: not an ONNX model ({str(exc).splitlines()[0][:120]})") from None
    return onnx_card_from_model(model, shapes, batch)


def onnx_card_from_model(model, shapes, batch=1):
    import onnx
    from onnx import shape_inference

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    # Fix the input dims (INPUT_SHAPES, else the batch for a dynamic first dim) before inference.
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        pinned = shapes.get(value.name)
        for i, dim in enumerate(dims):
            if pinned and i < len(pinned):
                dim.dim_value = pinned[i]
            elif not dim.dim_value:
                dim.dim_value = batch if i == 0 else 1
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:
        inferred = model
    known, types, unresolved = {}, {}, []
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tensor = value.type.tensor_type
        types[value.name] = tensor.elem_type
        if tensor.HasField("shape"):
            known[value.name] = ([d.dim_value for d in tensor.shape.dim], tensor.elem_type)
            if any(d.dim_value == 0 for d in tensor.shape.dim):
                unresolved.append(value.name)
    shapeless = [name for node in graph.node for name in node.output if name and name not in known
                 and name not in initializers]
    if unresolved or shapeless:  # shapes computed at run time (e.g. Reshape of a Shape): ask the runtime once
        known.update(_runtime_shapes(inferred, known, types))
    known = {name: ([d or 1 for d in dims], elem) for name, (dims, elem) in known.items()}
    for name, init in initializers.items():
        known[name] = (list(init.dims), init.data_type)

    state = _empty()
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                   onnx.TensorProto.BFLOAT16, onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    params = sum(int(np.prod(init.dims)) for init in graph.initializer if init.data_type in float_types
                 and len(init.dims) > 0)
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    constant = _onnx_constants(graph)
    for node in graph.node:
        state["ops"][node.op_type] += 1
        state["nodes"] += 1
        out_shape, out_type = known.get(node.output[0], (None, None)) if node.output else (None, None)
        out_elems = int(np.prod(out_shape)) if out_shape is not None else 0
        for output in node.output:
            if output in known:
                dims, elem = known[output]
                itemsize = onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize if elem else 4
                state["activation_bytes"] += int(np.prod(dims)) * itemsize
        cls, macs = _onnx_node_work(node, known, out_shape, out_elems)
        if cls is None:  # a weighted node whose shapes neither inference nor one run resolved
            state["unresolved"].append(node.op_type)
            continue
        state["macs_by_class"][cls] += macs
        if node.op_type in ONNX_TRANSFORMER:
            state[ONNX_TRANSFORMER[node.op_type]] += out_elems
        elif node.op_type in ("MatMul", "Einsum") and cls == "fc/matmul" and not any(
                name in constant for name in node.input[:2]):
            state["macs_attention"] += macs
        if cls in MAC_CLASSES and (node.op_type in ONNX_INTEGER_MACS or (
                node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(node.input) > 1
                and node.input[0] in dequantized and node.input[1] in dequantized)):
            state["macs_int"] += macs  # a QDQ pair around a float op runs as one integer kernel
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv") and known.get(node.input[
                3 if node.op_type == "QLinearConv" else 1], (None,))[0]:
            weight = known[node.input[3 if node.op_type == "QLinearConv" else 1]][0]  # [O, I/g, kh, kw]
            add_narrow(state, cls, weight[0] // max(1, _attr(node, "group", 1)), macs)
    card = _finish(state, params)
    if state["unresolved"]:
        # Counting them as 0 would show a wrong total; the card says it cannot count instead.
        card.update(macs=None, macs_int=None, macs_float=None, macs_by_class=None, macs_narrow=None,
                    macs_attention=None, macs_unresolved=dict(Counter(state["unresolved"])))
    card["precision"] = onnx_precision(set(card["ops"]), {init.data_type for init in graph.initializer})
    return card


def _onnx_constants(graph):
    """Tensors that do not depend on the graph's inputs: initializers, Constant outputs and whatever
    is computed from them alone (a weight's Transpose, a dequantized weight)."""
    constant = {init.name for init in graph.initializer}
    for node in graph.node:  # ONNX graphs are topologically sorted
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (inputs and all(name in constant for name in inputs)):
            constant.update(node.output)
    return constant


ONNX_INTEGER_MACS = {"ConvInteger", "QLinearConv", "MatMulInteger", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul"}
ONNX_DYNAMIC_INT8 = {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"}
ONNX_STATIC_INT8 = {"QLinearConv", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear", "QGemm", "QLinearAdd"}


def onnx_precision(ops, initializer_types):
    """fp32, fp16, int8 dynamic (activations quantized at run time) or int8 static (QDQ / QLinear)."""
    import onnx

    if ops & ONNX_DYNAMIC_INT8:
        return "int8 dynamic"
    if ops & ONNX_STATIC_INT8:
        return "int8 static"
    if onnx.TensorProto.FLOAT16 in initializer_types:
        return "fp16"
    return "fp32"


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


def _runtime_shapes(model, known, types=None):
    """Run the model once on zeros (at the pinned input shapes) with every node output whose element
    type inference gave exposed, and read the real shapes."""
    import onnx
    import onnxruntime as ort

    types = dict(types or {}, **{name: elem for name, (_, elem) in known.items() if elem})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in outputs and types.get(name):
                probe.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
                outputs.add(name)
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {}
        for value in session.get_inputs():
            dims, elem = known.get(value.name, ([], 1))
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32
            feeds[value.name] = np.zeros([d or 1 for d in dims], dtype)
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, feeds)
    except Exception:  # the card falls back to the statically known shapes
        return {}
    return {name: (list(value.shape), types.get(name, 1)) for name, value in zip(names, results)
            if hasattr(value, "shape")}


def _attr(node, name, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _onnx_node_work(node, known, out_shape, out_elems):
    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
        weight_index = 3 if op == "QLinearConv" else 1
        weight = known.get(node.input[weight_index], (None,))[0]
        if weight is None or out_shape is None:
            return None, 0
        groups = _attr(node, "group", 1)
        kernel = weight[2:]
        in_channels = weight[1] * groups
        if op == "ConvTranspose":
            return "conv_kxk", int(np.prod(known.get(node.input[0], ([0],))[0])) * weight[1] * int(np.prod(kernel))
        return conv_class(kernel, groups, in_channels), out_elems * weight[1] * int(np.prod(kernel))
    if op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        a = known.get(node.input[0], (None,))[0]
        if a is None or out_shape is None:
            return None, 0
        k = a[0] if op == "Gemm" and _attr(node, "transA", 0) else a[-1]
        return "fc/matmul", out_elems * k
    if op == "Einsum":  # a product written as an equation (CvT's attention): output × contracted sizes
        return _einsum_work(node, known, out_elems)
    if op in POOLS:
        if op.startswith("Global"):
            source = known.get(node.input[0], (None,))[0]
            return "pool", int(np.prod(source)) if source else 0
        return "pool", out_elems * int(np.prod(_attr(node, "kernel_shape", [1])))
    if op in ELEMENTWISE:
        return "elementwise", out_elems
    if op in NO_WORK:
        return "other", 0
    return "other", out_elems


def _einsum_work(node, known, out_elems):
    equation = _attr(node, "equation", b"")
    equation = equation.decode() if isinstance(equation, bytes) else str(equation)
    inputs, _, output = equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    shapes = [known.get(name, (None,))[0] for name in node.input]
    if not output or "." in equation or len(terms) != len(shapes) or any(s is None for s in shapes):
        return "other", out_elems
    sizes = {}
    for term, shape in zip(terms, shapes):
        if len(term) != len(shape):
            return "other", out_elems
        sizes.update(zip(term, shape))
    contracted = int(np.prod([sizes[letter] for letter in set("".join(terms)) - set(output)] or [1]))
    if len(terms) != 2 or contracted == 1:  # a transpose, a sum or an outer product: no multiply-accumulate
        return "other", out_elems
    return "fc/matmul", out_elems * contracted


# ---------------------------------------------------------------- OpenVINO IR

OV_ELEMENTWISE = {"Add", "Subtract", "Multiply", "Divide", "Relu", "Clamp", "Sigmoid", "HSigmoid", "HSwish", "Swish",
                  "Tanh", "Gelu", "Exp", "Power", "Sqrt", "Maximum", "Minimum", "PRelu", "Elu", "Mish", "SoftPlus"}
OV_POOLS = {"AvgPool", "MaxPool", "AdaptiveAvgPool", "AdaptiveMaxPool"}
OV_NO_WORK = {"Parameter", "Result", "Constant", "Reshape", "Squeeze", "Unsqueeze", "ShapeOf", "Convert", "Concat",
              "Transpose", "Gather", "StridedSlice"}


def openvino_card(path, shapes, batch=1):
    """The card of an OpenVINO IR at the profiled input shape, from OpenVINO's own graph: MACs of
    Convolution, GroupConvolution and MatMul by class, the op histogram, weights and activations.
    Without openvino on this host, a card that says it has no operator counts."""
    try:
        import openvino as ov
    except ImportError:
        return {"card_note": "no operator card: openvino is not installed on this host (pip install openvino)"}
    try:
        model = ov.Core().read_model(path)
        if model.is_dynamic():
            wanted = {}
            for port in model.inputs:
                pinned = shapes.get(port.get_any_name())
                dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
                wanted[port.get_any_name()] = pinned or [d if d is not None else (batch if i == 0 else 1)
                                                         for i, d in enumerate(dims)]
            model.reshape(wanted)
    except Exception as exc:
        raise CardError(f"{path}: not an OpenVINO model ({str(exc).strip().splitlines()[0][:120]})") from None
    state, params, compressed = _empty(), 0, False
    weights = {"f32", "f16", "bf16", "i8", "u8"}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Constant":
            element = op.get_output_element_type(0).get_type_name()
            shape = list(op.get_output_shape(0))
            if element in weights and len(shape) > 0 and int(np.prod(shape)) > 1:
                params += int(np.prod(shape))
                compressed |= element == "f16"
            continue
        if kind in ("Parameter", "Result"):
            continue
        state["ops"][kind] += 1
        state["nodes"] += 1
        out_shape = list(op.get_output_shape(0)) if op.get_output_size() and op.get_output_partial_shape(0).is_static \
            else None
        out_elems = int(np.prod(out_shape)) if out_shape is not None else 0
        for i in range(op.get_output_size()):
            if op.get_output_partial_shape(i).is_static:
                state["activation_bytes"] += int(np.prod(list(op.get_output_shape(i)))) * \
                    op.get_output_element_type(i).size
        if kind == "Convolution":
            weight = list(op.input(1).get_shape())  # [out, in, kh, kw]
            cls, macs = conv_class(weight[2:], 1, weight[1]), out_elems * weight[1] * int(np.prod(weight[2:]))
            add_narrow(state, cls, weight[0], macs)
        elif kind == "GroupConvolution":
            weight = list(op.input(1).get_shape())  # [groups, out/g, in/g, kh, kw]
            cls = conv_class(weight[3:], weight[0], weight[0] * weight[2])
            macs = out_elems * weight[2] * int(np.prod(weight[3:]))
            add_narrow(state, cls, weight[1], macs)
        elif kind == "MatMul":
            a = list(op.input(0).get_shape())
            transposed = op.get_attributes().get("transpose_a", False)
            cls, macs = "fc/matmul", out_elems * (a[-2] if transposed and len(a) > 1 else a[-1])
            if not any(_ov_constant(op.input_value(i).get_node()) for i in range(2)):
                state["macs_attention"] += macs
        elif kind == "ScaledDotProductAttention":  # OpenVINO's fused attention: scores, softmax, values
            q, k, v = (list(op.input(i).get_shape()) for i in range(3))
            rows = int(np.prod(q[:-1])) * k[-2]
            cls, macs = "fc/matmul", rows * (q[-1] + v[-1])
            state["macs_attention"] += macs
            state["softmax_elements"] += rows
        elif kind in OV_POOLS:
            cls, macs = "pool", int(np.prod(list(op.input(0).get_shape())))
        elif kind in OV_ELEMENTWISE:
            cls, macs = "elementwise", out_elems
        else:
            cls, macs = "other", 0 if kind in OV_NO_WORK else out_elems
        state["macs_by_class"][cls] += macs
        if kind in OV_TRANSFORMER:
            state[OV_TRANSFORMER[kind]] += out_elems
    card = _finish(state, params)
    ops = set(card["ops"])
    card["precision"] = "int8 static" if "FakeQuantize" in ops else "fp32"
    card["weights_fp16"] = compressed  # stored compressed; the CPU plugin computes in f32 all the same
    return card


def _ov_constant(node, depth=4):
    """A Constant, or a Constant through a few weight-side ops (Convert, FakeQuantize, Multiply...)."""
    if node.get_type_name() == "Constant":
        return True
    return depth > 0 and node.get_input_size() > 0 and all(
        _ov_constant(node.input_value(i).get_node(), depth - 1) for i in range(node.get_input_size()))


# ---------------------------------------------------------------- TFLite

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
    state, params, counted, weight_types, activation_types = _empty(), 0, set(), set(), set()
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
            cls = "grouped" if inputs[0]["index"] in split_parts else conv_class(kernel, groups, in_channels)
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
            if all(t["index"] in produced or t["index"] in graph_inputs for t in inputs[:2]):
                state["macs_attention"] += out_elems * k
        elif kind == "pool":
            source = int(np.prod(inputs[0]["shape"]))
            # The window is not exposed by the interpreter; input/output spatial ratio bounds it (exact for global).
            state["macs_by_class"]["pool"] += max(source, out_elems)
        elif kind == "elementwise":
            state["macs_by_class"]["elementwise"] += out_elems
        elif kind is not None:
            state["macs_by_class"]["other"] += out_elems
        if name in TFLITE_TRANSFORMER:
            state[TFLITE_TRANSFORMER[name]] += out_elems
    state["norm_elements"] += _tflite_norm_elements(ops, tensors)
    card = _finish(state, params)
    card["precision"] = tflite_precision(weight_types, [d["dtype"] for d in interp.get_input_details()],
                                         activation_types)
    return card


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


# ---------------------------------------------------------------- TorchScript

def torchscript_to_onnx(path, shapes, fold_constants=False,
                        why="no model card: the ONNX exporter that counts its operators failed"):
    """(ONNX bytes, the TorchScript module) of a TorchScript file exported at its input shapes (embedded
    in the file, or given: name -> dims); a CardError of one line when it cannot be exported."""
    import json
    import warnings

    import torch

    from profiler.harness.runtimes.torch_adapter import SHAPES_FILE

    extra = {SHAPES_FILE: ""}
    module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    stored = {s["name"]: s["shape"] for s in json.loads(extra[SHAPES_FILE])} if extra[SHAPES_FILE] else {}
    stored.update(shapes)
    if not stored:
        raise CardError(f"{path}: TorchScript has no input shapes; set INPUT_SHAPES")
    example = tuple(torch.rand(shape) for shape in stored.values())
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), silenced():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), example, buffer, dynamo=False, opset_version=17,
                              do_constant_folding=fold_constants, input_names=list(stored))
    except Exception as exc:  # the exporter cannot express every network; its IR dump is not for the user
        text = " ".join(str(exc).split())
        raise CardError(f"{path}: {why} ({text[:160]})") from None
    return buffer.getvalue(), module


def torchscript_card(path, shapes, batch=1):
    """Exported to ONNX at the profiled shape (the trace gives every op its shapes)."""
    import onnx

    data, module = torchscript_to_onnx(path, shapes)
    card = onnx_card_from_model(onnx.load_from_string(data), {}, batch)
    card["params"] = int(sum(p.numel() for p in module.parameters()))
    return card
