"""Many models at once: JOBS sandboxes (or Slurm steps) in parallel, each on its own cores, and
models already in the store for this target skipped, so an interrupted sweep resumes.

The backend does the measuring; this module only deals models out to JOBS threads, each of which
runs one batch at a time through `Backend.run`. Every record still goes through one callback,
under a lock, so the store, the exports and the progress bar see one model at a time.
"""

import math
import queue
import threading
import time
from dataclasses import replace

from profiler.sandbox import physical_first_cores

CHUNKS_PER_JOB = 2  # smaller batches balance uneven models; each batch costs one sandbox start


def core_sets(target):
    """JOBS disjoint sets of ceil(CPUS) cores, physical cores first (None: the backend chooses)."""
    if target.backend == "slurm" or target.jobs == 1:
        return [None] * target.jobs
    width = math.ceil(target.cpus)
    cores = list(target.assigned_cores or target.cpu_set or physical_first_cores())  # assigned: the run's free cores
    return [sorted(cores[i * width:(i + 1) * width]) for i in range(target.jobs)]


def batches(groups, jobs, chunks_per_job=CHUNKS_PER_JOB):
    """(runtime, paths) batches: one per runtime when serial, else about chunks_per_job per job."""
    out = []
    for runtime, paths in groups.items():
        size = len(paths) if jobs == 1 else max(1, math.ceil(len(paths) / (jobs * chunks_per_job)))
        out += [(runtime, paths[i:i + size]) for i in range(0, len(paths), size)]
    return out


def expected_key(store_key, sha256, target, runtime, version, backend):
    return store_key({"sha256": sha256, "target": target.describe(), "runtime": runtime,
                      "runtime_version": version, "backend": backend, "settings": target.settings()})


def from_store(store, backend, target, groups):
    """Split groups into (records already measured for this target, groups still to run, how many
    stored records were shaky and are run again).

    A stored record counts when its model's sha256, the target, the measurement settings, the
    runtime and its version and the backend all match (the version is the one the backend's empty
    run reports), and its figures are not flagged unstable or disturbed."""
    from profiler.harness.files import sha256_of
    from profiler.stability import shaky
    from profiler.store import result_key

    found, remaining, flagged = [], {}, 0
    for runtime, paths in groups.items():
        version = backend.overhead(target, runtime).get("runtime_version")
        for path in paths:
            record = store.get(expected_key(result_key, sha256_of(path), target, runtime, version, backend.name))
            if record is not None and version and not shaky(record):
                record = dict(record, path=path, from_store=True)
                found.append(record)
            else:
                flagged += record is not None and bool(version)
                remaining.setdefault(runtime, []).append(path)
    return found, remaining, flagged


def run_all(backend, target, groups, on_result):
    """Profile every group through the backend, target.jobs batches at a time."""
    if target.jobs == 1:
        for runtime, paths in groups.items():
            backend.run(target, paths, on_result, runtime=runtime)
        return
    for runtime in groups:
        backend.overhead(target, runtime)  # the image build and the empty run, once, before the threads
    work = queue.Queue()
    # A Slurm job costs seconds to start (submission, scheduling, interpreter): one batch per step.
    for item in batches(groups, target.jobs, 1 if target.backend == "slurm" else CHUNKS_PER_JOB):
        work.put(item)
    lock = threading.Lock()
    errors = []

    def locked(record):
        with lock:
            on_result(record)

    finished = []

    def worker(cores):
        own = replace(target, assigned_cores=cores)
        try:
            while not backend.cancelled and not errors:
                try:
                    runtime, paths = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    backend.run(own, paths, locked, runtime=runtime)
                except BaseException as exc:  # re-raised in the main thread, which owns the exit
                    errors.append(exc)
                    backend.cancel()
        finally:
            finished.append(cores)

    threads = [threading.Thread(target=worker, args=(cores,), daemon=True) for cores in core_sets(target)]
    for thread in threads:
        thread.start()

    def wait(limit=None):
        # Polled rather than Thread.join(): a join that Ctrl-C interrupts can report a live thread as ended.
        deadline = None if limit is None else time.monotonic() + limit
        while len(finished) < len(threads) and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)

    try:
        wait()
    except BaseException:
        backend.cancel()
        wait(60)  # each thread stops its sandbox (or Slurm job) before it ends
        raise
    if errors:
        raise errors[0]
