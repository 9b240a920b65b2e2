"""What evaluating on --data costs: the wall time of `profile` on a model of about 1 ms, with and
without 1,000 labelled samples to evaluate after the timed runs.

    make bench                     # or: .venv/bin/python benchmarks/evaluation.py [--rounds 3]

(l) (wall with --data - wall without) / wall without, the medians of interleaved rounds, local
    backend, the env.template settings (10 warm-up + 100 timed runs)   (target <= 10%)

Each sample runs alone (batch 1, as on the device), so 1,000 samples of a 1 ms model cost at least
a second of inference; the figure says how that compares with the rest of a profile.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments.examples.models import cnn_onnx  # noqa: E402

SAMPLES = 1000
SIZE = 112  # a 112×112 CNN (16, 32, 32 channels): about 1 ms per inference on one core of a 2-vCPU EPYC


def wall(args):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "profiler.cli", *args], capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"profile failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return elapsed


def main():
    import json

    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each (default 3)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-profiler-bench-") as work:
        model = cnn_onnx(os.path.join(work, "cnn_1ms.onnx"), size=SIZE, channels=(16, 32, 32))
        rng = np.random.default_rng(0)
        data = os.path.join(work, "data.npz")
        np.savez(data, x_data=rng.random((SAMPLES, 3, SIZE, SIZE), dtype=np.float32),
                 y_data=rng.integers(0, 10, SAMPLES))
        common = ["--env", "env.template", "--backend", "local", "--no-store", "--retries", "0", "--quiet",
                  "--json", os.path.join(work, "r.json"), model]
        plain, evaluated = [], []
        for _ in range(opts.rounds):
            plain.append(wall(common))
            evaluated.append(wall(["--data", data] + common))
        record = json.load(open(os.path.join(work, "r.json")))[0]
    median = record["latency_ms"]["median"]
    added = statistics.median(evaluated) / statistics.median(plain) - 1
    extra = statistics.median(evaluated) - statistics.median(plain) - SAMPLES * median / 1000
    print(f"(l) a {median:.2f} ms model: profile wall {statistics.median(plain):.2f} s without --data, "
          f"{statistics.median(evaluated):.2f} s with {SAMPLES} samples (median of {opts.rounds} rounds each): "
          f"{100 * added:+.1f}%   (target <= 10%)")
    print(f"    the samples' own inference: {SAMPLES} × {median:.2f} ms = {SAMPLES * median / 1000:.2f} s; the rest "
          f"(loading, feeding, metrics): {extra:.2f} s, {100 * extra / statistics.median(plain):+.1f}% of the wall")
    print(json.dumps({"l_model_median_ms": round(median, 4), "l_wall_plain_s": round(statistics.median(plain), 3),
                      "l_wall_with_data_s": round(statistics.median(evaluated), 3),
                      "l_added": round(added, 4), "l_added_beyond_inference_s": round(extra, 3)}))


if __name__ == "__main__":
    main()
