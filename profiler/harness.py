"""The measurement loop. Runs inside the sandbox, or standalone on a real device.

    python -m profiler.harness model.onnx [more models] --threads 4 [--csv device.csv]

Needs only numpy and the model's runtime. For each model a forked worker loads it
(load_ms), runs it once (first_inference_ms), runs WARMUP untimed runs and then
ITERATIONS runs timed with perf_counter_ns. The supervisor prints one JSON object
per model on stdout, as soon as that model is done. A worker that crashes, runs out
of memory or passes its timeout becomes a row with that status; the rest still run.
"""

import argparse
import csv
import gc
import json
import math
import os
import platform
import select
import signal
import statistics
import sys
import time

if __package__ in (None, ""):  # run as a file on a device: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "profiler"

from profiler import __version__
from profiler.files import check_writable, printable, sha256_of, write_atomic
from profiler.runtimes import (RUNTIMES, ModelError, adapter, make_inputs, parse_input_shapes, resolve_shapes,
                               runtime_for)

RESULT_VERSION = 2  # bump when a field changes meaning; profiler.store upgrades old rows
UNSTABLE_IQR_RATIO = 0.10
MIB = 1024 * 1024


# ---------------------------------------------------------------- memory and cgroup

def proc_status_fields(*fields):
    """{field: MiB} for the named /proc/self/status fields (VmHWM, RssAnon, RssFile, ...)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name = line.split(":", 1)[0]
            if name in fields:
                out[name] = int(line.split()[1]) / 1024.0
    return out


def proc_status_mb(field):
    return proc_status_fields(field).get(field)


class Allocator:
    """glibc's malloc, set the same way in every worker, whatever the process did before.

    By default glibc serves an allocation above a threshold from its own mapping and raises that
    threshold each time such a mapping is freed, so whether a model's large buffers come from fresh
    pages or from the heap depends on the allocations the process happened to make before the fork.
    The same TorchScript model then peaks 204.8 or 212.7 MiB from one process to the next, and its
    median moves by half when its buffers are mapped afresh at every run. So the load and the first
    runs use a fixed small threshold (every large buffer is its own mapping, returned when freed, so
    the high-water mark is what the model holds at once), and the timed runs a fixed large one (the
    state the dynamic threshold converges to: buffers are reused from the heap)."""

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    PEAK = 128 * 1024  # glibc's default threshold, held fixed
    STEADY = 32 * MIB  # the most glibc's dynamic threshold reaches on 64-bit

    def __init__(self):
        self.mallopt = None
        try:
            if os.confstr("CS_GNU_LIBC_VERSION"):
                import ctypes

                self.mallopt = ctypes.CDLL(None).mallopt
        except (ValueError, OSError, AttributeError):  # not glibc (musl, another libc): left as it is
            pass

    @property
    def name(self):
        return "glibc" if self.mallopt else "unchanged"

    def _set(self, threshold):
        if self.mallopt:
            self.mallopt(self.M_MMAP_THRESHOLD, threshold)
            self.mallopt(self.M_TRIM_THRESHOLD, 2 * threshold)

    def for_peak(self):
        self._set(self.PEAK)

    def for_timing(self):
        self._set(self.STEADY)


class Cgroup:
    """This process's own memory and cpu cgroup, v2 or v1, read-only."""

    def __init__(self):
        self.version, self.memory_dir, self.cpu_dir = None, None, None
        self.oom_dirs = []  # every capped cgroup above this process: an OOM kill is counted where the cap hit
        try:
            lines = open("/proc/self/cgroup").read().splitlines()
        except OSError:
            return
        paths = {}
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
        v1_memory = self._find("/sys/fs/cgroup/memory", paths.get("memory"), "memory.limit_in_bytes")
        if v1_memory:
            capped = self._capped_ancestors(v1_memory, "/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            self.oom_dirs = list(dict.fromkeys([v1_memory, *capped]))  # the victim's own cgroup counts its kill
            v1_memory = capped[0] if capped else v1_memory
            self.version, self.memory_dir = 1, v1_memory
            self.cpu_dir = (self._find("/sys/fs/cgroup/cpu,cpuacct", paths.get("cpu"), "cpu.stat")
                            or self._find("/sys/fs/cgroup/cpu", paths.get("cpu"), "cpu.stat"))
        elif "" in paths:
            v2 = self._find("/sys/fs/cgroup", paths[""], "memory.max")
            if v2:
                self.version, self.memory_dir, self.cpu_dir = 2, v2, v2

    @staticmethod
    def _capped_ancestors(directory, root, name):
        """The cgroups from here up that hold a cap, nearest first: a Slurm task's own cgroup is
        uncapped, its step's and its job's are not (the cap and the peak are read at the nearest)."""
        here, found = directory, []
        while True:
            try:
                with open(os.path.join(here, name)) as f:
                    if int(f.read().strip()) < 1 << 60:
                        found.append(here)
            except (OSError, ValueError):
                pass
            if os.path.normpath(here) in (os.path.normpath(root), "/"):
                return found
            here = os.path.dirname(here)

    @staticmethod
    def _find(root, path, probe):
        # In a container the own cgroup is mounted as the root; on a host it sits at its path.
        for candidate in ([os.path.join(root, path.lstrip("/"))] if path else []) + [root]:
            if os.path.exists(os.path.join(candidate, probe)):
                return candidate
        return None

    def _read(self, directory, name):
        try:
            with open(os.path.join(directory, name)) as f:
                return f.read().strip()
        except (OSError, TypeError):
            return None

    def _int(self, name):
        text = self._read(self.memory_dir, name)
        return None if text in (None, "max") else int(text)

    def _stat(self, directory, name):
        text = self._read(directory, name) or ""
        return {k: int(v) for k, v in (line.split()[:2] for line in text.splitlines() if len(line.split()) >= 2)}

    def limit_bytes(self):
        value = self._int("memory.max" if self.version == 2 else "memory.limit_in_bytes")
        return value if value is not None and value < 1 << 60 else None

    def peak_bytes(self):
        if getattr(self, "_peak_fd", None) is not None:  # v2: the peak since our reset, via that fd
            return int(os.pread(self._peak_fd, 64, 0).decode().strip())
        return self._int("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")

    def reset_peak(self):
        """Restart the peak from current usage, so it belongs to the next model. Needs a
        writable cgroup (the local backend's); in a container the files are read-only."""
        try:
            if self.version == 1:
                with open(os.path.join(self.memory_dir, "memory.max_usage_in_bytes"), "w") as f:
                    f.write("0")
                return True
            if self.version == 2:  # per-file-descriptor reset (Linux 6.12+); forked workers share the fd
                if getattr(self, "_peak_fd", None) is None:
                    self._peak_fd = os.open(os.path.join(self.memory_dir, "memory.peak"), os.O_RDWR)
                os.write(self._peak_fd, b"reset")
                return True
        except OSError:
            self._peak_fd = None
        return False

    def usage_bytes(self):
        return self._int("memory.current" if self.version == 2 else "memory.usage_in_bytes")

    def anon_bytes(self):
        stat = self._stat(self.memory_dir, "memory.stat")
        return stat.get("anon") if self.version == 2 else stat.get("total_rss", stat.get("rss"))

    def oom_kills(self):
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        counts = [self._stat(d, name).get("oom_kill") for d in (self.oom_dirs or [self.memory_dir])]
        counts = [c for c in counts if c is not None]
        return sum(counts) if counts else None

    def throttling(self):
        stat = self._stat(self.cpu_dir, "cpu.stat")
        if "nr_throttled" not in stat:
            return None
        usec = stat["throttled_usec"] if "throttled_usec" in stat else stat.get("throttled_time", 0) / 1000
        return {"nr_periods": stat.get("nr_periods"), "nr_throttled": stat["nr_throttled"],
                "throttled_ms": round(usec / 1000.0, 3)}


# ---------------------------------------------------------------- statistics

def percentile(sorted_values, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def latency_stats(samples_ms):
    values = sorted(samples_ms)
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    stats = {"mean": mean, "median": percentile(values, 0.5), "std": std, "min": values[0],
             "max": values[-1], "p90": percentile(values, 0.90), "p95": percentile(values, 0.95),
             "p99": percentile(values, 0.99),
             "iqr": percentile(values, 0.75) - percentile(values, 0.25)}
    stats["ci_low"], stats["ci_high"] = median_ci(values)
    stats["ci_rel"] = (stats["ci_high"] - stats["ci_low"]) / 2 / stats["median"] if stats["median"] > 0 else 0.0
    return {k: round(v, 6) for k, v in stats.items()}


# A timed run that waited on the run queue for more than this share of its wall time was
# disturbed: another process held its core. Latency figures come from the undisturbed runs when
# at least MIN_CLEAN_SHARE of them are left, else from all, flagged.
DISTURBED_WAIT_SHARE = 0.02
MIN_CLEAN_SHARE = 0.5
DISTURBED_FLAG_SHARE = 0.10  # a record whose figures include more disturbed runs than this is flagged
MAX_ADAPTIVE_RUNS = 100000


def disturbed_run(wall_ns, wait_ns):
    return wait_ns > DISTURBED_WAIT_SHARE * wall_ns


def min_clean(n):
    return max(1, math.ceil(MIN_CLEAN_SHARE * n))


def median_ci(sorted_values):
    """Distribution-free 95% confidence interval of the median: the order statistics at
    n/2 ∓ 1.96·√n/2 (the binomial rank interval, normal approximation)."""
    n = len(sorted_values)
    if n < 3:
        return sorted_values[0], sorted_values[-1]
    half = 0.98 * math.sqrt(n)
    low, high = max(0, int(math.floor(n / 2 - half)) - 1), min(n - 1, int(math.ceil(n / 2 + half)))
    return sorted_values[low], sorted_values[high]


def median_ci_rel(samples):
    """Half the median's 95% interval over the median (0.01: the median is known to ±1%)."""
    if not samples:
        return float("inf")
    values = sorted(samples)
    low, high = median_ci(values)
    median = percentile(values, 0.5)
    return (high - low) / 2 / median if median > 0 else float("inf")


RECOVERED_CI_WIDEN = 2.0  # a recovered median's interval: wider, since a switched-out run loses its cache


def on_cpu_times(samples_ms, waits_ms):
    """Each run's time on a CPU: its wall time less its run-queue wait (ms)."""
    return [max(t - w, 1e-6) for t, w in zip(samples_ms, waits_ms)]


def robust_stats(samples_ms, waits_ms, source, single_thread=False):
    """(latency stats, disturbance summary): the figures from the undisturbed runs when enough are
    left; else, for a single-threaded run, from each run's time on a CPU (wall minus the run-queue
    wait: what a free core would have given, up to the cache a switch-out costs), basis `on_cpu`;
    else from every run, basis `all`."""
    if waits_ms is None or source is None:
        stats = latency_stats(samples_ms)
        return stats, {"source": None, "runs": None, "of": len(samples_ms), "basis": "all"}
    bad = [disturbed_run(t, w) for t, w in zip(samples_ms, waits_ms)]
    clean = [t for t, b in zip(samples_ms, bad) if not b]
    basis = "undisturbed" if len(clean) >= min_clean(len(samples_ms)) else "on_cpu" if single_thread else "all"
    if basis == "on_cpu":
        on_cpu = on_cpu_times(samples_ms, waits_ms)
        stats = latency_stats(on_cpu)
        half_low, half_high = stats["median"] - stats["ci_low"], stats["ci_high"] - stats["median"]
        stats["ci_low"] = round(max(min(on_cpu), stats["median"] - RECOVERED_CI_WIDEN * half_low), 6)
        stats["ci_high"] = round(stats["median"] + RECOVERED_CI_WIDEN * half_high, 6)
        stats["ci_rel"] = round((stats["ci_high"] - stats["ci_low"]) / 2 / stats["median"], 6)
        wall_stats = latency_stats(samples_ms)
    else:
        stats = latency_stats(clean if basis == "undisturbed" else samples_ms)
    wall = sum(samples_ms)
    disturbance = {"source": source, "runs": sum(bad), "of": len(samples_ms),
                   "share": round(sum(bad) / len(samples_ms), 4), "wait_ms": round(sum(waits_ms), 4),
                   "wait_share": round(sum(waits_ms) / wall, 4) if wall > 0 else 0.0, "basis": basis,
                   "runs_used": len(clean) if basis == "undisturbed" else len(samples_ms)}
    if basis == "on_cpu":
        disturbance["wall"] = {k: wall_stats[k] for k in ("median", "mean", "p99", "ci_low", "ci_high")}
    return stats, disturbance


CONTENDED_SHARE = 0.5  # the other cores were busier than this during the timed runs: flagged `contended`


def cpu_times():
    """{core: (total, idle) jiffies} from /proc/stat (host-wide, inside a container too)."""
    found = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    numbers = [int(v) for v in values[:8]]
                    found[int(name[3:])] = (sum(numbers), numbers[3] + (numbers[4] if len(numbers) > 4 else 0))
    except (OSError, ValueError):
        pass
    return found


def neighbour_busy(before, after):
    """How busy the cores this process may not use were between two cpu_times() reads (0…1), or None.
    A neighbour shares caches, memory bandwidth and, on SMT machines, the core itself: a model timed
    while it works runs slower although no run waited for its core."""
    own = os.sched_getaffinity(0)
    shares = []
    for core, (total, idle) in after.items():
        if core in own or core not in before:
            continue
        spent = total - before[core][0]
        if spent >= 3:  # fewer ticks than this say nothing
            shares.append(1 - (idle - before[core][1]) / spent)
    return round(sum(shares) / len(shares), 3) if shares else None


CONTENDED_EFFECT = 0.03  # runs timed while the neighbours were busy, this much slower: flagged `contended`
NEIGHBOUR_BLOCK_S = 0.05  # /proc/stat counts 10 ms ticks: a block shorter than this says nothing
MIN_BLOCK_RUNS = 10


class NeighbourBlocks:
    """How busy the other cores were in consecutive blocks of timed runs (each at least
    NEIGHBOUR_BLOCK_S long), read between runs: spans of (first run, end run, busy share)."""

    def __init__(self, also=None):
        self.spans, self.first, self.before = [], 0, cpu_times()
        self.started = time.monotonic()
        self.also = also  # another reading taken at the same moments (the cores' clocks)

    def tick(self, done, last=False):
        if done <= self.first or (not last and time.monotonic() - self.started < NEIGHBOUR_BLOCK_S):
            return
        after = cpu_times()
        if self.also is not None:
            self.also()
        busy = neighbour_busy(self.before, after)
        if busy is not None:
            self.spans.append((self.first, done, busy))
        self.first, self.before, self.started = done, after, time.monotonic()


def neighbour_effect(samples_ms, wait_ns, spans, overall):
    """What the neighbours' load did to this model's runs: the median of the runs timed while the
    other cores were busy (above CONTENDED_SHARE) against those timed while they were not, from the
    runs that did not wait for their own core. `contended` when that shows them slower by more than
    CONTENDED_EFFECT, or when the neighbours were busy throughout (no quiet runs to compare with,
    so the effect could not be measured); a busy neighbour that moved nothing leaves no flag."""
    busy_runs, quiet_runs = [], []
    for first, end, busy in spans:
        for i in range(first, min(end, len(samples_ms))):
            if wait_ns and wait_ns[i] > DISTURBED_WAIT_SHARE * samples_ms[i] * 1e6:
                continue
            (busy_runs if busy > CONTENDED_SHARE else quiet_runs).append(samples_ms[i])
    summary = {"busy_runs": len(busy_runs), "quiet_runs": len(quiet_runs), "effect": None}
    if len(busy_runs) >= MIN_BLOCK_RUNS and len(quiet_runs) >= MIN_BLOCK_RUNS:
        summary["effect"] = round(float(statistics.median(busy_runs) / statistics.median(quiet_runs) - 1), 4)
        summary["contended"] = bool(summary["effect"] > CONTENDED_EFFECT)
    else:
        summary["contended"] = bool((overall or 0) > CONTENDED_SHARE or len(busy_runs) >= MIN_BLOCK_RUNS)
    return summary


class RunQueueWait:
    """Time this process's threads spent runnable but waiting for a core (field 2 of
    /proc/<pid>/task/<tid>/schedstat, in ns), summed over the threads alive when it is made."""

    def __init__(self):
        self.fds = []
        try:
            for tid in os.listdir("/proc/self/task"):
                self.fds.append(os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY))
            self.total()
            self.source = "schedstat"
        except (OSError, ValueError, IndexError):
            self.close()
            self.source = None

    def total(self):
        waited = 0
        for fd in self.fds:
            try:
                waited += int(os.pread(fd, 96, 0).split()[1])
            except OSError:  # a runtime thread that ended: it waits no more
                pass
        return waited

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def scheduling():
    """The measuring process's scheduling: its niceness and policy, the same in every backend."""
    try:
        policy = {os.SCHED_OTHER: "other", os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr",
                  getattr(os, "SCHED_BATCH", -1): "batch", getattr(os, "SCHED_IDLE", -2): "idle"}.get(
            os.sched_getscheduler(0), "other")
        return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "policy": policy}
    except (OSError, AttributeError):
        return None


