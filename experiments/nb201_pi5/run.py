"""Host profiles + calibration against real Raspberry Pi 5 latencies (NAS-Bench-201).

    python experiments/nb201_pi5/run.py [--dataset ../shared/datasets/nb201-pi5] [--networks 240]
                                        [--draws 50] [--ks 5 10 20] [--out experiments/nb201_pi5]

1. draws distinct networks (distinct rep_arch_idx, fixed seed) from the dataset;
2. builds them with the zoo's NAS-Bench-201 builder and exports ONNX;
3. profiles them with edge-profiler under the device's own conditions (1 core, 1 thread,
   10 warm-up + 40 runs, median), with per-operator-class times; results are cached in a
   store, so a rerun only re-fits;
4. for each k and each draw of k reference networks, calibrates on the references and
   predicts all the others, for latency and energy, with every method.
Writes RESULTS.md, a predicted-vs-measured figure for a typical k = 10 draw and an
accuracy-against-k plot.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from calibration import metrics as M  # noqa: E402
from calibration.fitting import AUTO_CANDIDATES, auto_choice, auto_score, fit_group  # noqa: E402

METHODS = ("ols", "loglinear", "features", "relative", "auto")
TARGETS = {"latency": "lat_ms_median", "energy": "energy_mj"}


def load_dataset(folder):
    archs = os.path.join(folder, "nb201_archs.csv")
    measured = os.path.join(folder, "pi5_onnxruntime_cifar100.csv")
    for path in (archs, measured):
        if not os.path.isfile(path):
            raise SystemExit(f"nb201_pi5: {path} not found (give --dataset)")
    import pandas as pd

    table = pd.read_csv(measured).merge(pd.read_csv(archs)[["arch_idx", "arch_str"]], on="arch_idx")
    table = table[table["arch_idx"] == table["rep_arch_idx"]]  # the canonical row of each distinct network
    return {int(r.arch_idx): {"arch_str": r.arch_str, "lat_ms_median": float(r.lat_ms_median),
                              "energy_mj": float(r.energy_mj)} for r in table.itertuples()}


def check_draws(prog, ks, draws, networks):
    """One-line refusal of reference counts that cannot be fitted or leave nothing to predict."""
    if draws < 1:
        raise SystemExit(f"{prog}: --draws must be at least 1")
    bad = [k for k in ks if not 4 <= k < networks]
    if bad:
        raise SystemExit(f"{prog}: k = {bad[0]} is out of range: leave-one-out needs at least 4 references, "
                         f"and at least one of the {networks} networks must be left to predict")


def draw_networks(rows, count, seed):
    ids = sorted(rows)
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(ids, size=min(count, len(ids)), replace=False))


def build_models(ids, rows, folder):
    """{arch id: ONNX path}; networks exported before by the same code come from the export cache."""
    from experiments.zoo import cache

    def export(arch_str, seed, path):
        from experiments.zoo import export_onnx, nb201

        export_onnx(nb201.build(arch_str, seed=seed), nb201.INPUT_SHAPE, path)

    os.makedirs(folder, exist_ok=True)
    paths = {}
    for i in ids:
        path = os.path.join(folder, f"nb201_{i:05d}.onnx")
        key = cache.key(("experiments.zoo.nb201", "experiments.zoo"), ("torch", "onnx"), rows[i]["arch_str"], i)
        paths[i] = cache.make(key, path, lambda tmp, i=i: export(rows[i]["arch_str"], i, tmp))
    return paths


def profile_models(paths, store_path, backend_name, progress=True):
    """Profile what the store does not have yet; returns {arch id: host record}."""
    from experiments.seedlib import profile_cached

    env = {"DEVICE_NAME": "raspberry-pi-5", "CPUS": "1", "THREADS": "1", "WARMUP": "10", "ITERATIONS": "40",
           "MEMORY": "1g", "BACKEND": backend_name, "OP_PROFILE": "20"}
    return profile_cached(paths, store_path, env, "onnx", progress=progress)


def evaluate(ids, rows, records, ks, draws, seed):
    """Per (quantity, k, method): list of per-draw scores on the held-out networks."""
    ids = [i for i in ids if i in records]
    scores = {}
    typical = {}
    rng = np.random.default_rng(seed + 1)
    for k in ks:
        for draw in range(draws):
            refs = sorted(int(i) for i in rng.choice(ids, size=k, replace=False))
            held = [i for i in ids if i not in set(refs)]
            for quantity, column in TARGETS.items():
                y = [rows[i][column] for i in refs]
                names = [f"nb201_{i:05d}" for i in refs]
                recs = [records[i] for i in refs]
                x = [records[i]["latency_ms"]["median"] for i in refs]
                fits = {m: fit_group(names, recs, x, y, m) for m in AUTO_CANDIDATES}
                errors = {m: auto_score(f) for m, f in fits.items()}
                fits["auto"] = fits[auto_choice(errors)]
                measured = np.array([rows[i][column] for i in held])
                for method, fit in fits.items():
                    got = [fit.predict(records[i]["latency_ms"]["median"], records[i]) for i in held]
                    predicted = np.array([p["value"] for p in got])
                    inside = [p["low"] <= m <= p["high"] for m, p in zip(measured, got) if "low" in p]
                    score = {"mape": M.mape(measured, predicted), "within10": 100 * M.within(measured, predicted),
                             "spearman": M.spearman(measured, predicted), "kendall": M.kendall(measured, predicted),
                             "inside": int(sum(inside)), "intervals": len(inside)}
                    if method == "auto":
                        score["chose"] = auto_choice(errors)
                    scores.setdefault((quantity, k, method), []).append(score)
                    if k == 10 and quantity == "latency":
                        typical.setdefault(method, []).append((score["mape"], measured, predicted, refs, held))
    return scores, typical


def summarise(scores):
    table = {}
    for key, draws in scores.items():
        table[key] = {m: statistics.median(d[m] for d in draws) for m in ("mape", "within10", "spearman", "kendall")}
        if key[2] == "auto":
            chosen = [d["chose"] for d in draws]
            table[key]["chose"] = {c: chosen.count(c) for c in sorted(set(chosen))}
        table[key]["draws"] = len(draws)
        intervals = sum(d.get("intervals", 0) for d in draws)
        # pooled: the share of every held-out prediction of every draw inside its 95% interval
        table[key]["coverage"] = 100 * sum(d.get("inside", 0) for d in draws) / intervals if intervals else None
    return table


def write_results(out, table, meta, ks):
    lines = ["# NAS-Bench-201 on a Raspberry Pi 5: host profiles + calibration", "",
             "Generated by `python experiments/nb201_pi5/run.py` "
             f"({meta['networks']} networks, {meta['draws']} draws per k, seed {meta['seed']}).", "",
             f"- Device: Raspberry Pi 5, ONNX Runtime, 1 thread, pinned core; numbers from `{meta['dataset']}`.",
             f"- Host: {meta['host']}; edge-profiler {meta['backend']} backend, CPUS=1, THREADS=1, "
             f"10 warm-up + 40 runs, median, plus 20 runs of onnxruntime's per-operator profiler.",
             f"- Host profiles: {meta['profiled']}.",
             "- For each k, k reference networks are drawn at random; every method is fitted on them only "
             "(feature selection and `auto`'s choice use leave-one-out error on the references) and predicts "
             "all the other networks. Figures are medians over the draws; coverage is pooled over every held-out "
             "prediction of every draw.", ""]
    for quantity in TARGETS:
        lines += [f"## {quantity.capitalize()}", "",
                  "| k | method | MAPE % | within ±10 % | Spearman ρ | Kendall τ | 95% interval coverage % |",
                  "|---|---|---|---|---|---|---|"]
        for k in ks:
            for method in METHODS:
                row = table.get((quantity, k, method))
                if row:
                    note = (" (chose " + ", ".join(f"{c} ×{n}" for c, n in row["chose"].items()) + ")"
                            if method == "auto" else "")
                    lines.append(f"| {k} | {method}{note} | {row['mape']:.2f} | {row['within10']:.1f} | "
                                 f"{row['spearman']:.4f} | {row['kendall']:.4f} | "
                                 + (f"{row['coverage']:.1f} |" if row.get("coverage") is not None else "— |"))
        lines.append("")
    lines += ["![predicted against measured, typical k = 10 draw](pred_vs_measured_k10.png)", "",
              "![accuracy against k](accuracy_vs_k.png)", ""]
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))


def plot(out, typical, table, ks):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from calibration.plots import pred_vs_measured

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, method in zip(axes, ("ols", "features")):
        runs = sorted(typical[method], key=lambda r: r[0])
        mape, measured, predicted, refs, held = runs[len(runs) // 2]  # the median draw: a typical one
        pred_vs_measured(ax, measured, predicted,
                         f"{method}: k = 10, MAPE {mape:.2f}%, {100 * M.within(measured, predicted):.1f}% within ±10%",
                         "measured Pi 5 latency (ms)", "predicted Pi 5 latency (ms)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "pred_vs_measured_k10.png"), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, metric, label in ((axes[0], "within10", "share within ±10% (%)"), (axes[1], "mape", "MAPE (%)")):
        for method in METHODS:
            ax.plot(ks, [table[("latency", k, method)][metric] for k in ks], marker="o", label=method)
        ax.set_xlabel("reference networks k")
        ax.set_ylabel(label)
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Pi 5 latency predicted from host profiles (median over draws)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy_vs_k.png"), dpi=110)
    plt.close(fig)


def write_calibrate_example(out, ids, rows, records, k=10, seed=0):
    """A real `calibrate` run: k references' Pi 5 numbers as a device CSV, their host profiles as JSON."""
    from calibration.cli import main as calibrate

    folder = os.path.join(out, "calibrate_example")
    os.makedirs(folder, exist_ok=True)
    refs = sorted(int(i) for i in np.random.default_rng(seed).choice(sorted(records), size=k, replace=False))
    with open(os.path.join(folder, "pi5_device.csv"), "w") as f:
        f.write("model,threads,latency_ms,energy_mj\n")
        for i in refs:
            f.write(f"nb201_{i:05d},1,{rows[i]['lat_ms_median']},{rows[i]['energy_mj']}\n")
    host = [dict(records[i], path=f"nb201_{i:05d}.onnx") for i in refs]
    with open(os.path.join(folder, "host.json"), "w") as f:
        json.dump(host, f, indent=1)
    for method in ("ols", "auto"):
        calibrate([os.path.join(folder, "pi5_device.csv"), "--host", os.path.join(folder, "host.json"),
                   "--method", method, "--device-name", "Raspberry Pi 5", "--out",
                   os.path.join(folder, f"calib_{method}.json"), "--plot", os.path.join(folder, method)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "datasets", "nb201-pi5"))
    parser.add_argument("--networks", type=int, default=240)
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="local", choices=["auto", "local", "docker"],
                        help="sandbox for the host profiles (default local: the device ran without a container)")
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"), help="models and results store")
    parser.add_argument("--out", default=HERE, help="where RESULTS.md and the figures go")
    parser.add_argument("--no-example", action="store_true",
                        help="skip the calibrate_example folder (a real `calibrate` run on ten references)")
    opts = parser.parse_args(argv)

    rows = load_dataset(opts.dataset)
    ids = draw_networks(rows, opts.networks, opts.seed)
    check_draws("nb201_pi5", opts.ks, opts.draws, len(ids))  # before any work; again below if some failed
    paths = build_models(ids, rows, os.path.join(opts.cache, "models"))
    start = time.perf_counter()
    run_started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    records = profile_models(paths, os.path.join(opts.cache, "profiles.db"), opts.backend)
    profile_s = time.perf_counter() - start
    fresh = sum(datetime.datetime.strptime(r["started_at"], "%Y-%m-%dT%H:%M:%S%z") >= run_started
                for r in records.values())
    stamps = sorted(r["started_at"] for r in records.values())
    check_draws("nb201_pi5", opts.ks, opts.draws, len(records))
    scores, typical = evaluate(ids, rows, records, opts.ks, opts.draws, opts.seed)
    table = summarise(scores)
    os.makedirs(opts.out, exist_ok=True)
    some = next(iter(records.values()))
    meta = {"networks": len(records), "draws": opts.draws, "seed": opts.seed, "dataset": "nb201-pi5",
            "host": some["host"].get("cpu_model", "?"), "backend": some.get("backend"),
            "profiled": f"measured {stamps[0]} to {stamps[-1]}; {fresh} of the {len(records)} networks were profiled "
                        f"by this run ({profile_s:.1f} s), the rest came from the store"}
    write_results(opts.out, table, meta, opts.ks)
    if not opts.no_example:
        write_calibrate_example(opts.out, ids, rows, records, seed=opts.seed)
    plot(opts.out, typical, table, opts.ks)
    with open(os.path.join(opts.out, "results.json"), "w") as f:
        json.dump({f"{q}|k={k}|{m}": v for (q, k, m), v in table.items()}, f, indent=1)
    for quantity in TARGETS:
        for method in METHODS:
            row = table.get((quantity, 10, method))
            if row:
                print(f"{quantity:8s} k=10 {method:9s} MAPE {row['mape']:6.2f}%  within±10% {row['within10']:5.1f}%  "
                      f"ρ {row['spearman']:.4f}  τ {row['kendall']:.4f}  coverage "
                      + (f"{row['coverage']:.1f}%" if row.get("coverage") is not None else "—"))
    return table


if __name__ == "__main__":
    main()
