"""The supervisor: runs each model in a forked worker and prints its record. Runs inside the sandbox, or
standalone on a real device.

    python -m profiler.harness model.onnx [more models] --threads 4 [--csv device.csv]

Needs only numpy and the model's runtime. For each model a forked worker loads it
(load_ms), runs it once (first_inference_ms), runs WARMUP untimed runs and then
ITERATIONS runs timed with perf_counter_ns. The supervisor prints one JSON object
per model on stdout, as soon as that model is done. A worker that crashes, runs out
of memory or passes its timeout becomes a row with that status; the rest still run.
"""

import argparse
import csv
import json
import os
import select
import signal
import sys
import time

from profiler.harness.files import check_writable, sha256_of, write_atomic
from profiler.harness.runtimes import RUNTIMES, ModelError, adapter, runtime_for
from profiler.harness.measure import measure, preload, throughput, worker_main
from profiler.harness.memory import Cgroup, MIB, mapped_files, proc_status_mb, read_through, to_mb
from profiler.harness.record import (CSV_COLUMNS, RESULT_VERSION, csv_row, flag_warnings, host_info, measurement_flags,
                                     model_name)
from profiler.harness.stats import robust_stats


def die_with_parent():
    """Linux: SIGKILL this process when its parent dies (even by kill -9), so a killed profile never
    leaves a harness loading a core. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_model(path, runtime, opts, cgroup):
    """Measure one model in opts.workers fresh worker processes, the timed runs split between them,
    and pool their runs (pyperf's design): one process that happens to run slow (its memory layout,
    a frequency step) moves the figure little, and the spread of the workers' medians says it happened."""
    workers = max(1, min(opts.workers, opts.iterations))
    if workers == 1 or not opts.fork:
        return runworker_main(path, runtime, opts, cgroup)
    import copy

    parts = []
    for k in range(workers):
        share = copy.copy(opts)
        share.iterations = opts.iterations // workers + (1 if k < opts.iterations % workers else 0)
        share.keep_samples = True  # pooled below
        share.time_budget = opts.time_budget / workers
        if k:  # once is enough: the per-operator profile and the evaluation come from the first worker
            share.op_profile, share.data = 0, None
        part = runworker_main(path, runtime, share, cgroup)
        if part.get("status") != "ok":
            return part
        parts.append(part)
    return pool_workers(parts, opts)


