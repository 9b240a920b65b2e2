"""Vision transformers on the dev phones: 69 networks in 17 families (../shared/datasets/mmb-vit), predicted
from 1-thread host profiles of the same architecture, alone and mixed with the 102 CNNs of mmb-cnn.

    python experiments/mmb_phones/vit.py --draws 20 --ks 5 10

Slices: PyTorch Mobile fp32 on one big core of each phone (the host profiles the traced TorchScript
file of experiments/zoo/mmb_vit.py); with --mixed, the same slice over CNNs and ViTs together (one
calibration for a mixed candidate list). Methods as in run.py: the FLOPs baseline, a·host + b, the
relative model with no prior and with the prior learned on the other phone's slice (leave-one-device-
out), and `auto`. Random reference draws, `calibrate suggest`'s references, and leave-one-family-out.
Writes vit/RESULTS.md.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from experiments.mmb_phones import run  # noqa: E402

# slice name -> (device rows, host profile: "torch" for the TorchScript file, "tflite" for the converted one)
SLICES = {
    "Pixel 4, PyTorch Mobile fp32, 1 big core": ({"device": "pixel4", "framework": "pytorch-mobile-2.0",
                                                  "cores": "1large", "precision": "fp32"}, "torch"),
    "iPhone 7, PyTorch Mobile fp32, 1 big core": ({"device": "iphone7", "framework": "pytorch-mobile-2.0",
                                                   "cores": "1large", "precision": "fp32"}, "torch"),
    "Pixel 4, TFLite fp32, 1 big core": ({"device": "pixel4", "framework": "tflite-2.15", "cores": "1large",
                                          "precision": "fp32"}, "tflite"),
    "iPhone 7, TFLite fp32, 1 big core": ({"device": "iphone7", "framework": "tflite-2.15", "cores": "1large",
                                           "precision": "fp32"}, "tflite"),
}
METHODS = ("flops", "ols", "relative:none", "relative", "auto")
# Big networks take seconds per run on one host core (up to two minutes): 1 + 3 runs, not the CNN study's 5 + 30.
HOST_ENV = {"WARMUP": "1", "ITERATIONS": "3", "TIMEOUT_S": "1800", "MEMORY": "8g"}


def load(dataset, filename):
    import pandas as pd

    path = os.path.join(dataset, filename)
    if not os.path.isfile(path):
        raise SystemExit(f"mmb_phones/vit: {path} not found")
    return pd.read_csv(path)


def export_vits(names, folder, fmt="pt", progress=True):
    """{name: path} of one format (pt, or tflite for the networks the device ran in TFLite)."""
    from tqdm import tqdm

    from experiments.zoo import mmb_vit

    if fmt == "tflite":
        names = [n for n in names if mmb_vit.has_tflite(n)]
    return {n: mmb_vit.export(n, [fmt], folder)[fmt] for n in tqdm(names, desc=f"exporting ViT {fmt}",
                                                                   unit="net", disable=not progress)}


def profile(paths, store, iterations, runtime="torch"):
    from experiments.seedlib import profile_cached

    env = dict(run.HOST_ENV, BACKEND="local", **HOST_ENV)
    if iterations:
        env["ITERATIONS"] = str(iterations)
    return profile_cached(paths, store, env, runtime)  # each record carries the card made when it was profiled


def evaluate(data, selector, records, ks, draws, seed, families=True, profile="torch"):
    profiles = {profile: records}
    names, host, y, rows = run.slice_data(data, selector, profile, profiles)
    prior = run.learn_prior(data, run.prior_source(selector), profile, profiles)
    usable = [k for k in ks if k < len(names)]
    per_draw, _ = run.random_draws(names, host, y, METHODS, usable, draws, seed, prior)
    result = {"networks": len(names), "draws": {key: run.median_scores(v) for key, v in per_draw.items()},
              "chosen": run.chosen_sets(names, host, y, usable, prior), "lofo": None}
    if families:
        result["lofo"] = run.leave_one_family_out(names, {n: rows[n][0] for n in names}, host, y, METHODS, prior)
    return result


TRIAL_FEATURES = {"attention MACs": ("macs:attention",), "softmax": ("softmax_elements",),
                  "normalisation": ("norm_elements",), "GELU": ("gelu_elements",),
                  "all four (as shipped)": ("macs:attention", "softmax_elements", "norm_elements", "gelu_elements")}


def feature_trial(data, selector, records, ks, draws, seed, profile="torch"):
    """{(k, candidate): median scores} of the relative model (prior from the other phone) without the
    transformer card features, and with each of them and all four added to its corrections: how they
    were judged before they were adopted (they must help on both phones)."""
    from calibration import models  # relative_columns reads its RELATIVE_FEATURES

    shipped = models.RELATIVE_FEATURES
    without = tuple(f for f in shipped if f not in models.TRANSFORMER_FEATURES)
    out = {}
    try:
        for label, extra in {"without them": (), **TRIAL_FEATURES}.items():
            models.RELATIVE_FEATURES = without + extra
            profiles = {profile: records}
            names, host, y, _ = run.slice_data(data, selector, profile, profiles)
            prior = run.learn_prior(data, run.prior_source(selector), profile, profiles)
            per_draw, _ = run.random_draws(names, host, y, ("relative",), [k for k in ks if k < len(names)],
                                           draws, seed, prior)
            out.update({(k, label): run.median_scores(v) for (k, _), v in per_draw.items()})
    finally:
        models.RELATIVE_FEATURES = shipped
    return out


def card_ratios(data, records):
    """{network: card MACs × 2 / the dataset's flops}: is the rebuilt network the one measured?"""
    flops = dict(zip(data["model"], data["flops"]))
    return {n: 2 * r["model_card"]["macs"] / flops[n] for n, r in records.items()
            if (r.get("model_card") or {}).get("macs") and flops.get(n)}


def file_sizes(data, records):
    """{profile: median of host file size / the device file's size}: how close the rebuilt files are."""
    out = {}
    for profile, framework in (("torch", "pytorch-mobile-2.0"), ("tflite", "tflite-2.15")):
        rows = data[(data["framework"] == framework) & (data["precision"] == "fp32")]
        device = dict(zip(rows["model"], rows["size_bytes"]))
        ratios = [r["model_card"]["size_mb"] * 1024 * 1024 / device[n] for n, r in records.get(profile, {}).items()
                  if device.get(n) and (r.get("model_card") or {}).get("size_mb")]
        if ratios:
            out[profile] = (statistics.median(ratios), min(ratios), max(ratios), len(ratios))
    return out


def write(out, results, ratios, sizes, meta, ks):
    lines = ["# Vision transformers on the dev phones", "", f"`{meta['command']}`", "",
             f"{meta['networks']} ViTs ({meta['families']} families); host {meta['host']}, 1 thread, "
             f"{meta['iterations']} timed runs; {meta['draws']} random reference draws per k; {meta['note']}.", ""]
    worst = sorted(ratios.items(), key=lambda kv: -abs(kv[1] - 1))
    close = sum(abs(r - 1) <= 0.02 for r in ratios.values())
    lines += ["## Is the rebuilt network the one measured?", "",
              f"Card MACs × 2 against the dataset's `flops`: {close} of {len(ratios)} within 2%. "
              "Furthest: " + ", ".join(f"{n} {r:.3f}" for n, r in worst[:4]) + ".", ""]
    for profile, (median, low, high, count) in sizes.items():
        lines += [f"Host {profile} file size / the device's file, {count} networks: median {median:.3f} "
                  f"(range {low:.3f} to {high:.3f}).", ""]
    for name, result in results.items():
        lines += [f"## {name} ({result['networks']} networks)", "",
                  "| k | method | MAPE % | within ±10% | Spearman | Kendall |", "|---|---|---|---|---|---|"]
        for k in ks:
            lines += run.draw_rows(result["draws"], [k], METHODS)
            chosen = result["chosen"].get((k, "suggest"))
            if chosen:
                lines.append(f"| {k} | auto, `calibrate suggest` references | {chosen['mape']:.1f} | "
                             f"{chosen['within10']:.1f} | {chosen['spearman']:.4f} | {chosen['kendall']:.4f} |")
        if result.get("trial"):
            lines += ["", "The relative model without the transformer card features, and with each of them added "
                      "(median of the draws):", "",
                      "| k | features | MAPE % | within ±10% | Spearman |", "|---|---|---|---|---|"]
            for (k, label), row in sorted(result["trial"].items()):
                lines.append(f"| {k} | {label} | {row['mape']:.1f} | {row['within10']:.1f} | {row['spearman']:.4f} |")
        if result["lofo"]:
            lines += ["", "Leave one family out (every other family is the reference set), MAPE % per family:", "",
                      "| family | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|"]
            families = sorted(next(iter(result["lofo"].values())))
            for family in families:
                lines.append(f"| {family} | " + " | ".join(f"{result['lofo'][m][family]['mape']:.1f}"
                                                          for m in METHODS) + " |")
            lines.append("| median | " + " | ".join(
                f"{statistics.median(result['lofo'][m][f]['mape'] for f in families):.1f}" for m in METHODS) + " |")
        lines.append("")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    import shlex

    from experiments.zoo import mmb, mmb_vit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=mmb_vit.default_dataset())
    parser.add_argument("--cnn-dataset", default=mmb.default_dataset())
    parser.add_argument("--models", nargs="+", help="only these ViTs (default: all 69)")
    parser.add_argument("--iterations", type=int, default=int(HOST_ENV["ITERATIONS"]))
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed", action="store_true", help="also the CNN + ViT slices (exports the 102 CNNs)")
    parser.add_argument("--tflite", action="store_true",
                        help="also the TFLite slices (28 networks: the ONNX export converted by onnx2tf, checked)")
    parser.add_argument("--no-families", action="store_true", help="skip leave-one-family-out")
    parser.add_argument("--feature-trial", action="store_true",
                        help="also score the relative model with each transformer card feature added")
    parser.add_argument("--cpu-set", metavar="CPUS",
                        help="measure on these cores only (CPU_SET), e.g. while an export runs on the others")
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"), help="models and results store")
    parser.add_argument("--out", default=os.path.join(HERE, "vit"), help="where RESULTS.md goes")
    opts = parser.parse_args(argv)
    if opts.cpu_set:
        run.HOST_ENV = dict(run.HOST_ENV, CPU_SET=opts.cpu_set)

    started = time.perf_counter()
    vit = load(opts.dataset, "mmb_vit_latency_dev.csv")
    names = sorted(opts.models or set(vit["model"]))
    run.check_draws(opts.ks, opts.draws, len(names))
    store = os.path.join(opts.cache, "profiles.db")
    folder = os.path.join(opts.cache, "vit_models")
    records = {"torch": profile(export_vits(names, folder), store, opts.iterations)}
    if opts.tflite:
        records["tflite"] = profile(export_vits(names, folder, "tflite"), store, opts.iterations, "tflite")
    data = vit[vit["model"].isin(names)]
    results = {name: evaluate(data, selector, records[host], opts.ks, opts.draws, opts.seed, not opts.no_families,
                              host)
               for name, (selector, host) in SLICES.items() if host in records}
    if opts.mixed:
        import pandas as pd

        cnn = load(opts.cnn_dataset, "mmb_cnn_latency_dev.csv")
        cnn_names = sorted(set(cnn["model"]))
        paths = run.export_models(cnn_names, os.path.join(opts.cache, "models"), ["pt"])
        cnn_records = run.profile_all(paths, store, "local")["torch"]
        both = pd.concat([cnn, data])
        for name, (selector, host) in SLICES.items():
            if host == "torch":  # the phones' TFLite CNNs ran TFLite 2.10, their ViTs 2.15: not one runtime
                results[name.replace(", 1 big", ", CNN + ViT, 1 big")] = evaluate(
                    both, selector, {**cnn_records, **records["torch"]}, opts.ks, opts.draws, opts.seed,
                    families=False)
    if opts.feature_trial:
        for name, (selector, host) in SLICES.items():
            if host in records:
                results[name]["trial"] = feature_trial(data, selector, records[host], opts.ks, opts.draws,
                                                       opts.seed, host)
    argv = sys.argv[1:] if argv is None else argv
    some = next(iter(records["torch"].values()))
    meta = {"command": "python experiments/mmb_phones/vit.py " + " ".join(shlex.quote(str(a)) for a in argv),
            "networks": len(records["torch"]),
            "families": data[data["model"].isin(records["torch"])]["family"].nunique(),
            "host": some["host"].get("cpu_model", "?"), "iterations": opts.iterations, "draws": opts.draws,
            "note": f"export, profiling and fits {time.perf_counter() - started:.0f} s"}
    write(opts.out, results, card_ratios(data, records["torch"]), file_sizes(data, records), meta, opts.ks)
    for name, result in results.items():
        for method in METHODS:
            row = result["draws"].get((10, method))
            if row:
                print(f"{name:55s} k=10 {method:13s} MAPE {row['mape']:6.1f}%  within±10% {row['within10']:5.1f}%  "
                      f"ρ {row['spearman']:.4f}")
    return results


if __name__ == "__main__":
    main()
