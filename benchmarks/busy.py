"""edge-profiler on a busy laptop: how far each figure moves when the host is not quiet, and what the
tool did about it.

    make bench                     # or: .venv/bin/python benchmarks/busy.py [--backend local]

Six ONNX CNNs from about 0.5 ms to about 40 ms host latency, profiled through the API (the tool's own
core choice, disturbance filtering and re-measurement) under:
  quiet  nothing else running
  (a)    a CPU hog on every core
  (b)    a second `profile` of other models started at the same moment
  (c)    a memory-bandwidth hog (a 256 MiB copy loop) on the other core
Printed per model and condition: the median over the quiet median, the share of disturbed runs, and
what the tool did (re-measured, flagged, the cores it chose). Then the Kendall τ of each busy ranking
against the quiet one, over the unflagged rows, and per condition how many rows were flagged and how
many of those were within 1% of quiet. Targets: every unflagged median within 3% of quiet; no row off
by more than 3% without a flag; at most one flagged row within 1% of quiet per condition; τ = 1 where
the quiet intervals do not overlap. The hogs
are started here, bounded in time (HOG_S), and stopped here.
"""

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments.examples.models import cnn_onnx  # noqa: E402

import profiler  # noqa: E402
from profiler.report import flags  # noqa: E402

HOG_S = 300
MODELS = {  # name: cnn_onnx settings, about 0.5 ms to about 40 ms on a 2-core server host
    "c32": dict(size=32, channels=(16, 32)),
    "c64": dict(size=64, channels=(16, 32)),
    "c96": dict(size=96, channels=(24, 48)),
    "c128": dict(size=128, channels=(32, 64)),
    "c160": dict(size=160, channels=(32, 64, 96)),
    "c224": dict(size=224, channels=(32, 64, 96)),
}
CPU_HOG = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"
MEMORY_HOG = ("import numpy, time\na = numpy.ones(32 << 20); b = numpy.empty_like(a)\nend = time.time() + {s}\n"
              "while time.time() < end: numpy.copyto(b, a)\n")


@contextlib.contextmanager
def hogs(code, cores):
    """A bounded hog process pinned to each core, killed on the way out."""
    procs = [subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c", code.format(s=HOG_S)])
             for core in cores]
    try:
        time.sleep(0.5)
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def kendall(a, b):
    from scipy import stats

    return float(stats.kendalltau(a, b).statistic) if len(a) > 1 else 1.0


def run(paths, target):
    results = profiler.profile(paths, target, store=None)
    return {r["model"]: r for r in results}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="local", choices=["local", "docker"])
    parser.add_argument("--iterations", type=int, default=100)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-profiler-busy-") as folder:  # removed with its models
        measure(opts, folder)


def measure(opts, folder):
    cores = sorted(os.sched_getaffinity(0))
    paths = [str(cnn_onnx(os.path.join(folder, f"{name}.onnx"), **spec)) for name, spec in MODELS.items()]
    others = [str(cnn_onnx(os.path.join(folder, f"other{i}.onnx"), size=160, channels=(32, 64, 96), seed=i))
              for i in range(4)]
    target = profiler.Target.from_env(os.path.join(ROOT, "env.template"), backend=opts.backend, cpus=1, threads=1,
                                      iterations=opts.iterations)
    quiet = run(paths, target)
    conditions = {}
    with hogs(CPU_HOG, cores):
        conditions["(a) CPU hog on every core"] = run(paths, target)
    second = subprocess.Popen([sys.executable, "-m", "profiler.cli", "--env", os.path.join(ROOT, "env.template"),
                               "--backend", opts.backend, "--cpus", "1", "--no-store", "--quiet", *others],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conditions["(b) a second profile at once"] = run(paths, target)
    finally:
        second.wait(timeout=600)
    with hogs(MEMORY_HOG, cores[-1:]):
        conditions["(c) memory hog on the other core"] = run(paths, target)

    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    print(f"busy laptop ({opts.backend} backend, {opts.iterations} runs, {len(cores)} cores); quiet medians:")
    print("  " + ", ".join(f"{n} {quiet[n]['latency_ms']['median']:.3f} ms" for n in names))
    worst_unflagged, unflagged_off = 0.0, 0
    for condition, records in conditions.items():
        print(f"\n{condition}")
        print(f"  {'model':6} {'ratio':>6} {'disturbed':>9}  flags / what the tool did")
        for n in names:
            r, q = records[n], quiet[n]
            ratio = r["latency_ms"]["median"] / q["latency_ms"]["median"]
            d = r.get("disturbance") or {}
            shown = flags(r)
            did = ", ".join(shown) or "none"
            print(f"  {n:6} {ratio:6.3f} {100 * (d.get('share') or 0):8.1f}%  {did}; cores {r['cores']['used']} "
                  f"({r['cores']['how']})")
            if not shown:
                worst_unflagged = max(worst_unflagged, abs(ratio - 1))
                unflagged_off += abs(ratio - 1) > 0.05
        ratios = {n: records[n]["latency_ms"]["median"] / quiet[n]["latency_ms"]["median"] for n in names}
        flagged = [n for n in names if flags(records[n])]
        print(f"  flagged {len(flagged)} of {len(names)}; flagged but within 1% of quiet: "
              f"{sum(abs(ratios[n] - 1) <= 0.01 for n in flagged)} (target <= 1); off by more than 3% unflagged: "
              f"{sum(abs(ratios[n] - 1) > 0.03 for n in names if n not in flagged)} (target 0)")
        steady = [n for n in names if not flags(records[n])]
        tau = kendall([quiet[n]["latency_ms"]["median"] for n in steady],
                      [records[n]["latency_ms"]["median"] for n in steady])
        print(f"  Kendall τ of the unflagged ranking against quiet: {tau:.3f} ({len(steady)} of {len(names)} unflagged)")
    print(f"\nworst unflagged median against quiet: {100 * worst_unflagged:.1f}% (target <= 3%); "
          f"unflagged rows off by more than 5%: {unflagged_off} (target 0)")


if __name__ == "__main__":
    main()