def read_through(paths, chunk=1 << 20):
    """Read files whole, so their pages sit in the page cache, charged to whoever reads them now."""
    buffer = bytearray(chunk)
    for path in paths:
        try:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buffer):
                    pass
        except OSError:
            pass  # an unreadable model is reported as that model's error row


def mapped_files():
    """Files this process has mapped: the interpreter, numpy's and the runtime's shared libraries."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                found.add(fields[5].strip())
    return sorted(p for p in found if os.path.isfile(p))


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


# ---------------------------------------------------------------- one model, in the worker

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
    idle_cgroup_mb = _mb(cgroup.usage_bytes()) if opts.cgroup else None
    t0 = time.perf_counter_ns()
    session = rt.load(path, opts.threads, **load_options(runtime, opts))
    load_ms = (time.perf_counter_ns() - t0) / 1e6
    setup = rt.info(session) if hasattr(rt, "info") else None
    specs = rt.describe(session)
    shapes = resolve_shapes(specs, opts.batch, parse_input_shapes(opts.input_shapes), os.path.basename(path))
    run = rt.runner(session, make_inputs(specs, shapes, opts.seed))

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

    waits = RunQueueWait()  # the runtime's threads exist now: each one's run-queue delay is read
    timings, wait_ns = [], []
    rss_samples = [] if opts.sample_memory else None
    statm = os.open("/proc/self/statm", os.O_RDONLY) if rss_samples is not None else None
    page = os.sysconf("SC_PAGE_SIZE")
    clock = time.perf_counter_ns
    from profiler.telemetry import Watch

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
    samples_ms = [t / 1e6 for t in timings]
    blocks.tick(len(timings), last=True)
    telemetry = watch.finish(len(timings))
    cores = len(os.sched_getaffinity(0))
    if opts.threads > cores:
        # The model's own threads wait for each other: no neighbour is to blame and no run is
        # cleaner than another, so every run counts and the record says why.
        stats, disturbance = robust_stats(samples_ms, None, None)
        disturbance["oversubscribed"] = {"threads": opts.threads, "cores": cores,
                                         "wait_share": round(sum(wait_ns) / max(1, sum(timings)), 4)}
    else:
        stats, disturbance = robust_stats(samples_ms, [w / 1e6 for w in wait_ns], waits.source,
                                          single_thread=opts.threads == 1)
    disturbance["neighbour_busy"] = neighbour_busy(neighbours_before, cpu_times())
    disturbance["neighbour"] = neighbour_effect(samples_ms, None if opts.threads > cores else wait_ns, blocks.spans,
                                                disturbance["neighbour_busy"])
    if opts.target_ci:
        disturbance["convergence"] = {
            "target_ci": opts.target_ci, "ci_rel": stats["ci_rel"], "runs": len(timings),
            "stopped": ("target" if stats["ci_rel"] <= opts.target_ci else
                        "max_runs" if len(timings) >= MAX_ADAPTIVE_RUNS else "budget"),
            "time_budget_s": opts.time_budget}

    op_time_ms = None
    if opts.op_profile and hasattr(rt, "op_times"):
        op_time_ms = rt.op_times(path, opts.threads, make_inputs(specs, shapes, opts.seed), opts.op_profile,
                                 classify_op)

    result = {
        "runtime_setup": setup, "telemetry": telemetry,
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
    # The peak is what the model's run holds: the worker's resident high-water mark over the load
    # and the first runs (anonymous memory plus the model and library pages it maps), the figure
    # benchmark_model reports on a device. The cgroup's peak also counts whichever file pages it was
    # charged for reading, which moves with the page cache and the models run before, so it is kept
    # as a diagnostic only.
    result["peak_memory_mb"], result["idle_memory_mb"] = round(at_peak["VmHWM"], 3), idle_rss_mb
    result["memory_source"] = "vmhwm"
    result["memory"] = {
        "basis": "load_and_first_runs", "allocator": allocator.name,
        "anon_mb": round(at_peak.get("RssAnon", 0.0) + at_peak.get("RssShmem", 0.0), 3),
        "file_mb": round(at_peak.get("RssFile", 0.0), 3), "whole_run_peak_mb": result["rss_peak_mb"]}
    if opts.data:  # after the timed runs and the peak, so neither includes it
        from profiler.evaluate import evaluate

        result["accuracy"] = evaluate(rt, session, specs, shapes, opts.data, opts.task, runtime,
                                      limit=cgroup.limit_bytes() if opts.cgroup else None, sha256=opts.data_sha256)
    if opts.cgroup:
        peak = cgroup.peak_bytes()
        result["cgroup"] = {"limit_mb": _mb(cgroup.limit_bytes()), "peak_mb": _mb(peak),
                            "anon_mb": _mb(cgroup.anon_bytes()), "throttling": cgroup.throttling(),
                            "idle_mb": idle_cgroup_mb}
    return result


def _mb(value):
    return None if value is None else round(value / MIB, 3)


def _worker(path, runtime, opts, cgroup, write_fd):
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


# ---------------------------------------------------------------- supervisor

def model_name(path):
    """The file stem, printable."""
    return printable(os.path.splitext(os.path.basename(path))[0])


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


WORKER_SPREAD = 0.10  # worker medians further apart than this share of the median: flagged `unstable`


def load_options(runtime, opts):
    """The adapter's own settings: the TFLite delegate, ONNX Runtime's execution providers."""
    if runtime == "tflite" and getattr(opts, "delegate", None):
        return {"delegate": opts.delegate}
    if runtime == "onnx" and getattr(opts, "execution_providers", None):
        return {"providers": opts.execution_providers.split(",")}
    return {}


def run_model(path, runtime, opts, cgroup):
    """Measure one model in opts.workers fresh worker processes, the timed runs split between them,
    and pool their runs (pyperf's design): one process that happens to run slow (its memory layout,
    a frequency step) moves the figure little, and the spread of the workers' medians says it happened."""
    workers = max(1, min(opts.workers, opts.iterations))
    if workers == 1 or not opts.fork:
        return run_worker(path, runtime, opts, cgroup)
    import copy

    parts = []
    for k in range(workers):
        share = copy.copy(opts)
        share.iterations = opts.iterations // workers + (1 if k < opts.iterations % workers else 0)
        share.keep_samples = True  # pooled below
        share.time_budget = opts.time_budget / workers
        if k:  # once is enough: the per-operator profile and the evaluation come from the first worker
            share.op_profile, share.data = 0, None
        part = run_worker(path, runtime, share, cgroup)
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


