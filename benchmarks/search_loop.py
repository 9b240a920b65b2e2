"""edge-profiler search-loop benchmark: `calibration.predict_model` as a NAS loop calls it.

    make bench                     # or: .venv/bin/python benchmarks/search_loop.py [--networks 50]

(j) cache hits: N NAS-Bench-201 ONNX cells already in the store; the median time of one
    predict_model call (hash the file, look the record up, predict). Target: <= 5 ms.
(k) new networks: N other cells, each profiled once by profiler.profile([path]) into one store and
    once by predict_model into another, in alternating order; the median of predict_model's time
    over profile's, per network. Target: <= 1.05 (prediction costs at most 5% on top of profiling).
    For scale, the time per network of one profile() call over all N (one sandbox for the batch).
Local backend, CPUS=1, THREADS=1, 10 warm-up + 40 runs; the calibration is the bundled Raspberry Pi 5
example (ols, ONNX, one thread).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.chdir(ROOT)

import calibration  # noqa: E402
import profiler  # noqa: E402

CALIBRATION = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "calib_ols.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", type=int, default=50)
    opts = parser.parse_args()
    try:
        from experiments.zoo import nb201
    except ImportError as exc:
        print(f"(j, k) skipped: {exc} (the torch extra builds the cells)")
        return
    with tempfile.TemporaryDirectory(prefix="edge-profiler-bench-") as work:
        run(opts.networks, work, nb201)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return time.perf_counter() - start, value


def run(n, work, nb201):
    target = profiler.Target.from_env(None, backend="local", cpus=1, threads=1, memory="1g", warmup=10,
                                      iterations=40)
    cal = calibration.load(CALIBRATION)
    known = nb201.export_random_cells(work, n, seed=1)
    new = nb201.export_random_cells(work, n, seed=2)
    store = os.path.join(work, "known.db")
    batch_s, _ = timed(profiler.profile, known, target, store=store)

    with profiler.Profiler(target, store=store) as session:  # the store and the backend stay open
        calibration.predict_model(known[0], cal, session=session)
        hits, rows = [], []
        for path in known:
            seconds, row = timed(calibration.predict_model, path, cal, session=session)
            hits.append(seconds * 1000)
            rows.append(row)
    assert all(r["status"] == "ok" and r.get("predicted_latency_ms") for r in rows), rows[:2]
    hit_ms = statistics.median(hits)
    print(f"(j) predict_model on {n} networks already in the store: median {hit_ms:.2f} ms per call "
          f"(p90 {sorted(hits)[int(0.9 * n)]:.2f} ms)   (target <= 5 ms)")

    with profiler.Profiler(target, store=os.path.join(work, "profile.db")) as profiling, \
            profiler.Profiler(target, store=os.path.join(work, "predict.db")) as predicting:
        profiling.profile(new[:1])  # each session's one-time empty run
        calibration.predict_model(new[0], cal, session=predicting)
        ratios, profile_s, predict_s = [], [], []
        for i, path in enumerate(new[1:]):
            def by_profile():
                return timed(profiling.profile, [path])[0]

            def by_predict():
                return timed(calibration.predict_model, path, cal, session=predicting)[0]

            if i % 2:
                b, a = by_predict(), by_profile()
            else:
                a, b = by_profile(), by_predict()
            profile_s.append(a)
            predict_s.append(b)
            ratios.append(b / a)
    ratio = statistics.median(ratios)
    print(f"(k) {len(profile_s)} new networks: predict_model {statistics.median(predict_s) * 1000:.0f} ms, profile "
          f"{statistics.median(profile_s) * 1000:.0f} ms per network (medians); median ratio {ratio:.3f}   "
          f"(target <= 1.05); one profile() call over {n} networks takes {batch_s / n * 1000:.0f} ms per network")
    print(json.dumps({"j_hit_ms": round(hit_ms, 3), "k_predict_over_profile": round(ratio, 4),
                      "k_predict_ms": round(statistics.median(predict_s) * 1000, 1),
                      "k_profile_ms": round(statistics.median(profile_s) * 1000, 1),
                      "k_batch_ms_per_network": round(batch_s / n * 1000, 1)}))


if __name__ == "__main__":
    main()
