"""The slices users deploy: every core configuration and precision of both dev phones (mmb-cnn),
calibrated from one-thread host profiles in the device's format.

    python experiments/mmb_phones/deploy.py [--draws 30] [--ks 5 10] [--out experiments/mmb_phones/deploy]

Uses the host profiles that `experiments/mmb_phones/run.py` exports and stores (its cache; run it first,
or this script exports and profiles what is missing). For every slice (device, framework, core
configuration, precision) with at least 50 networks and a host profile in the device's format
(TFLite fp32 and int8; TorchScript fp32 for PyTorch Mobile: PyTorch Mobile int8 files cannot be
rebuilt from the published data), and for each k:

- random draws: k reference networks at random, `relative` (prior: the other phone's shape at the
  nearest thread count and the same precision, never the phone being predicted) and `auto`
  (`calibrate`'s default) fitted on them, every other network predicted;
- the 95% interval's coverage: the share of held-out networks whose device latency falls inside it;
- how often `auto` chose each method, and what a choice other than `relative` cost on its draws;
- the k references `calibrate suggest` picks from the host profiles alone.

Writes RESULTS.md in --out. Figures are medians over the draws.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from calibration import metrics as M  # noqa: E402
from calibration.fitting import fit_group  # noqa: E402
from calibration.priors import prior_key  # noqa: E402
from experiments.mmb_phones import run as base  # noqa: E402

MIN_NETWORKS = 50
HOST_FOR = {("tflite-2.10", "fp32"): "tflite", ("tflite-2.10", "int8"): "tflite_int8",
            ("pytorch-mobile-2.0", "fp32"): "torch"}
FRAMEWORK_LABEL = {"tflite-2.10": "TFLite", "pytorch-mobile-2.0": "PyTorch Mobile"}
DEVICE_LABEL = {"pixel4": "Pixel 4", "iphone7": "iPhone 7"}


def threads_of(cores):
    """'1large' → 1, '1large1med' → 2, '4small' → 4: the thread count of a core configuration."""
    import re

    return sum(int(n) for n in re.findall(r"(\d+)[a-z]+", cores))


def slices(data):
    """[(label, selector, host profile)] for every slice with enough networks and a host format."""
    rows = data[data["unit"] == "cpu"]
    out = []
    for (device, framework, precision, cores), group in rows.groupby(["device", "framework", "precision", "cores"]):
        profile = HOST_FOR.get((framework, precision))
        if profile is None or group["model"].nunique() < MIN_NETWORKS:
            continue
        label = f"{DEVICE_LABEL[device]}, {FRAMEWORK_LABEL[framework]} {precision}, {cores}"
        out.append((label, {"device": device, "framework": framework, "cores": cores, "precision": precision},
                    profile))
    order = {"pixel4": 0, "iphone7": 1}
    return sorted(out, key=lambda s: (order[s[1]["device"]], s[1]["framework"], s[1]["precision"],
                                      threads_of(s[1]["cores"]), s[1]["cores"]))


def prior_for(data, selector, profile, records):
    """The relative model's prior for a slice: the shapes learned on the other phone's slices of the
    same framework and precision at the thread count nearest this one's (fewer first on a tie),
    averaged. The phone being predicted never contributes."""
    other = {"pixel4": "iphone7", "iphone7": "pixel4"}[selector["device"]]
    mine = threads_of(selector["cores"])
    rows = data[(data["device"] == other) & (data["framework"] == selector["framework"])
                & (data["precision"] == selector["precision"]) & (data["unit"] == "cpu")]
    configs = sorted(set(rows["cores"]))
    if not configs:
        return None
    distance = {c: (abs(threads_of(c) - mine), threads_of(c) > mine) for c in configs}  # as load_prior
    chosen = [c for c in configs if distance[c] == min(distance.values())]
    return base.mean_prior([base.learn_prior(data, dict(selector, device=other, cores=c), profile, records)
                            for c in chosen], source="")


RUNTIME_OF = {"tflite-2.10": "tflite", "pytorch-mobile-2.0": "torch"}


def shipped_priors(data, records, slices_):
    """{prior key: prior} for every precision and thread count but fp32 at one thread (run.py's
    --write-priors ships that one, from the big cores): the mean of the shapes learned on every slice
    of both phones with that framework, precision and thread count."""
    groups = {}
    for _, selector, profile in slices_:
        threads = threads_of(selector["cores"])
        if selector["precision"] == "fp32" and threads == 1:
            continue
        key = prior_key(RUNTIME_OF[selector["framework"]], selector["precision"], threads)
        groups.setdefault(key, []).append((selector, profile))
    priors = {}
    for key, members in sorted(groups.items()):
        merged = base.mean_prior([base.learn_prior(data, selector, profile, records) for selector, profile in members])
        if merged:
            priors[key] = merged
    return priors


def fit_predict(method, refs, held, host, y, prior):
    """(predictions with intervals for `held`, the fit)."""
    recs = [host[n] for n in refs]
    x = [r["latency_ms"]["median"] for r in recs]
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = fit_group(refs, recs, x, [y[n] for n in refs], method, prior=prior)
    return [fit.predict(host[n]["latency_ms"]["median"], host[n]) for n in held], fit


def score(measured, predictions):
    """MAPE, within ±10 %, ρ, and how many of the predictions have an interval and how many of those
    hold the measured value."""
    predicted = np.array([p["value"] for p in predictions])
    inside = [p["low"] <= m <= p["high"] for m, p in zip(measured, predictions) if "low" in p]
    return {"mape": M.mape(measured, predicted), "within10": 100 * M.within(measured, predicted),
            "spearman": M.spearman(measured, predicted), "inside": int(sum(inside)), "intervals": len(inside)}


def summary(scores):
    """Medians over the draws, and the coverage pooled over every held-out prediction of every draw."""
    out = {m: statistics.median(d[m] for d in scores) for m in ("mape", "within10", "spearman")}
    intervals = sum(d["intervals"] for d in scores)
    out["coverage"] = 100 * sum(d["inside"] for d in scores) / intervals if intervals else float("nan")
    return out


def evaluate(data, selector, profile, records, ks, draws, seed):
    names, host, y, _ = base.slice_data(data, selector, profile, records)
    prior = prior_for(data, selector, profile, records)
    rng = np.random.default_rng(seed)
    out = {"networks": len(names), "prior": prior["source"] if prior else None, "k": {}}
    for k in ks:
        per = {"relative": [], "auto": [], "chose": [], "cost": []}
        for _ in range(draws):
            refs = sorted(rng.choice(names, size=k, replace=False))
            held = [n for n in names if n not in set(refs)]
            measured = np.array([y[n] for n in held])
            got = {}
            for method in ("relative", "auto"):
                predictions, fit = fit_predict(method, refs, held, host, y, prior)
                got[method] = score(measured, predictions)
                per[method].append(got[method])
            chose = fit["auto"]["chose"]  # the fit of the last method, auto
            per["chose"].append(chose)
            if chose != "relative":
                per["cost"].append(got["auto"]["within10"] - got["relative"]["within10"])
        from calibration.references import design_order, order

        listed = [host[n] for n in names]
        suggested = {}
        for rule, indices in (("suggest", order(listed, k)[0]), ("design", design_order(listed, k))):
            picks = [names[i] for i in indices]
            held = [n for n in names if n not in set(picks)]
            for method in ("relative", "auto"):
                suggested[(rule, method)] = score(np.array([y[n] for n in held]),
                                                  fit_predict(method, picks, held, host, y, prior)[0])
        out["k"][k] = {"relative": summary(per["relative"]), "auto": summary(per["auto"]),
                       "chose": {c: per["chose"].count(c) for c in sorted(set(per["chose"]))},
                       "cost": per["cost"], "suggested": suggested}
    return out


def fmt(value, digits=1):
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def write_results(out, results, meta, ks):
    lines = ["# The slices users deploy: every core configuration and precision of both dev phones", "",
             f"Generated by `{meta['command']}` ({meta['draws']} draws per k, seed {meta['seed']}; {meta['seconds']:.0f} s).",
             "",
             "- Device data: `mmb-cnn`, Pixel 4 and iPhone 7, CPU, batch 1, 224×224; every core configuration "
             f"with at least {MIN_NETWORKS} networks. PyTorch Mobile int8 is left out: its quantised TorchScript "
             "files cannot be rebuilt here.",
             f"- Host: {meta['host']}; {meta['host_threads']} core(s), **{meta['host_threads']} thread(s)** for every slice (the device's thread count is "
             "mapped by the calibration), in the device's format: TFLite fp32 or int8 files made from the Keras "
             "twins, TorchScript for PyTorch Mobile.",
             "- `relative`: the relative model with the prior learned on the **other** phone, same framework and "
             "precision, nearest thread count. `auto`: `calibrate`'s default choice among ols, loglinear, "
             "relative and features.",
             "- coverage: the share of all held-out predictions (every network of every draw) whose device latency lies "
             "inside the 95% interval.",
             "- design: the k references a D-optimal design over the relative model's columns picks "
             "(`calibration.references.design_order`, measured, not what `calibrate suggest` uses).",
             "- suggested: the k references `calibrate suggest` picks from the host profiles alone.", ""]
    for k in ks:
        lines += [f"## k = {k}", "",
                  "| slice | networks | relative: within ±10 % | MAPE % | ρ | coverage % | auto: within ±10 % "
                  "| auto chose | suggested (relative) within ±10 % | suggested (auto) | design (relative) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, result in results.items():
            row = result["k"].get(k)
            if not row:
                continue
            rel, auto, sug = row["relative"], row["auto"], row["suggested"]
            chose = ", ".join(f"{m} ×{n}" for m, n in row["chose"].items())
            lines.append(f"| {label} | {result['networks']} | {fmt(rel['within10'])} | {fmt(rel['mape'])} | "
                         f"{fmt(rel['spearman'], 4)} | {fmt(rel['coverage'])} | {fmt(auto['within10'])} | {chose} | "
                         f"{fmt(sug[('suggest', 'relative')]['within10'])} | {fmt(sug[('suggest', 'auto')]['within10'])} | "
                         f"{fmt(sug[('design', 'relative')]['within10'])} |")
        lines.append("")
    lines += ["## What `auto` chose, and what it cost when it left the relative model", "",
              "Over every slice and draw: how often each method was chosen, and the change in within ±10 % against "
              "the relative model on the same draw when `auto` chose another method.", "",
              "| k | chose | draws | median change (points) | worst change |", "|---|---|---|---|---|"]
    for k in ks:
        rows = [result["k"][k] for result in results.values() if k in result["k"]]
        kept = sum(row["chose"].get("relative", 0) for row in rows)
        others = sum(n for row in rows for m, n in row["chose"].items() if m != "relative")
        spent = [change for row in rows for change in row["cost"]]
        if kept:
            lines.append(f"| {k} | relative | {kept} | 0 | 0 |")
        lines.append(f"| {k} | another method | {others} | {fmt(statistics.median(spent)) if spent else '—'} | "
                     f"{fmt(min(spent)) if spent else '—'} |")
    lines.append("")
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    from experiments.zoo import mmb

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=mmb.default_dataset())
    parser.add_argument("--models", type=int, help="use only this many networks (see --pick)")
    parser.add_argument("--pick", choices=["random", "per-family"], default="random",
                        help="how --models chooses (as in run.py)")
    parser.add_argument("--iterations", type=int, default=int(base.HOST_ENV["ITERATIONS"]),
                        help=f"timed runs per host profile (default {base.HOST_ENV['ITERATIONS']})")
    parser.add_argument("--no-op-profile", action="store_true",
                        help="skip the ONNX Runtime per-operator profile (used by the `features` method only)")
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="only the slices whose label contains each TEXT")
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"), help="models and results store (run.py's)")
    parser.add_argument("--out", default=os.path.join(HERE, "deploy"), help="where RESULTS.md goes")
    parser.add_argument("--host-threads", type=int, default=1,
                        help="profile the host at this many threads (on as many cores) instead of one: whether a "
                             "host that can give the device's thread count should")
    parser.add_argument("--write-priors", metavar="FILE",
                        help="also add the int8 and multi-thread priors learned on both phones to this prior file "
                             "(calibration/priors.json ships them)")
    opts = parser.parse_args(argv)
    started = time.perf_counter()
    data = base.load_dataset(opts.dataset)
    chosen = [s for s in slices(data) if not opts.only or all(t in s[0] for t in opts.only)]
    names = base.pick_names(data, opts.models, opts.pick, opts.seed)
    data = data[data["model"].isin(names)]
    base.check_draws(opts.ks, opts.draws, len(names))
    profiles = sorted({p for _, _, p in chosen} | (set() if opts.no_op_profile else {"onnx"}))
    paths = base.export_models(names, os.path.join(opts.cache, "models"), [base.HOST_PROFILES[p][0] for p in profiles])
    records = base.profile_all(paths, os.path.join(opts.cache, "profiles.db"), "local", iterations=opts.iterations,
                               threads=opts.host_threads)
    if opts.write_priors:
        base.save_priors(shipped_priors(data, records, slices(data)), opts.write_priors)
    results = {}
    for label, selector, profile in chosen:
        results[label] = evaluate(data, selector, profile, records, opts.ks, opts.draws, opts.seed)
        for k, row in results[label]["k"].items():
            print(f"{label:40s} k={k:<2d} relative {row['relative']['within10']:5.1f}% ρ {row['relative']['spearman']:.4f} "
                  f"coverage {row['relative']['coverage']:5.1f}%  auto {row['auto']['within10']:5.1f}%  "
                  f"suggested {row['suggested'][('suggest', 'relative')]['within10']:5.1f}% "
                  f"design {row['suggested'][('design', 'relative')]['within10']:5.1f}%", flush=True)
    import shlex

    every = [r for per in records.values() for r in per.values()]
    argv = sys.argv[1:] if argv is None else argv
    meta = {"command": "python experiments/mmb_phones/deploy.py " + " ".join(shlex.quote(str(a)) for a in argv),
            "draws": opts.draws, "seed": opts.seed, "host_threads": opts.host_threads, "host": every[0]["host"].get("cpu_model", "?"),
            "seconds": time.perf_counter() - started}
    os.makedirs(opts.out, exist_ok=True)
    write_results(opts.out, results, meta, opts.ks)
    return results


if __name__ == "__main__":
    main()
