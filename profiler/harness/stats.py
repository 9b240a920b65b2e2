"""Statistics of one model's timed runs: percentiles, the median's confidence interval, and which runs
a wait for a core disturbed (figures from the undisturbed runs, or recovered from each run's time on a CPU)."""

import math


UNSTABLE_IQR_RATIO = 0.10


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


WORKER_SPREAD = 0.10  # worker medians further apart than this share of the median: flagged `unstable`
