"""The OpenVINO IR card: the `.xml`/`.bin` pair read by OpenVINO's own model reader, work counted
per node."""

import numpy as np

from profiler.cards.common import CardError, add_narrow, conv_class, empty_state, finish_card


OV_TRANSFORMER = {"Softmax": "softmax_elements", "SoftMax": "softmax_elements", "LogSoftmax": "softmax_elements",
                  "MVN": "norm_elements", "GroupNormalization": "norm_elements", "Gelu": "gelu_elements",
                  "Erf": "gelu_elements"}
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
    model = read_at_shape(ov, path, shapes, batch)
    state, params, compressed = empty_state(), 0, False
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
        cls, macs = op_work(op, kind, out_elems, state)
        state["macs_by_class"][cls] += macs
        if kind in OV_TRANSFORMER:
            state[OV_TRANSFORMER[kind]] += out_elems
    card = finish_card(state, params)
    ops = set(card["ops"])
    card["precision"] = "int8 static" if "FakeQuantize" in ops else "fp32"
    card["weights_fp16"] = compressed  # stored compressed; the CPU plugin computes in f32 all the same
    return card


def read_at_shape(ov, path, shapes, batch):
    """The IR read by OpenVINO, its dynamic inputs pinned (shapes, else the batch and 1s)."""
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
    return model


def op_work(op, kind, out_elems, state):
    """(class, MACs or elements) of one operator; narrow and attention work added to state."""
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
    return cls, macs


def _ov_constant(node, depth=4):
    """A Constant, or a Constant through a few weight-side ops (Convert, FakeQuantize, Multiply...)."""
    if node.get_type_name() == "Constant":
        return True
    return depth > 0 and node.get_input_size() > 0 and all(
        _ov_constant(node.input_value(i).get_node(), depth - 1) for i in range(node.get_input_size()))
