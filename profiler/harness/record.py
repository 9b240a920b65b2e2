"""The record the harness prints: its version (profiler.store upgrades older rows), the machine it ran
on, the flags every export shows, and the device CSV's columns."""

import os
import platform

from profiler import __version__
from profiler.harness.files import printable
from profiler.harness.disturbance import CONTENDED_SHARE
from profiler.harness.stats import DISTURBED_FLAG_SHARE, UNSTABLE_IQR_RATIO, WORKER_SPREAD


RESULT_VERSION = 2  # bump when a field changes meaning; profiler.store upgrades old rows


def host_info():
    cpu_model = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith(("model name", "Model", "Hardware")):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": cpu_model, "kernel": platform.release(), "machine": platform.machine(),
            "python": platform.python_version(), "hostname": platform.node(), "tool_version": __version__}


def model_name(path):
    """The file stem, printable."""
    return printable(os.path.splitext(os.path.basename(path))[0])


def measurement_flags(record):
    """What a record's figures cannot be trusted for: `unstable` (IQR above 10% of the median),
    `disturbed` (the figures include runs that waited for a core) and `contended` (the other cores
    were busy while it was timed)."""
    flags = []
    stats, disturbance = record.get("latency_ms"), record.get("disturbance") or {}
    if record.get("status") == "ok" and stats and stats["median"] > 0 \
            and stats["iqr"] / stats["median"] > UNSTABLE_IQR_RATIO:
        flags.append("unstable")
    if disturbance.get("basis") == "all" and (disturbance.get("share") or 0) > DISTURBED_FLAG_SHARE:
        flags.append("disturbed")
    if disturbance.get("basis") == "on_cpu":
        flags.append("recovered")
    neighbour = disturbance.get("neighbour")
    if isinstance(neighbour, dict):
        contended = neighbour.get("contended")
    else:  # a record from before the neighbour's effect was measured
        contended = (disturbance.get("neighbour_busy") or 0) > CONTENDED_SHARE
    if contended:
        flags.append("contended")
    if disturbance.get("oversubscribed"):
        flags.append("oversubscribed")
    if ((record.get("telemetry") or {}).get("throttled")):
        flags.append("throttled")
    spread = (record.get("workers") or {}).get("median_spread")
    if spread is not None and spread > WORKER_SPREAD and "unstable" not in flags:
        flags.append("unstable")
    return flags


def flag_warnings(record, threads):
    """One warning per flag of a finished record, saying what it means for its figures and what to do."""
    name = f"{record['model']} ({record['runtime']})" if record.get("runtime") else record["model"]
    warnings = []
    stats = record.get("latency_ms")
    if "unstable" in record["flags"]:
        spread = (record.get("workers") or {}).get("median_spread")
        warnings.append(f"{name}: the measurement may be unstable: IQR is "
                        f"{100 * stats['iqr'] / stats['median']:.0f}% of the median"
                        + (f", its worker processes' medians {100 * spread:.0f}% apart" if spread else "")
                        + "; close other programs, raise ITERATIONS, or pin CPU_SET away from busy cores")
    if "contended" in record["flags"]:
        neighbour = record["disturbance"].get("neighbour") or {}
        effect = neighbour.get("effect")
        warnings.append(f"{name}: the other cores were "
                        f"{100 * (record['disturbance']['neighbour_busy'] or 0):.0f}% busy while it was timed; "
                        + (f"its runs timed while they were busy were {100 * effect:.1f}% slower than the others"
                           if effect is not None else "they were busy throughout, so their effect could not be "
                           "measured")
                        + ": a busy neighbour slows a model through shared caches and memory (and SMT) without "
                        "taking its core, so its figures may be high")
    if "throttled" in record["flags"]:
        warnings.append(f"{name}: throttled while it was timed: {'; '.join(record['telemetry']['throttled'])}; "
                        "its figures are those of a slower machine (let the board cool, COOL_DOWN_C=55)")
    if "oversubscribed" in record["flags"]:
        over = record["disturbance"]["oversubscribed"]
        warnings.append(f"{name}: THREADS={over['threads']} on {over['cores']} core(s): the model's own "
                        f"threads take turns on them (their run-queue wait was {100 * over['wait_share']:.1f}% of "
                        f"the time, its own doing, not another program's), so its figures are those of "
                        f"{over['threads']} threads sharing {over['cores']} core(s), not of a "
                        f"{over['threads']}-core device; use THREADS<={over['cores']} or give the sandbox more cores")
    if "disturbed" in record["flags"]:
        d = record["disturbance"]
        warnings.append(f"{name}: {d['runs']} of {d['of']} timed runs waited for a core "
                        f"({100 * d['wait_share']:.0f}% of the time); too few undisturbed runs are left, so "
                        "its figures include them: another program shares this core"
                        + (f"; with {threads} threads one waiting thread stalls the others, so the time on "
                           "a CPU cannot stand in for them" if threads > 1 else ""))
    if "recovered" in record["flags"]:
        d = record["disturbance"]
        warnings.append(f"{name}: {d['runs']} of {d['of']} timed runs waited for a core; its figures are each "
                        f"run's time on a CPU (wall minus the wait), recovered: wall median "
                        f"{d['wall']['median']:.4g} ms, on a CPU {record['latency_ms']['median']:.4g} ms "
                        "(another program shares this core)")
    return warnings


CSV_COLUMNS = ["model", "threads", "status", "latency_ms", "latency_mean_ms", "latency_p90_ms",
               "latency_p99_ms", "load_ms", "peak_memory_mb", "rss_peak_mb", "idle_memory_mb",
               "runtime", "runtime_version", "sha256", "error"]
# Columns that describe the main metrics rather than add new ones (calibrate imports the others).
CSV_SECONDARY = ("latency_mean_ms", "latency_p90_ms", "latency_p99_ms", "rss_peak_mb", "idle_memory_mb")


def csv_row(record):
    stats = record.get("latency_ms") or {}
    return {"model": record["model"], "threads": record["threads"], "status": record["status"],
            "latency_ms": stats.get("median"), "latency_mean_ms": stats.get("mean"),
            "latency_p90_ms": stats.get("p90"), "latency_p99_ms": stats.get("p99"),
            "load_ms": record.get("load_ms"), "peak_memory_mb": record.get("peak_memory_mb"),
            "rss_peak_mb": record.get("rss_peak_mb"), "idle_memory_mb": record.get("idle_memory_mb"),
            "runtime": record.get("runtime"), "runtime_version": record.get("runtime_version"),
            "sha256": record.get("sha256"), "error": record.get("error")}
