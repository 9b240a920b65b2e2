"""The JSON Schema of a calibration file (`calibrate --out`, `Calibration.save`): checked whole on
load, so that an edited or truncated file is one line naming its field, never a KeyError later."""

from profiler.schema import NON_NEGATIVE, NUMBER, POSITIVE, nullable, problem

STRING = {"type": "string"}
NAMES = {"type": "array", "items": STRING}

LINEAR = {"type": "object", "required": ["kind", "method", "coef", "intercept"],
          "properties": {"kind": {"const": "linear"}, "method": {"enum": ["ols", "robust", "loglinear"]},
                         # a device figure grows with the host's: a slope at or below zero maps nothing
                         "coef": {"type": "array", "minItems": 1, "maxItems": 1, "items": POSITIVE},
                         "intercept": NUMBER}}
FEATURES = {"type": "object", "required": ["kind", "features", "coef", "intercept", "selected"],
            "properties": {"kind": {"const": "features"}, "features": NAMES, "selected": NAMES,
                           "coef": {"type": "array", "items": NON_NEGATIVE}, "intercept": NUMBER}}
RELATIVE = {"type": "object", "required": ["kind", "features", "coef", "ridge", "selected"],
            "properties": {"kind": {"const": "relative"}, "features": NAMES, "selected": NAMES,
                           "coef": {"type": "array", "items": NON_NEGATIVE}, "ridge": NON_NEGATIVE}}

INTERVAL = {"type": "object", "required": ["space", "s", "t"],
            "properties": {"space": {"enum": ["linear", "log", "relative"]}, "s": NON_NEGATIVE, "t": POSITIVE,
                           "n": {"type": "integer", "minimum": 3}, "x_mean": NUMBER, "sxx": POSITIVE},
            "if": {"properties": {"space": {"enum": ["linear", "log"]}}},
            "then": {"required": ["n", "x_mean", "sxx"]}}

REFERENCE = {"type": "object", "required": ["model", "host", "device"],
             "properties": {"model": STRING, "host": POSITIVE, "device": POSITIVE, "fitted": NUMBER,
                            "loo": NUMBER}}

FIT = {
    "type": "object",
    "required": ["metric", "threads", "method", "model", "host_range", "n"],
    "properties": {
        "metric": STRING, "host_metric": STRING, "threads": {"type": "integer", "minimum": 1},
        "host_threads": {"type": "integer", "minimum": 1},
        "n": {"type": "integer", "minimum": 2},
        "method": {"enum": ["ols", "robust", "loglinear", "features", "relative"]},
        "model": {"type": "object", "required": ["kind"],
                  "properties": {"kind": {"enum": ["linear", "features", "relative"]}},
                  "allOf": [{"if": {"properties": {"kind": {"const": kind}}}, "then": schema}
                            for kind, schema in (("linear", LINEAR), ("features", FEATURES),
                                                 ("relative", RELATIVE))]},
        "host_range": {"type": "array", "minItems": 2, "maxItems": 2, "items": POSITIVE},
        "precision": nullable(STRING),
        "a": nullable(NUMBER), "b": nullable(NUMBER),
        "interval": nullable(INTERVAL),
        "references": {"type": "array", "items": REFERENCE},
        "mix": nullable({"type": "object", "additionalProperties": {
            "type": "object", "required": ["share"],
            "properties": {"share": {"type": "number", "finite": True, "minimum": 0, "maximum": 1},
                           "model": STRING}}}),
    },
}

CALIBRATION = {
    "type": "object",
    "required": ["schema", "version", "fits"],
    "properties": {
        "schema": {"const": "edge-profiler/calibration"},
        "version": {"type": "integer"},
        "runtime": nullable(STRING),
        "precision": nullable(STRING),
        "precisions": {"type": "array", "items": STRING},
        "per_precision": {"type": "boolean"},
        "method": nullable(STRING),
        "device_ram_mb": nullable(POSITIVE),
        "target": nullable({"type": "object"}),
        "fits": {"type": "array", "minItems": 1, "items": FIT},
        "accelerator": nullable(STRING),
        "unmatched": {"type": "array"},
    },
}


def calibration_problem(data):
    """One line naming the first field of a calibration body that does not fit its schema, or None."""
    found = problem(CALIBRATION, data)
    if found:
        return found
    for i, fit in enumerate(data["fits"]):
        spec = fit["model"]
        if spec["kind"] != "linear" and (len(spec["features"]) != len(spec["coef"])
                                         or not set(spec["selected"]) <= set(spec["features"])):
            return f"fits[{i}].model: features and coefficients do not match"
        if fit["host_range"][0] > fit["host_range"][1]:
            return f"fits[{i}].host_range: low above high"
    return None
