"""Which host cores a run measures on: free ones, and said so.

Before a run the tool samples how busy each usable core is (/proc/stat, SAMPLE_S) and which cores
another edge-profiler run on this host holds (an abstract socket per core, for any user and any
backend). Without CPU_SET it takes the cores that are neither held nor busy, physical cores first;
with CPU_SET it takes those and warns when they are held or busy. The locks are held until the run
ends, so two runs at once never share a core silently. The choice goes into every record (`cores`).
"""

import errno
import math
import os
import time
from dataclasses import dataclass, field


def physical_first_cores(allowed=None):
    """Host cores ordered so that distinct physical cores come before SMT siblings."""
    allowed = sorted(allowed if allowed is not None else os.sched_getaffinity(0))
    first, siblings, seen = [], [], set()
    for cpu in allowed:
        path = f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        try:
            group = open(path).read().strip()
        except OSError:
            group = str(cpu)
        (siblings if group in seen else first).append(cpu)
        seen.add(group)
    return first + siblings


NAME_PREFIX = "edge-profiler-cpu"  # the abstract socket name a run binds for each core it measures on
SAMPLE_S = 0.2
BUSY = 0.25  # a core busier than this in the sample is taken only when no other is left


def core_load(cores, seconds=SAMPLE_S):
    """{core: share of the sample it spent busy} from two reads of /proc/stat."""
    from profiler.harness.disturbance import cpu_times

    before = cpu_times()
    time.sleep(seconds)
    after = cpu_times()
    load = {}
    for core in cores:
        if core in before and core in after:
            total = after[core][0] - before[core][0]
            idle = after[core][1] - before[core][1]
            load[core] = round(1 - idle / total, 3) if total > 0 else 0.0
    return load


def _lock(core):
    """A claim on this core, or None when another run holds it: an abstract UNIX socket bound to
    NAME_PREFIX + core (Linux). Only one process can hold a name, for every user on this host; the
    kernel drops it when the process ends, however it ends, and it leaves no file behind."""
    import socket

    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0{NAME_PREFIX}{core}")
    except OSError as exc:
        claim.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        return False  # no abstract sockets here: nothing to coordinate through, the core counts as free
    return claim


@dataclass
class CoreChoice:
    cores: list
    info: dict
    warnings: list = field(default_factory=list)
    fds: list = field(default_factory=list)

    def release(self):
        for claim in self.fds:
            claim.close()
        self.fds = []


def choose(candidates, needed, explicit=False, sample_s=SAMPLE_S):
    """Claim `needed` of the candidate cores (in preference order); with explicit, exactly those."""
    load = core_load(candidates, sample_s)
    # Claimed one at a time in the order of preference, so two runs starting together take
    # different cores instead of each seeing the other's passing claims.
    order = candidates if explicit else sorted(candidates, key=lambda c: (load.get(c, 0.0) > BUSY,
                                                                          candidates.index(c)))
    kept, chosen, held = [], [], []
    for core in order:
        if len(chosen) >= needed and not explicit:
            break
        fd = _lock(core)
        if fd is None:
            held.append(core)
            if explicit:
                chosen.append(core)
            continue
        if fd is not False:
            kept.append(fd)
        chosen.append(core)
    warnings = []
    how = "CPU_SET" if explicit else "free" if all(load.get(c, 0.0) <= BUSY for c in chosen) else "busy"
    if len(chosen) < needed:  # every core is held by other runs: share the least busy of theirs
        chosen += sorted(held, key=lambda c: load.get(c, 0.0))[:needed - len(chosen)]
        how = "shared"
    shared = sorted(set(chosen) & set(held))
    busy = sorted(c for c in chosen if load.get(c, 0.0) > BUSY)
    if shared:
        warnings.append(f"WARNING: core(s) {','.join(map(str, shared))} are held by another edge-profiler run on "
                        "this host; both measure on them, and the figures will show it (disturbed runs)")
    if busy:
        warnings.append(f"WARNING: core(s) {','.join(map(str, busy))} were busy before the run ("
                        + ", ".join(f"cpu{c} {100 * load[c]:.0f}%" for c in busy) + "); close other programs"
                        + ("" if explicit else " or free a core"))
    chosen = sorted(chosen)
    info = {"used": chosen, "how": how, "load": {str(c): load.get(c) for c in candidates},
            "held_by_others": held}
    return CoreChoice(chosen, info, warnings, kept)


def for_target(target):
    """The CoreChoice for a local or Docker run of this target (None for Slurm and SSH, whose cores are
    another machine's or the scheduler's)."""

    if target.backend in ("slurm", "ssh"):
        return None
    width = math.ceil(target.cpus) * target.jobs
    if target.cpu_set:
        return choose(list(target.cpu_set), width, explicit=True)
    return choose(physical_first_cores(), width)
