"""edge-profiler sweep benchmarks: parallel sandboxes, Slurm, and the cost of a whole search space.

    make bench                     # or: .venv/bin/python benchmarks/sweep.py [--models 100]

(g) N small ONNX CNNs, local backend, --cpus 1: wall with --jobs 2 / wall with --jobs 1, same run
    (target <= 0.6; the limit is 0.5). Interference: the median of one model profiled while the
    other core runs another sandbox / alone (target within 3%), local and Docker.
(h) the same N models through Slurm (single node) with --jobs 2 / the local backend with --jobs 2
    (target <= 1.3)
(i) extrapolated, not run: all 15,625 NAS-Bench-201 cells at one core each, from the measured
    per-cell cost (10 cells, 10 warm-up + 100 runs, local backend), on this machine and on a
    100-node, 64-core cluster
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments.examples.models import cnn_onnx  # noqa: E402
from profiler.config import load_target  # noqa: E402
from profiler.sandbox import physical_first_cores  # noqa: E402
from profiler.sandbox.local import LocalBackend  # noqa: E402
from profiler.sweep import run_all  # noqa: E402

NB201_CELLS = 15625
MEDIUM = dict(size=224, channels=(32, 64, 96))


def sweep(backend, target, paths):
    records = []
    start = time.perf_counter()
    run_all(backend, target, {"onnx": list(paths)}, records.append)
    return time.perf_counter() - start, records


def interference(backend, medium, cores, rounds=3):
    """Median latency of one model on cores[0], alone and while another sandbox loads cores[1]."""
    target = load_target(None, {"CPUS": "1", "CPU_SET": str(cores[0]), "MEMORY": "1g", "ITERATIONS": "300"})
    noisy = load_target(None, {"CPUS": "1", "CPU_SET": str(cores[1]), "MEMORY": "1g", "ITERATIONS": "100000",
                               "TIMEOUT_S": "3600"})
    alone, busy = [], []
    for _ in range(rounds):
        alone.append(sweep(backend, target, [medium])[1][0]["latency_ms"]["median"])
        stop = threading.Event()

        def load():
            while not stop.is_set():
                sweep(backend, noisy, [medium])

        neighbour = threading.Thread(target=load, daemon=True)
        neighbour.start()
        time.sleep(2.0)  # the neighbour is past its start-up and measuring
        busy.append(sweep(backend, target, [medium])[1][0]["latency_ms"]["median"])
        stop.set()
        backend.cancel()
        neighbour.join(60)
        backend.cancelled = False
    return statistics.median(alone), statistics.median(busy)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100, help="small CNNs for (g) and (h) (default 100)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-profiler-sweep-") as work:
        run(opts, work)


def run(opts, work):
    cores = physical_first_cores()
    figures = {}
    if len(cores) < 2:
        print("(g), (h) skipped: this machine has one usable core")
        return
    small = [cnn_onnx(os.path.join(work, f"small_{i:03d}.onnx"), size=128, channels=(32, 64, 64), seed=i)
             for i in range(opts.models)]
    medium = cnn_onnx(os.path.join(work, "medium.onnx"), **MEDIUM)
    base = {"CPUS": "1", "MEMORY": "1g", "WARMUP": "10", "ITERATIONS": "50"}
    local = LocalBackend()
    serial_wall, _ = sweep(local, load_target(None, dict(base, JOBS="1")), small)
    parallel_wall, records = sweep(local, load_target(None, dict(base, JOBS="2")), small)
    figures["g_jobs2_over_jobs1"] = parallel_wall / serial_wall
    print(f"(g) {len(small)} CNNs, local, --cpus 1: --jobs 2 {parallel_wall:.2f} s / --jobs 1 {serial_wall:.2f} s = "
          f"{figures['g_jobs2_over_jobs1']:.3f}   (target <= 0.6)")
    alone, busy = interference(local, medium, cores)
    figures["g_interference_local"] = busy / alone - 1
    print(f"    interference, local: median {busy:.4f} ms with the other core busy vs {alone:.4f} ms alone: "
          f"{100 * figures['g_interference_local']:+.2f}%   (target within 3%)")
    from profiler.sandbox.docker import DockerBackend, engine_problem

    problem = engine_problem()
    if problem:
        print(f"    interference, Docker: skipped ({problem})")
    else:
        docker = DockerBackend(notice=lambda m: None)
        docker.image_for("onnx")
        alone, busy = interference(docker, medium, cores)
        figures["g_interference_docker"] = busy / alone - 1
        print(f"    interference, Docker: median {busy:.4f} ms with the other core busy vs {alone:.4f} ms alone: "
              f"{100 * figures['g_interference_docker']:+.2f}%   (target within 3%)")

    if shutil.which("sbatch") is None:
        print("(h) skipped: no Slurm on this machine (containers/start-slurm.sh starts one)")
    else:
        from profiler.sandbox.slurm import SlurmBackend

        target = load_target(None, dict(base, JOBS="2", BACKEND="slurm",
                                        SLURM_FOLDER=os.path.join(work, "slurm-jobs")))
        slurm = SlurmBackend(target)
        slurm.overhead(target, "onnx")  # both backends' one-time empty run happens before the timing
        slurm_wall, slurm_records = sweep(slurm, target, small)
        slurm.close()
        local_target = load_target(None, dict(base, JOBS="2"))
        local.overhead(local_target, "onnx")
        local_wall, _ = sweep(local, local_target, small)
        figures["h_slurm_over_local"] = slurm_wall / local_wall
        ok = sum(r["status"] == "ok" for r in slurm_records)
        print(f"(h) {len(small)} CNNs ({ok} ok), --jobs 2: Slurm {slurm_wall:.2f} s / local {local_wall:.2f} s = "
              f"{figures['h_slurm_over_local']:.3f}   (target <= 1.3); an empty Slurm step costs "
              f"{slurm.overhead(target, 'onnx')['empty_run_ms']:.0f} ms")

    # (i) per-cell cost of NAS-Bench-201 at the default settings, one core
    try:
        from experiments.zoo import nb201
    except ImportError as exc:
        print(f"(i) skipped: {exc} (the torch extra builds the cells)")
        print(json.dumps({k: round(v, 4) for k, v in figures.items()}))
        return
    cells = nb201.export_random_cells(work, 10)
    wall, _ = sweep(local, load_target(None, {"CPUS": "1", "MEMORY": "1g", "JOBS": "1"}), cells)
    per_cell = wall / len(cells)
    here = NB201_CELLS * per_cell / len(cores)
    cluster = NB201_CELLS * per_cell / (100 * 64)
    figures.update(i_seconds_per_cell=per_cell, i_hours_here=here / 3600, i_minutes_cluster=cluster / 60)
    print(f"(i) NAS-Bench-201: {per_cell:.2f} s per cell (10 cells, 10 warm-up + 100 runs, one core, local); "
          f"all {NB201_CELLS} cells: {here / 3600:.1f} h on this machine ({len(cores)} cores, --jobs {len(cores)}), "
          f"{cluster:.2f} s of measuring on 100 nodes x 64 cores (6,400 one-core steps at once, 2.4 cells each; "
          "extrapolated, not run), to which each step adds its start-up (the empty step above)")
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
