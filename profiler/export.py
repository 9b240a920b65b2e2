"""Exporters: one function per format, each writing atomically (temp file, then rename). Every
format carries the flags (unstable, disturbed, remeasured, extrapolated, outside_mix, bounded) and the
intervals; CSV cells that a spreadsheet would run as formulas are neutralised."""

import csv
import json
import math

from profiler.escape import csv_cell
from profiler.harness.files import write_atomic

CSV_COLUMNS = [
    "model", "path", "sha256", "format", "runtime", "runtime_version", "precision", "variant_of", "variant",
    "backend", "status", "error",
    "target_name", "cpus", "threads", "memory_mb", "enforced_cpus", "enforced_memory",
    "load_ms", "first_inference_ms", "warmup", "iterations",
    "latency_mean_ms", "latency_median_ms", "latency_std_ms", "latency_min_ms", "latency_max_ms",
    "latency_p90_ms", "latency_p95_ms", "latency_p99_ms", "latency_iqr_ms", "latency_ci_low_ms", "latency_ci_high_ms",
    "flags", "disturbed_runs", "timed_runs", "figures_from",
    "throughput_ips", "peak_memory_mb", "rss_peak_mb", "idle_memory_mb", "memory_source",
    "peak_anon_mb", "peak_file_mb",
    "predicted_latency_ms", "predicted_latency_ms_low", "predicted_latency_ms_high",
    "predicted_peak_memory_mb", "predicted_peak_memory_mb_low", "predicted_peak_memory_mb_high",
    "extrapolated", "outside_mix", "exceeds_device_ram",
    "accuracy_task", "accuracy_n", "accuracy_top1", "accuracy_top5", "accuracy_precision", "accuracy_recall",
    "accuracy_f1", "accuracy_mae", "accuracy_mse", "accuracy_rmse", "accuracy_mape", "data_sha256",
    "agreement_with", "agreement_top1", "agreement_max_abs_diff", "agreement_mean_abs_diff", "started_at",
]


def flatten(record):
    target, enforced = record.get("target") or {}, record.get("enforced") or {}
    stats = record.get("latency_ms") or {}
    prediction = record.get("prediction") or {}
    from profiler.report import flags

    disturbance = record.get("disturbance") or {}
    row = {key: record.get(key) for key in CSV_COLUMNS}
    variant = record.get("variant") if isinstance(record.get("variant"), dict) else {}
    row.update(variant_of=variant.get("of"), variant=variant.get("kind"))
    memory = record.get("memory") if isinstance(record.get("memory"), dict) else {}
    row.update(peak_anon_mb=memory.get("anon_mb"), peak_file_mb=memory.get("file_mb"))
    row.update(target_name=target.get("name"), cpus=target.get("cpus"), threads=target.get("threads"),
               memory_mb=target.get("memory_mb"), enforced_cpus=enforced.get("cpus"),
               enforced_memory=enforced.get("memory"), flags=" ".join(flags(record)),
               disturbed_runs=disturbance.get("runs"), timed_runs=disturbance.get("of"),
               figures_from=disturbance.get("basis"),
               extrapolated=any(p.get("extrapolated") for p in prediction.values()) if prediction else None,
               outside_mix=" ".join(sorted({c for p in prediction.values() for c in p.get("outside_mix") or []})),
               exceeds_device_ram=(prediction.get("peak_memory_mb") or {}).get("exceeds_device_ram"))
    for metric in ("latency_ms", "peak_memory_mb"):
        p = prediction.get(metric) or {}
        base = f"predicted_{metric}"
        row[base], row[f"{base}_low"], row[f"{base}_high"] = p.get("value"), p.get("low"), p.get("high")
    for key in ("mean", "median", "std", "min", "max", "p90", "p95", "p99", "iqr"):
        row[f"latency_{key}_ms"] = stats.get(key)
    row["latency_ci_low_ms"], row["latency_ci_high_ms"] = stats.get("ci_low"), stats.get("ci_high")
    accuracy = record.get("accuracy") or {}
    row.update(accuracy_task=accuracy.get("task"), accuracy_n=accuracy.get("n"),
               data_sha256=accuracy.get("data_sha256"))
    for key in ("top1", "top5", "precision", "recall", "f1", "mae", "mse", "rmse", "mape"):
        row[f"accuracy_{key}"] = (accuracy.get("metrics") or {}).get(key)
    agreement = accuracy.get("agreement") if isinstance(accuracy.get("agreement"), dict) else {}
    for key in ("with", "top1", "max_abs_diff", "mean_abs_diff"):
        row[f"agreement_{key}"] = agreement.get(key)
    return {key: csv_cell(value) for key, value in row.items()}


def json_safe(value):
    """value with every NaN or infinity as null: JSON has no such numbers (Python would write NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path, records):
    """Standard JSON (allow_nan=False): a figure that is not a number is null."""
    write_atomic(path, lambda f: json.dump(json_safe(records), f, indent=1, allow_nan=False))


def write_csv(path, records):
    import pandas as pd

    frame = pd.DataFrame([flatten(r) for r in records], columns=CSV_COLUMNS)
    write_atomic(path, lambda f: frame.to_csv(f, index=False, lineterminator="\n"))


LEADING = ["model", "runtime", "status", "latency_ms.median", "flags", "latency_ms.iqr", "latency_ms.ci_low",
           "latency_ms.ci_high", "latency_ms.p99", "load_ms",
           "peak_memory_mb", "prediction.latency_ms.value", "prediction.latency_ms.low", "prediction.latency_ms.high",
           "prediction.latency_ms.extrapolated", "prediction.peak_memory_mb.value", "accuracy.metrics.top1",
           "accuracy.metrics.mae", "backend", "path", "sha256"]
DROPPED = ("samples_ms", "samples_wait_ms")  # every timed run: kept in the records and the JSON, too long for a table cell


def to_pandas(records):
    """A DataFrame, one row per record, nested fields flattened with dots (latency_ms.median)."""
    import pandas as pd

    from profiler.report import flags

    frame = pd.json_normalize([dict({k: v for k, v in r.items() if k not in DROPPED}, flags=flags(r))
                               for r in records])
    if frame.empty:
        return pd.DataFrame(columns=LEADING[:3])
    first = [c for c in LEADING if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def write_markdown(path, records):
    from profiler.report import markdown_lines

    write_atomic(path, lambda f: f.write("\n".join(markdown_lines(records)) + "\n"))


def write_card_csv(path, cards):
    """`profile --card-only --csv`: one row per model card, MACs by operator class in columns."""
    classes = sorted({c for card in cards for c in (card["model_card"].get("macs_by_class") or {})})
    columns = ["model", "path", "status", "error", "size_mb", "params", "macs", "nodes",
               "activation_bytes"] + [f"macs_{c}" for c in classes]

    def write(f):
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for card in cards:
            info = card["model_card"]
            row = {"model": card["model"], "path": card["path"], "status": card.get("status", "ok"),
                   "error": card.get("error"), **{k: info.get(k) for k in columns[4:9]}}
            if info:
                row.update({f"macs_{c}": (info.get("macs_by_class") or {}).get(c, 0) for c in classes})
            writer.writerow({key: csv_cell(value) for key, value in row.items()})

    write_atomic(path, write)
