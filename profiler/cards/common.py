"""What every card reader shares: the operator classes, the counters a reader fills and the card
they become, the narrow-convolution rule and the card's error."""

from collections import Counter

import numpy as np

from profiler.schema import TRANSFORMER_COUNTS


CLASSES = ("conv_1x1", "conv_kxk", "depthwise", "grouped", "fc/matmul", "pool", "elementwise", "other")
MAC_CLASSES = ("conv_1x1", "conv_kxk", "depthwise", "grouped", "fc/matmul")


class CardError(Exception):
    pass


NARROW_CHANNELS = 32  # a convolution with at most this many output channels (per group) is narrow


def empty_state():
    return {"macs_by_class": {c: 0 for c in CLASSES}, "ops": Counter(), "activation_bytes": 0, "nodes": 0,
            "macs_narrow": 0, "macs_int": 0, "unresolved": [], **{k: 0 for k in TRANSFORMER_COUNTS}}


def finish_card(state, params):
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
