"""The operator mix: which share of a model's MACs each class of kernel carries, what the
references cover, and which candidates lie outside it."""

MIX_CLASSES = ("conv_1x1", "conv_kxk", "depthwise", "grouped", "fc/matmul")
MIX_MIN_SHARE = 0.05  # a class under 5% of a model's MACs does not decide its latency


def operator_mix(record):
    """{class: share of the model's MACs} from its card, or None without a card."""
    by_class = ((record or {}).get("model_card") or {}).get("macs_by_class")
    if not by_class:
        return None
    total = sum(float(by_class.get(c, 0)) for c in MIX_CLASSES)
    return {c: float(by_class.get(c, 0)) / total for c in MIX_CLASSES} if total > 0 else None


def reference_mix(names, records):
    """What the references cover: each class's largest share and the reference that has it."""
    cover = {}
    for name, record in zip(names, records):
        for cls, share in (operator_mix(record) or {}).items():
            if share > cover.get(cls, {"share": -1})["share"]:
                cover[cls] = {"share": share, "model": name}
    return cover


def outside_mix(fit, record):
    """The operator classes that carry this model (≥ 5% of its MACs) at more than twice the share
    of any reference: its latency there is extrapolated from kernels the fit saw too little of."""
    mix, cover = operator_mix(record), fit.get("mix")
    if not mix or not cover:
        return []
    return [cls for cls, share in mix.items()
            if share >= MIX_MIN_SHARE and share > 2 * cover.get(cls, {"share": 0.0})["share"]]