def pool_workers(parts, opts):
    """One result from several workers' results: every run pooled, the first worker's load, card and
    evaluation, the median of the workers' peaks, and each worker's median kept."""
    result = dict(parts[0])
    samples = [s for p in parts for s in p["samples_ms"]]
    waits = [w for p in parts for w in p["samples_wait_ms"]]
    if parts[0]["disturbance"].get("oversubscribed"):
        stats, disturbance = robust_stats(samples, None, None)
        disturbance["oversubscribed"] = parts[0]["disturbance"]["oversubscribed"]
    else:
        stats, disturbance = robust_stats(samples, waits, parts[0]["disturbance"].get("source"),
                                          single_thread=opts.threads == 1)
    busy = [p["disturbance"].get("neighbour_busy") for p in parts if p["disturbance"].get("neighbour_busy") is not None]
    disturbance["neighbour_busy"] = round(sum(busy) / len(busy), 3) if busy else None
    neighbours = [p["disturbance"].get("neighbour") or {} for p in parts]
    disturbance["neighbour"] = {"busy_runs": sum(n.get("busy_runs", 0) for n in neighbours),
                                "quiet_runs": sum(n.get("quiet_runs", 0) for n in neighbours),
                                "effect": None, "contended": any(n.get("contended") for n in neighbours)}
    if opts.target_ci:
        disturbance["convergence"] = {
            "target_ci": opts.target_ci, "ci_rel": stats["ci_rel"], "runs": len(samples),
            "stopped": "target" if stats["ci_rel"] <= opts.target_ci else parts[-1]["disturbance"]["convergence"]["stopped"],
            "time_budget_s": opts.time_budget}
    medians = [p["latency_ms"]["median"] for p in parts]
    peaks = sorted(p["peak_memory_mb"] for p in parts)
    middle = next(p for p in parts if p["peak_memory_mb"] == peaks[len(peaks) // 2])
    result.update(latency_ms=stats, disturbance=disturbance, iterations_run=len(samples),
                  samples_ms=samples if opts.keep_samples else None,
                  samples_wait_ms=waits if opts.keep_samples else None,
                  throughput_ips=throughput(result.get("input_shapes"), opts.batch, stats["mean"]),
                  total_runtime_ms=round(sum(samples), 3),
                  peak_memory_mb=peaks[len(peaks) // 2],
                  rss_peak_mb=middle["rss_peak_mb"], memory=middle.get("memory"),
                  workers={"count": len(parts), "medians_ms": medians, "peaks_mb": [p["peak_memory_mb"] for p in parts],
                           "median_spread": round((max(medians) - min(medians)) / stats["median"], 4)
                           if stats["median"] > 0 else None,
                           "peak_spread": round((peaks[-1] - peaks[0]) / peaks[len(peaks) // 2], 4)
                           if peaks[len(peaks) // 2] else None})
    return result


def runworker_main(path, runtime, opts, cgroup):
    """Fork a worker for one model and turn whatever happens into a result dict."""
    if not opts.fork:  # debugging aid: measure in this process, with no isolation
        if opts.cgroup:
            cgroup.reset_peak()
        try:
            return {"status": "ok", **measure(path, runtime, opts, cgroup)}
        except ModelError as exc:
            return {"status": "error", "error": str(exc)}
    oom_before = cgroup.oom_kills() if opts.cgroup else None
    if opts.cgroup:
        cgroup.reset_peak()  # the diagnostic cgroup peak is this model's where the kernel allows
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        die_with_parent()
        worker_main(path, runtime, opts, cgroup, write_fd)
    os.close(write_fd)
    chunks, deadline, timed_out = [], time.monotonic() + opts.timeout if opts.timeout else None, False
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([read_fd], [], [], wait)
        if not ready:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"status": "timeout", "error": f"no result within TIMEOUT_S={opts.timeout:g}"}
    if chunks and os.WIFEXITED(status):
        return json.loads(b"".join(chunks))
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        oom_after = cgroup.oom_kills() if opts.cgroup else None
        if sig == signal.SIGKILL and (oom_before is None or oom_after is None or oom_after > oom_before):
            limit = cgroup.limit_bytes() if opts.cgroup else None
            cap = f" of {limit / MIB:.0f} MiB" if limit else ""
            return {"status": "oom", "error": f"killed by the memory cap{cap}"}
        return {"status": "error", "error": f"worker died from signal {signal.Signals(sig).name}"}
    return {"status": "error", "error": f"worker exited with code {os.WEXITSTATUS(status)} and no result"}


def empty_run(opts):
    """The executor's own cost, for the backend to time: interpreter start and runtime import, no model.

    Run in a fresh sandbox before the models, it also reads every library the runtime mapped whole,
    so those pages are cached and charged to this throwaway cgroup: the measuring sandbox's peak
    is then the same whether the page cache was cold or warm."""
    t0 = time.perf_counter_ns()
    rt = adapter(opts.runtime)
    import_ms = (time.perf_counter_ns() - t0) / 1e6
    read_through(mapped_files())
    return {"result_version": RESULT_VERSION, "empty_run": True, "runtime": opts.runtime,
            "runtime_package": rt.PACKAGE, "runtime_version": rt.version(), "import_ms": round(import_ms, 3),
            "idle_rss_mb": round(proc_status_mb("VmRSS"), 3)}


def seen_inside(cgroup):
    """The caps as this process sees them: its cores and its memory cgroup's limit (how a backend
    reads back what it enforced)."""
    limit = cgroup.limit_bytes() if cgroup.version else None
    return {"cpus_allowed": sorted(os.sched_getaffinity(0)), "memory_limit_mb": to_mb(limit) if limit else None}


def profile_models(opts, emit):
    cgroup = Cgroup()
    if opts.cgroup and cgroup.version is None:
        opts.cgroup = False
    inside = seen_inside(cgroup)
    versions = {}
    preload()  # imported once here, so forked workers start with it loaded (as the runtimes below)
    for index, path in enumerate(opts.models):
        record = {"result_version": RESULT_VERSION, "model": model_name(path),
                  "path": path, "format": os.path.splitext(path)[1].lstrip(".").lower(),
                  "threads": opts.threads, "batch": opts.batch, "seed": opts.seed,
                  "warmup": opts.warmup, "iterations": opts.iterations,
                  "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host_info(), "seen_inside": inside}
        if getattr(opts, "cool_down_c", 0):
            from profiler.harness.telemetry import cool_down

            record["cool_down"] = cool_down(opts.cool_down_c) or "unavailable"
        try:
            runtime = runtime_for(path, opts.runtime)
            record["runtime"] = runtime
            record["sha256"] = sha256_of(path)
            if runtime not in versions:  # imported once here, so forked workers start with it loaded
                rt = adapter(runtime)
                versions[runtime] = (rt.PACKAGE, rt.version())
            record["runtime_package"], record["runtime_version"] = versions[runtime]
            record.update(run_model(path, runtime, opts, cgroup))
        except ModelError as exc:
            record.update(status="error", error=str(exc))
        except ImportError as exc:
            record.update(status="error", error=f"runtime for {path} is not installed ({exc})")
        except OSError as exc:
            record.update(status="error", error=f"{path}: {exc.strerror or exc}")
        record.setdefault("error", None)
        record["flags"] = measurement_flags(record)
        record["warnings"] = flag_warnings(record, opts.threads)
        emit(record)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m profiler.harness",
        description="Time models with their runtime and print one JSON result per model. "
                    "Run it on the device itself to take the measurements `calibrate` imports.",
        epilog="example (on a Raspberry Pi): python -m profiler.harness a.tflite b.tflite "
               "--threads 4 --csv pi5.csv")
    parser.add_argument("models", nargs="*", help="model files (.onnx, .tflite, .pt, .pth, .pt2)")
    parser.add_argument("--runtime", choices=RUNTIMES, help="override the runtime picked by extension")
    parser.add_argument("--threads", type=positive_int, default=1, help="runtime thread count (default 1)")
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="untimed runs (default 10)")
    parser.add_argument("--iterations", type=positive_int, default=100, help="timed runs (default 100)")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random inputs (default 0)")
    parser.add_argument("--input-shapes", default="", help="pin dynamic dims, e.g. input:1x3x224x224")
    parser.add_argument("--cool-down-c", type=float, default=0.0, metavar="C",
                        help="before each model, wait (at most 300 s) until the hottest sensor reads at most C °C")
    parser.add_argument("--delegate", default=None,
                        help="TFLite: xnnpack (default), none, reference, or a delegate library with options, "
                             "e.g. libarmnnDelegate.so:backends=CpuAcc")
    parser.add_argument("--execution-providers", default=None, metavar="LIST",
                        help="ONNX Runtime providers in order of preference (default CPUExecutionProvider)")
    parser.add_argument("--target-ci", type=float, default=0.0, metavar="FRACTION",
                        help="after ITERATIONS, keep timing until the median's 95%% interval is within "
                             "±FRACTION of it (0.01: ±1%%) or --time-budget is spent (0: fixed count)")
    parser.add_argument("--time-budget", type=float, default=10.0, metavar="S",
                        help="seconds of timed runs per model that --target-ci may spend (default 10)")
    parser.add_argument("--data", metavar="FILE.npz",
                        help="after timing, evaluate on this data: x_data (one sample per row) and optional y_data")
    parser.add_argument("--data-sha256", metavar="HEX", help="the data file's sha256, when the caller has it")
    parser.add_argument("--task", choices=["auto", "classification", "regression"], default="auto",
                        help="what y_data holds (default: classes when the labels are integers)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="fresh worker processes per model, the timed runs split between them and pooled; "
                             "their medians' spread flags a host whose speed drifts (default 1)")
    parser.add_argument("--nice", type=int, default=None,
                        help="run at this niceness (raised only; the backends pass the caller's, so every "
                             "backend measures at the same priority)")
    parser.add_argument("--timeout", type=float, default=0, help="seconds per model before it counts as timeout (0: none)")
    parser.add_argument("--cgroup", action="store_true", help="report this process's cgroup peak (set by sandboxes)")
    parser.add_argument("--no-fork", dest="fork", action="store_false", help="measure in this process (no isolation)")
    parser.add_argument("--op-profile", type=non_negative_int, default=0, metavar="RUNS",
                        help="also time RUNS runs with the runtime's own profiler, per operator class (ONNX)")
    parser.add_argument("--sample-memory", action="store_true",
                        help="read the resident memory after every timed run (mean_rss_mb)")
    parser.add_argument("--empty", action="store_true",
                        help="load no model: import --runtime and print the start-up cost (sandboxes time this)")
    parser.add_argument("--keep-samples", action="store_true", help="include every timed sample in the JSON")
    parser.add_argument("--csv", metavar="FILE", help="also write the rows `calibrate` imports to FILE")
    parser.add_argument("--json", metavar="FILE", help="also write all results as one JSON list to FILE")
    return parser


def main(argv=None):
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.empty:
        if not opts.runtime:
            parser.error("--empty needs --runtime")
        try:
            print(json.dumps(empty_run(opts)), flush=True)
        except ImportError as exc:
            print(json.dumps({"empty_run": True, "runtime": opts.runtime, "error": f"runtime not installed ({exc})"}),
                  flush=True)
            return 1
        return 0
    if not opts.models:
        parser.error("give at least one model file")
    if opts.nice is not None:
        try:
            current = os.getpriority(os.PRIO_PROCESS, 0)
            if opts.nice > current:
                os.setpriority(os.PRIO_PROCESS, 0, min(19, opts.nice))
        except OSError:
            pass
    for option, path in (("--csv", opts.csv), ("--json", opts.json)):
        try:
            if path:
                check_writable(path)  # before measuring, so a bad path costs nothing
        except OSError as exc:
            parser.error(f"{option} {path}: {exc.strerror}")
    records = []

    def emit(record):
        records.append(record)
        print(json.dumps(record), flush=True)
        for warning in record["warnings"]:
            print(f"WARNING: {warning}", file=sys.stderr)
        if record["status"] != "ok":
            print(f"{record['model']}: {record['status']}: {record.get('error') or ''}".rstrip(": "), file=sys.stderr)

    try:
        profile_models(opts, emit)
    except KeyboardInterrupt:
        return 130

    def write_csv(f):
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_row(r) for r in records)

    try:
        if opts.csv:
            write_atomic(opts.csv, write_csv)
        if opts.json:
            write_atomic(opts.json, lambda f: json.dump(records, f, indent=1))
    except OSError as exc:
        print(f"python -m profiler.harness: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0 if any(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
