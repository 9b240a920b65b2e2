"""A calibration file (`calibrate --out`, `Calibration.save`): its JSON Schema, checked whole on load
so that an edited or truncated file is one line naming its field, never a KeyError later; its version,
with the steps that upgrade an older file; writing and reading it."""

import json
import os

from calibration.errors import CalibrationError
from profiler.schema import NON_NEGATIVE, NUMBER, POSITIVE, nullable, problem

SCHEMA = "edge-profiler/calibration"
SCHEMA_VERSION = 1  # 1: first version (linear, feature and relative fits per metric and thread count)
# {version: the step that makes a body of that version into one of the next}; a file of an older
# version is upgraded step by step on load (none yet: version 1 is the only one written so far)
UPGRADES = {}

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


def upgraded(data, where):
    """A calibration body of any version this edge-profiler knows, brought to SCHEMA_VERSION."""
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CalibrationError(f"{where}: calibration schema version {version!r} is not a whole number of at least 1; "
                               "refit with `calibrate`")
    if version > SCHEMA_VERSION:
        raise CalibrationError(f"{where}: calibration schema version {version} is not supported: a newer "
                               f"edge-profiler wrote it (this one reads versions 1 to {SCHEMA_VERSION}, older ones "
                               "upgraded); upgrade edge-profiler or refit with `calibrate`")
    while version < SCHEMA_VERSION:
        if version not in UPGRADES:
            raise CalibrationError(f"{where}: calibration schema version {version} cannot be upgraded; refit with "
                                   "`calibrate`")
        data, version = UPGRADES[version](dict(data)), version + 1
        data["version"] = version
    return data


def write(body, path):
    """Write a calibration body (atomically)."""
    from profiler.export import write_json

    write_json(path, body)


def read(path):
    """The checked calibration body in `path`, upgraded to this version."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise CalibrationError(f"{path}: not a regular file (a calibration is a JSON file)")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CalibrationError(f"{path}: calibration file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: not a calibration JSON ({exc})") from None
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read the calibration ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise CalibrationError(f"{path}: not an edge-profiler calibration (schema {data.get('schema') if isinstance(data, dict) else None!r})")
    data = upgraded(data, path)
    found = calibration_problem(data)
    if found:
        raise CalibrationError(f"{path}: not a usable calibration ({found}); refit with `calibrate`")
    return data
