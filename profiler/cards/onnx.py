"""The ONNX card: shapes by ONNX shape inference (and one run where only the runtime knows them),
work counted per node."""

from collections import Counter

import numpy as np

from profiler.cards.common import CardError, MAC_CLASSES, add_narrow, conv_class, empty_state, finish_card


ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Relu", "Relu6", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
               "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu", "Erf", "Sqrt", "Pow", "Exp", "Log", "Neg", "Abs", "Max",
               "Min", "Sum", "Mean", "BatchNormalization", "InstanceNormalization", "Dropout", "Softplus", "Mish",
               "Swish", "Where", "Not", "And", "Or", "Equal", "Less", "Greater", "Cast"}
POOLS = {"AveragePool", "MaxPool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
NO_WORK = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "Constant", "ConstantOfShape", "Size"}
ONNX_TRANSFORMER = {"Softmax": "softmax_elements", "LogSoftmax": "softmax_elements",
                    "LayerNormalization": "norm_elements", "GroupNormalization": "norm_elements",
                    "InstanceNormalization": "norm_elements", "SimplifiedLayerNormalization": "norm_elements",
                    "Gelu": "gelu_elements", "FastGelu": "gelu_elements", "BiasGelu": "gelu_elements",
                    "Erf": "gelu_elements"}  # an exact GELU below opset 20 is x·½(1 + erf(x/√2)): one Erf


def onnx_card(path, shapes, batch=1):
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise CardError(f"{path}: not an ONNX model ({str(exc).splitlines()[0][:120]})") from None
    return onnx_card_from_model(model, shapes, batch)


def onnx_shapes(model, shapes, batch=1):
    """{tensor name: (dims, element type)} of every tensor: the inputs pinned (INPUT_SHAPES, else the
    batch for a dynamic first dim), then ONNX shape inference, then one run for what only the runtime
    knows; initializers as stored."""
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
    return known


def onnx_card_from_model(model, shapes, batch=1):
    import onnx

    graph = model.graph
    known = onnx_shapes(model, shapes, batch)
    state = empty_state()
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
    card = finish_card(state, params)
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


ONNX_DYNAMIC_INT8 = {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"}
ONNX_STATIC_INT8 = {"QLinearConv", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear", "QGemm", "QLinearAdd"}
