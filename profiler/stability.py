"""Which measurements to take again, and which of several attempts to keep.

A record flagged `unstable` or `disturbed` (profiler.harness.measurement_flags) is measured again,
with the other such models of the run in one batch, at most REMEASURE times; the steadiest attempt
(the narrowest confidence interval of its median) is kept, marked `remeasured`, with every
attempt's summary in `attempts`. The store never serves such a record as if it were steady.
"""

REMEASURE = 2  # further attempts at most, per flagged model
SHAKY = ("unstable", "disturbed")


def shaky(record):
    """True if the record's figures carry a flag that another measurement could clear."""
    return record.get("status") == "ok" and any(flag in SHAKY for flag in record.get("flags") or [])


def spread(record):
    """How uncertain the median is: its 95% interval over the median, or the IQR share for older records."""
    stats = record.get("latency_ms") or {}
    if stats.get("ci_rel") is not None:
        return stats["ci_rel"] + (1.0 if "disturbed" in (record.get("flags") or []) else 0.0)
    return stats["iqr"] / stats["median"] if stats.get("median") else float("inf")


def summary(record):
    """One attempt, as the record's `attempts` list keeps it."""
    stats = record.get("latency_ms") or {}
    return {"started_at": record.get("started_at"), "median": stats.get("median"), "iqr": stats.get("iqr"),
            "ci_rel": stats.get("ci_rel"), "flags": list(record.get("flags") or []),
            "disturbed_runs": (record.get("disturbance") or {}).get("runs")}


def steadier(first, again, attempt):
    """The record to keep of two attempts at one model; the kept one lists both in `attempts`."""
    attempts = first.get("attempts") or [summary(first)]
    keep = again if again.get("status") == "ok" and spread(again) < spread(first) else first
    keep = dict(keep, attempts=attempts + [summary(again)], remeasured=attempt)
    flags = [f for f in keep.get("flags") or [] if f != "remeasured"]
    keep["flags"] = flags + ["remeasured"]
    return keep


def remeasure(records, measure, retries=REMEASURE):
    """Measure the shaky records again until they are steady or retries are spent.

    records: {key: record}; measure(paths_by_runtime, on_result) measures again and calls on_result
    per model. Returns {key: kept record} for the keys whose record changed, and the count made."""
    changed, made = {}, 0
    by_path = {}
    for attempt in range(1, retries + 1):
        todo = {key: record for key, record in records.items() if shaky(record)}
        if not todo:
            break
        groups = {}
        for key, record in todo.items():
            groups.setdefault(record["runtime"], []).append(record["path"])
            by_path[(record["runtime"], record["path"])] = key
        fresh = []
        measure(groups, fresh.append)
        made += len(todo)
        for record in fresh:
            key = by_path.get((record.get("runtime"), record.get("path")))
            if key is None or key not in todo:
                continue
            records[key] = changed[key] = steadier(records[key], record, attempt)
    return changed, made