def run_worker(path, runtime, opts, cgroup):
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
        _worker(path, runtime, opts, cgroup, write_fd)
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


def seen_inside(cgroup):
    """The caps as this process sees them: its cores and its memory cgroup's limit (how a backend
    reads back what it enforced)."""
    limit = cgroup.limit_bytes() if cgroup.version else None
    return {"cpus_allowed": sorted(os.sched_getaffinity(0)), "memory_limit_mb": _mb(limit) if limit else None}


def profile_models(opts, emit):
    cgroup = Cgroup()
    if opts.cgroup and cgroup.version is None:
        opts.cgroup = False
    inside = seen_inside(cgroup)
    versions = {}
    for index, path in enumerate(opts.models):
        record = {"result_version": RESULT_VERSION, "model": model_name(path),
                  "path": path, "format": os.path.splitext(path)[1].lstrip(".").lower(),
                  "threads": opts.threads, "batch": opts.batch, "seed": opts.seed,
                  "warmup": opts.warmup, "iterations": opts.iterations,
                  "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host_info(), "seen_inside": inside}
        if getattr(opts, "cool_down_c", 0):
            from profiler.telemetry import cool_down

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
                            + (f"; with {opts.threads} threads one waiting thread stalls the others, so the time on "
                               "a CPU cannot stand in for them" if opts.threads > 1 else ""))
        if "recovered" in record["flags"]:
            d = record["disturbance"]
            warnings.append(f"{name}: {d['runs']} of {d['of']} timed runs waited for a core; its figures are each "
                            f"run's time on a CPU (wall minus the wait), recovered: wall median "
                            f"{d['wall']['median']:.4g} ms, on a CPU {record['latency_ms']['median']:.4g} ms "
                            "(another program shares this core)")
        record["warnings"] = warnings
        emit(record)


CSV_COLUMNS = ["model", "threads", "status", "latency_ms", "latency_mean_ms", "latency_p90_ms",
               "latency_p99_ms", "load_ms", "peak_memory_mb", "rss_peak_mb", "idle_memory_mb",
               "runtime", "runtime_version", "sha256", "error"]


def csv_row(record):
    stats = record.get("latency_ms") or {}
    return {"model": record["model"], "threads": record["threads"], "status": record["status"],
            "latency_ms": stats.get("median"), "latency_mean_ms": stats.get("mean"),
            "latency_p90_ms": stats.get("p90"), "latency_p99_ms": stats.get("p99"),
            "load_ms": record.get("load_ms"), "peak_memory_mb": record.get("peak_memory_mb"),
            "rss_peak_mb": record.get("rss_peak_mb"), "idle_memory_mb": record.get("idle_memory_mb"),
            "runtime": record.get("runtime"), "runtime_version": record.get("runtime_version"),
            "sha256": record.get("sha256"), "error": record.get("error")}


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
