"""One model in a forked worker: load, first runs, warm-up and timed runs, and the measurement fields
of its result (the worker writes them to the supervisor's pipe as one JSON object)."""

import gc
import json
import os
import time

from profiler.harness.runtimes import ModelError, adapter, make_inputs, parse_input_shapes, resolve_shapes
from profiler.harness.disturbance import (NeighbourBlocks, RunQueueWait, cpu_times, neighbour_busy, neighbour_effect,
                                          scheduling)
from profiler.harness.memory import MIB, Allocator, proc_status_fields, proc_status_mb, to_mb
from profiler.harness.stats import MAX_ADAPTIVE_RUNS, disturbed_run, median_ci_rel, min_clean, robust_stats


_POOL_OPS = {"AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"}
_FC_OPS = {"Gemm", "MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul", "FusedGemm"}
_MOVE_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Concat", "Split", "Slice",
             "Gather", "Shape", "ReorderInput", "ReorderOutput"}


def classify_op(op_name, input_shapes):
    """Operator class of a runtime kernel, the same classes as the model card's MACs."""
    if "Conv" in op_name and len(input_shapes) >= 2 and len(input_shapes[1]) >= 3:
        weight, source = input_shapes[1], input_shapes[0]
        groups = max(1, source[1] // weight[1]) if len(source) > 1 and weight[1] else 1
        kernel = 1
        for d in weight[2:]:
            kernel *= d
        if groups == 1:
            return "conv_1x1" if kernel == 1 else "conv_kxk"
        return "depthwise" if groups == source[1] else "grouped"
    if op_name in _FC_OPS:
        return "fc/matmul"
    if op_name in _POOL_OPS:
        return "pool"
    if op_name in _MOVE_OPS:
        return "other"
    return "elementwise"


def samples_per_run(shapes, batch):
    """The samples one run processes: the first input's leading dimension (what actually ran)."""
    first = next(iter((shapes or {}).values()), None)
    return first[0] if first and isinstance(first[0], int) and first[0] > 0 else batch


def throughput(shapes, batch, mean_ms):
    return round(samples_per_run(shapes, batch) * 1000.0 / mean_ms, 3) if mean_ms > 0 else None


def preload():
    """Import in the supervisor what every worker imports (the seeded input generator, the telemetry
    reader), so that each forked worker starts with it loaded instead of importing it again: about
    20 ms a model, outside every measured figure but not outside the sweep's wall time."""
    import numpy.random  # noqa: F401
    import profiler.harness.telemetry  # noqa: F401


def measure(path, runtime, opts, cgroup):
    """Load and time one model; returns the measurement fields of the result."""
    if os.path.getsize(path) == 0:
        raise ModelError(f"{os.path.basename(path)}: is empty (0 bytes), not a model")
    rt = adapter(runtime)
    allocator = Allocator()
    allocator.for_peak()
    neighbours_before = cpu_times()  # from the load on: a span long enough for /proc/stat's 10 ms ticks
    # The footprint with the runtime imported and no model loaded yet, so peak - idle is the
    # model's own share (the cgroup's figure is kept beside its peak).
    idle_rss_mb = round(proc_status_mb("VmRSS"), 3)
    idle_cgroup_mb = to_mb(cgroup.usage_bytes()) if opts.cgroup else None
    session, load_ms, specs, shapes, run = load_model(rt, path, runtime, opts)
    setup = rt.info(session) if hasattr(rt, "info") else None

    t0 = time.perf_counter_ns()
    run()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    run()  # a second run, as a graph that optimises itself after the first runs it
    # The peak: what the load and the first runs held at once (Allocator), anonymous and
    # file-backed apart, read before the timed runs' allocator setting and bookkeeping change it.
    at_peak = proc_status_fields("VmHWM", "RssAnon", "RssFile", "RssShmem")
    allocator.for_timing()
    for _ in range(opts.warmup):
        run()

    timed = timed_runs(run, opts)
    stats, disturbance = run_statistics(timed, opts, neighbours_before)
    timings, wait_ns, rss_samples = timed["timings"], timed["wait_ns"], timed["rss_samples"]
    samples_ms = [t / 1e6 for t in timings]

    op_time_ms = rt.op_times(path, opts.threads, make_inputs(specs, shapes, opts.seed), opts.op_profile,
                             classify_op) if opts.op_profile and hasattr(rt, "op_times") else None

    result = {
        "runtime_setup": setup, "telemetry": timed["telemetry"],
        "op_time_ms": op_time_ms, "input_shapes": shapes, "load_ms": round(load_ms, 4), "first_inference_ms": round(first_ms, 4),
        "latency_ms": stats, "samples_ms": [round(s, 5) for s in samples_ms] if opts.keep_samples else None,
        "samples_wait_ms": [round(w / 1e6, 5) for w in wait_ns] if opts.keep_samples else None,
        "disturbance": disturbance, "iterations_run": len(timings), "scheduling": scheduling(),
        "throughput_ips": throughput(shapes, opts.batch, stats["mean"]), "batch": samples_per_run(shapes, opts.batch),
        "rss_peak_mb": round(proc_status_mb("VmHWM"), 3),  # the whole run's, timed runs included
        "mean_rss_mb": round(sum(rss_samples) / len(rss_samples) / MIB, 3) if rss_samples else None,
        "total_runtime_ms": round(sum(timings) / 1e6, 3),
        "cpus_seen": sorted(os.sched_getaffinity(0)),
    }
    result.update(memory_fields(at_peak, idle_rss_mb, result["rss_peak_mb"], allocator))
    if opts.data:  # after the timed runs and the peak, so neither includes it
        from profiler.harness.evaluate import Loaded, evaluate

        result["accuracy"] = evaluate(Loaded(rt, session, specs, shapes, runtime), opts.data, opts.task,
                                      limit=cgroup.limit_bytes() if opts.cgroup else None, sha256=opts.data_sha256)
    if opts.cgroup:
        result["cgroup"] = {"limit_mb": to_mb(cgroup.limit_bytes()), "peak_mb": to_mb(cgroup.peak_bytes()),
                            "anon_mb": to_mb(cgroup.anon_bytes()), "throttling": cgroup.throttling(),
                            "idle_mb": idle_cgroup_mb}
    return result


def load_model(rt, path, runtime, opts):
    """(session, load ms, input specs, input shapes, one run) for a model the adapter loads."""
    t0 = time.perf_counter_ns()
    session = rt.load(path, opts.threads, **load_options(runtime, opts))
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    specs = rt.describe(session)
    shapes = resolve_shapes(specs, opts.batch, parse_input_shapes(opts.input_shapes), os.path.basename(path))
    return session, load_ms, specs, shapes, rt.runner(session, make_inputs(specs, shapes, opts.seed))


def memory_fields(at_peak, idle_rss_mb, whole_run_peak_mb, allocator):
    """The record's memory figures. The peak is what the model's run holds: the worker's resident
    high-water mark over the load and the first runs (anonymous memory plus the model and library
    pages it maps), the figure benchmark_model reports on a device. The cgroup's peak also counts
    whichever file pages it was charged for reading, which moves with the page cache and the models
    run before, so it is kept as a diagnostic only."""
    return {"peak_memory_mb": round(at_peak["VmHWM"], 3), "idle_memory_mb": idle_rss_mb, "memory_source": "vmhwm",
            "memory": {"basis": "load_and_first_runs", "allocator": allocator.name,
                       "anon_mb": round(at_peak.get("RssAnon", 0.0) + at_peak.get("RssShmem", 0.0), 3),
                       "file_mb": round(at_peak.get("RssFile", 0.0), 3), "whole_run_peak_mb": whole_run_peak_mb}}


def timed_runs(run, opts):
    """ITERATIONS timed runs (more, up to TIME_BUDGET_S, with TARGET_CI), each with its wait for a
    core, the neighbours' load in blocks, telemetry and, with SAMPLE_MEMORY, the resident set."""
    waits = RunQueueWait()  # the runtime's threads exist now: each one's run-queue delay is read
    timings, wait_ns = [], []
    rss_samples = [] if opts.sample_memory else None
    statm = os.open("/proc/self/statm", os.O_RDONLY) if rss_samples is not None else None
    page = os.sysconf("SC_PAGE_SIZE")
    clock = time.perf_counter_ns
    from profiler.harness.telemetry import Watch

    watch = Watch()
    blocks = NeighbourBlocks(watch.tick)
    budget_end = time.monotonic() + opts.time_budget if opts.target_ci else None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside the loop would land on one unlucky sample
    try:
        count = opts.iterations
        while True:
            for _ in range(count):
                waited = waits.total()
                start = clock()
                run()
                timings.append(clock() - start)
                wait_ns.append(waits.total() - waited)  # read outside the timed span
                blocks.tick(len(timings))  # outside the timed span too
                if statm is not None:  # resident pages after each run, outside the timed span
                    rss_samples.append(int(os.pread(statm, 64, 0).split()[1]) * page)
            if budget_end is None:
                break
            clean = [t for t, w in zip(timings, wait_ns) if not disturbed_run(t, w)]
            if median_ci_rel(clean if len(clean) >= min_clean(len(timings)) else timings) <= opts.target_ci \
                    or time.monotonic() >= budget_end or len(timings) >= MAX_ADAPTIVE_RUNS:
                break
            count = max(10, len(timings) // 2)  # half as many again, then look once more
    finally:
        if gc_was_enabled:
            gc.enable()
        if statm is not None:
            os.close(statm)
        waits.close()
    blocks.tick(len(timings), last=True)
    return {"timings": timings, "wait_ns": wait_ns, "source": waits.source, "spans": blocks.spans,
            "rss_samples": rss_samples, "telemetry": watch.finish(len(timings))}


def run_statistics(timed, opts, neighbours_before):
    """(latency statistics, disturbance) of the timed runs."""
    timings, wait_ns = timed["timings"], timed["wait_ns"]
    samples_ms = [t / 1e6 for t in timings]
    cores = len(os.sched_getaffinity(0))
    if opts.threads > cores:
        # The model's own threads wait for each other: no neighbour is to blame and no run is
        # cleaner than another, so every run counts and the record says why.
        stats, disturbance = robust_stats(samples_ms, None, None)
        disturbance["oversubscribed"] = {"threads": opts.threads, "cores": cores,
                                         "wait_share": round(sum(wait_ns) / max(1, sum(timings)), 4)}
    else:
        stats, disturbance = robust_stats(samples_ms, [w / 1e6 for w in wait_ns], timed["source"],
                                          single_thread=opts.threads == 1)
    disturbance["neighbour_busy"] = neighbour_busy(neighbours_before, cpu_times())
    disturbance["neighbour"] = neighbour_effect(samples_ms, None if opts.threads > cores else wait_ns, timed["spans"],
                                                disturbance["neighbour_busy"])
    if opts.target_ci:
        disturbance["convergence"] = {
            "target_ci": opts.target_ci, "ci_rel": stats["ci_rel"], "runs": len(timings),
            "stopped": ("target" if stats["ci_rel"] <= opts.target_ci else
                        "max_runs" if len(timings) >= MAX_ADAPTIVE_RUNS else "budget"),
            "time_budget_s": opts.time_budget}
    return stats, disturbance


def worker_main(path, runtime, opts, cgroup, write_fd):
    """Forked child: measure, write one JSON object to the pipe, exit without cleanup."""
    code = 0
    try:
        try:  # this process is the one to kill if the cap is hit, never the supervisor
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        try:  # VmHWM starts from here, not from the supervisor's history
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        payload = {"status": "ok", **measure(path, runtime, opts, cgroup)}
    except ModelError as exc:  # a load that failed for want of memory is a memory result too
        text = str(exc)
        if any(sign in text for sign in ALLOCATION_FAILURES):
            payload = {"status": "oom", "error": f"the runtime could not allocate memory ({one_line(text, 300)})"}
        else:
            payload = {"status": "error", "error": text}
    except MemoryError:
        payload, code = {"status": "oom", "error": "MemoryError while running the model"}, 0
    except BaseException as exc:  # any failure of the model is a result row, never a crash
        text = one_line(f"{type(exc).__name__}: {exc}")
        if any(sign in text for sign in ALLOCATION_FAILURES):
            payload, code = {"status": "oom", "error": f"the runtime could not allocate memory ({one_line(text, 300)})"}, 0
        else:
            payload, code = {"status": "error", "error": f"{os.path.basename(path)}: {text}"}, 0
    data = json.dumps(payload).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(write_fd, view):]
    os._exit(code)


# What the runtimes say when an allocation fails under the cap: torch's CPU allocator, ONNX
# Runtime's arena, and C++'s bad_alloc (LiteRT). Each is a memory result, as MemoryError is.
ALLOCATION_FAILURES = ("DefaultCPUAllocator: can't allocate memory", "Failed to allocate memory",
                       "bad_alloc", "bad allocation", "Cannot allocate memory")


def one_line(text, limit=600):
    """A runtime's message on one line. Long ones keep their head and tail: ONNX Runtime and the
    TorchScript interpreter put the cause last, after the context."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[:limit // 3]} … {text[-(limit - limit // 3):]}"


def load_options(runtime, opts):
    """The adapter's own settings: the TFLite delegate, ONNX Runtime's execution providers."""
    if runtime == "tflite" and getattr(opts, "delegate", None):
        return {"delegate": opts.delegate}
    if runtime == "onnx" and getattr(opts, "execution_providers", None):
        return {"providers": opts.execution_providers.split(",")}
    return {}
