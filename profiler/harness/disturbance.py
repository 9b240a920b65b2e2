"""What else the measuring cores did: each run's wait for a core (schedstat), the neighbour cores'
load (/proc/stat) and whether runs timed while they were busy were slower, and this process's scheduling."""

import os
import statistics
import time

from profiler.harness.stats import DISTURBED_WAIT_SHARE


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
