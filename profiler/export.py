"""Exporters: one function per format, each writing atomically (temp file, then rename)."""

import csv
import json

from profiler.harness import write_atomic

CSV_COLUMNS = [
    "model", "path", "sha256", "format", "runtime", "runtime_version", "backend", "status", "error",
    "target_name", "cpus", "threads", "memory_mb", "enforced_cpus", "enforced_memory",
    "load_ms", "first_inference_ms", "warmup", "iterations",
    "latency_mean_ms", "latency_median_ms", "latency_std_ms", "latency_min_ms", "latency_max_ms",
    "latency_p90_ms", "latency_p95_ms", "latency_p99_ms", "latency_iqr_ms",
    "throughput_ips", "peak_memory_mb", "rss_peak_mb", "idle_memory_mb", "memory_source",
    "predicted_latency_ms", "predicted_peak_memory_mb", "started_at",
]


def flatten(record):
    target, enforced = record.get("target") or {}, record.get("enforced") or {}
    stats = record.get("latency_ms") or {}
    prediction = record.get("prediction") or {}
    row = {key: record.get(key) for key in CSV_COLUMNS}
    row.update(target_name=target.get("name"), cpus=target.get("cpus"), threads=target.get("threads"),
               memory_mb=target.get("memory_mb"), enforced_cpus=enforced.get("cpus"),
               enforced_memory=enforced.get("memory"),
               predicted_latency_ms=(prediction.get("latency_ms") or {}).get("value"),
               predicted_peak_memory_mb=(prediction.get("peak_memory_mb") or {}).get("value"))
    for key in ("mean", "median", "std", "min", "max", "p90", "p95", "p99", "iqr"):
        row[f"latency_{key}_ms"] = stats.get(key)
    return row


def write_json(path, records):
    write_atomic(path, lambda f: json.dump(records, f, indent=1))


def write_csv(path, records):
    import pandas as pd

    frame = pd.DataFrame([flatten(r) for r in records], columns=CSV_COLUMNS)
    write_atomic(path, lambda f: frame.to_csv(f, index=False, lineterminator="\n"))


LEADING = ["model", "runtime", "status", "latency_ms.median", "latency_ms.iqr", "latency_ms.p99", "load_ms",
           "peak_memory_mb", "prediction.latency_ms.value", "prediction.latency_ms.low", "prediction.latency_ms.high",
           "prediction.latency_ms.extrapolated", "prediction.peak_memory_mb.value", "backend", "path", "sha256"]
DROPPED = ("samples_ms",)  # every timed run: kept in the records and the JSON, too long for a table cell


def to_pandas(records):
    """A DataFrame, one row per record, nested fields flattened with dots (latency_ms.median)."""
    import pandas as pd

    frame = pd.json_normalize([{k: v for k, v in r.items() if k not in DROPPED} for r in records])
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
    columns = ["model", "path", "size_mb", "params", "macs", "nodes", "activation_bytes"] + [f"macs_{c}" for c in classes]

    def write(f):
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for card in cards:
            info = card["model_card"]
            row = {"model": card["model"], "path": card["path"], **{k: info.get(k) for k in columns[2:7]}}
            row.update({f"macs_{c}": (info.get("macs_by_class") or {}).get(c, 0) for c in classes})
            writer.writerow(row)

    write_atomic(path, write)
