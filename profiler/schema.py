"""JSON Schemas of what the host side reads back (result records from the store, a `--json` export
or the API; calibration files) and one-line messages naming the field that does not fit.

Checked with jsonschema, extended by one keyword: `finite`, since JSON Schema's numbers admit NaN
and infinities, which no figure here may be."""

import math

NUMBER = {"type": "number", "finite": True}
POSITIVE = {"type": "number", "finite": True, "exclusiveMinimum": 0}
NON_NEGATIVE = {"type": "number", "finite": True, "minimum": 0}


def nullable(schema):
    """The schema, or null (keywords of other types ignore a null, as JSON Schema defines)."""
    return dict(schema, type=["null", schema["type"]])


LATENCY = {"type": "object", "required": ["median"],
           "properties": {"median": POSITIVE,
                          **{key: nullable(NON_NEGATIVE) for key in
                             ("mean", "std", "min", "max", "p90", "p95", "p99", "iqr", "ci_low", "ci_high",
                              "ci_rel")}}}

# The card's transformer work (profiler.analysis counts it): attention's activation-by-activation MACs
# (part of fc/matmul), and the softmax, normalisation and GELU elements.
TRANSFORMER_COUNTS = ("macs_attention", "softmax_elements", "norm_elements", "gelu_elements")

CARD = {"type": "object",
        "properties": {"size_mb": nullable(NON_NEGATIVE), "params": nullable(NON_NEGATIVE),
                       "macs": nullable(NON_NEGATIVE), "macs_int": nullable(NON_NEGATIVE),
                       "macs_float": nullable(NON_NEGATIVE), "macs_narrow": nullable(NON_NEGATIVE),
                       **{key: nullable(NON_NEGATIVE) for key in TRANSFORMER_COUNTS},
                       "nodes": nullable(NON_NEGATIVE), "activation_bytes": nullable(NON_NEGATIVE),
                       "macs_by_class": nullable({"type": "object", "additionalProperties": NON_NEGATIVE}),
                       "ops": nullable({"type": "object", "additionalProperties": NON_NEGATIVE}),
                       "precision": nullable({"type": "string"})}}

# What a successful result record must hold for the host side to read its figures; other fields
# may grow (DESIGN.md: field names keep their meaning).
RECORD = {
    "type": "object",
    "required": ["model", "status"],
    "properties": {
        "model": {"type": "string"},
        "path": nullable({"type": "string"}),
        "sha256": nullable({"type": "string"}),
        "runtime": nullable({"type": "string"}),
        "precision": nullable({"type": "string"}),
        "status": {"enum": ["ok", "oom", "timeout", "error"]},
        "threads": nullable({"type": "integer", "minimum": 1}),
        "target": nullable({"type": "object", "properties": {
            "name": nullable({"type": "string"}), "threads": nullable({"type": "integer", "minimum": 1}),
            "cpus": nullable(POSITIVE), "memory_mb": nullable(POSITIVE)}}),
        "latency_ms": nullable(LATENCY),
        "peak_memory_mb": nullable(NON_NEGATIVE),
        "load_ms": nullable(NON_NEGATIVE),
        "model_card": nullable(CARD),
        "flags": nullable({"type": "array", "items": {"type": "string"}}),
    },
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {"required": ["latency_ms"], "properties": {"latency_ms": LATENCY}},
}


def _validator_class():
    from jsonschema import Draft202012Validator, ValidationError, validators

    def finite(validator, wanted, instance, schema):
        if wanted and isinstance(instance, float) and not math.isfinite(instance):
            yield ValidationError(f"{instance!r} is not a finite number")

    return validators.extend(Draft202012Validator, {"finite": finite})


_VALIDATORS = {}


def problem(schema, instance):
    """One line naming the first field of `instance` that does not fit `schema`, or None."""
    from jsonschema.exceptions import best_match

    if id(schema) not in _VALIDATORS:  # one validator per schema (module-level constants)
        _VALIDATORS[id(schema)] = _validator_class()(schema)
    error = best_match(_VALIDATORS[id(schema)].iter_errors(instance))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    message = error.message if len(error.message) <= 120 else error.message[:117] + "..."
    return f"{where or 'the top level'}: {message}"


def record_problem(record):
    """What makes a result record unreadable (one line naming the field), or None."""
    return problem(RECORD, record)
