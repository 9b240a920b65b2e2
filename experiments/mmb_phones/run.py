"""Host profiles + calibration against real phone latencies: 102 CNNs in 25 families (mmb-cnn).

    python experiments/mmb_phones/run.py [--dataset ../shared/datasets/mmb-cnn] [--draws 30]
                                         [--ks 5 10 20 40] [--models N] [--out experiments/mmb_phones]

1. exports every network of the dataset in the formats the phones ran: TFLite fp32 and int8
   from the Keras twins (tf2cv), TorchScript and ONNX from pytorchcv (experiments/zoo/mmb.py);
   for the "host TFLite from ONNX" slices also the ONNX export converted to TFLite by
   edge-profiler's own route (`tflite_onnx`; converter.py compares the two TFLite files);
2. profiles them on this host in the same format as the device ran (TFLite for TFLite,
   TorchScript for PyTorch Mobile) on one core and one thread, plus ONNX Runtime with its
   per-operator profiler; results are cached in a store, so a rerun only re-fits;
3. for every slice (device, framework, cores, precision) and every k, draws k reference
   networks at random, calibrates on them only, and predicts all the others; then
   leave-one-family-out: every other family predicts a whole family never seen;
4. writes RESULTS.md, a predicted-versus-measured figure and accuracy against k.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from calibration import metrics as M  # noqa: E402
from calibration.errors import CalibrationError  # noqa: E402
from calibration.fitting import fit_group  # noqa: E402
from calibration.mix import outside_mix  # noqa: E402
from calibration.priors import PRIOR_SCHEMA, learn_shape  # noqa: E402
from experiments.seedlib import finish_accuracy_figure, typical_draws, write_study_results  # noqa: E402

# One slice: the device rows it takes, and the host profile (runtime and file) it is calibrated against.
SLICES = {
    "Pixel 4, TFLite fp32, 1 big core": ({"device": "pixel4", "framework": "tflite-2.10", "cores": "1large",
                                          "precision": "fp32"}, "tflite"),
    "Pixel 4, TFLite fp32, 4 little cores": ({"device": "pixel4", "framework": "tflite-2.10", "cores": "4small",
                                              "precision": "fp32"}, "tflite"),
    "Pixel 4, TFLite int8, 1 big core": ({"device": "pixel4", "framework": "tflite-2.10", "cores": "1large",
                                          "precision": "int8"}, "tflite_int8"),
    "Pixel 4, PyTorch Mobile fp32, 1 big core": ({"device": "pixel4", "framework": "pytorch-mobile-2.0",
                                                  "cores": "1large", "precision": "fp32"}, "torch"),
    "iPhone 7, TFLite fp32, 1 big core": ({"device": "iphone7", "framework": "tflite-2.10", "cores": "1large",
                                           "precision": "fp32"}, "tflite"),
    "iPhone 7, PyTorch Mobile fp32, 1 big core": ({"device": "iphone7", "framework": "pytorch-mobile-2.0",
                                                   "cores": "1large", "precision": "fp32"}, "torch"),
    # The host in another format than the device: ONNX on the host for the phones' TFLite files.
    "Pixel 4, TFLite fp32, 1 big core, host ONNX": ({"device": "pixel4", "framework": "tflite-2.10",
                                                     "cores": "1large", "precision": "fp32"}, "onnx"),
    "iPhone 7, TFLite fp32, 1 big core, host ONNX": ({"device": "iphone7", "framework": "tflite-2.10",
                                                      "cores": "1large", "precision": "fp32"}, "onnx"),
    # The device's format made from the ONNX export by edge-profiler's converter (a user's route from a
    # PyTorch model), instead of the Keras twins the device's files were made from.
    "Pixel 4, TFLite fp32, 1 big core, host TFLite from ONNX": ({"device": "pixel4", "framework": "tflite-2.10",
                                                                 "cores": "1large", "precision": "fp32"},
                                                                "tflite_onnx"),
    "iPhone 7, TFLite fp32, 1 big core, host TFLite from ONNX": ({"device": "iphone7", "framework": "tflite-2.10",
                                                                  "cores": "1large", "precision": "fp32"},
                                                                 "tflite_onnx"),
}
MAIN_SLICE = "Pixel 4, TFLite fp32, 1 big core"
# host profile name -> (file format written by the zoo, runtime that profiles it)
HOST_PROFILES = {"tflite": ("tflite", "tflite"), "tflite_int8": ("tflite_int8", "tflite"), "torch": ("pt", "torch"),
                 "onnx": ("onnx", "onnx"), "tflite_onnx": ("tflite_onnx", "tflite"),
                 "tflite_pt2": ("tflite_pt2", "tflite")}
HOST_ENV = {"DEVICE_NAME": "phone-1-core", "CPUS": "1", "THREADS": "1", "WARMUP": "5", "ITERATIONS": "30",
            "MEMORY": "4g", "TIMEOUT_S": "600"}


def load_dataset(folder):
    import pandas as pd

    path = os.path.join(folder, "mmb_cnn_latency_dev.csv")
    if not os.path.isfile(path):
        raise SystemExit(f"mmb_phones: {path} not found (give --dataset)")
    return pd.read_csv(path)


def slice_rows(data, selector):
    """{model: (family, device latency ms)} of one slice."""
    rows = data[(data["unit"] == "cpu")]
    for column, value in selector.items():
        rows = rows[rows[column] == value]
    return {r.model: (r.family, float(r.latency_ms)) for r in rows.itertuples()}


EXPORT_WORKERS = 4


def export_models(names, folder, formats, progress=True):
    """{format: {name: path}} for formats among tflite, tflite_int8, tflite_onnx, tflite_pt2, onnx and pt. The TFLite
    files are made in child processes: Keras 2 must be chosen before TensorFlow loads (the Keras twins),
    the ONNX route's converter runs on the TensorFlow default, and TensorFlow beside torch costs memory
    for nothing."""
    from tqdm import tqdm

    from experiments.zoo import cache, mmb

    os.makedirs(folder, exist_ok=True)
    paths = {fmt: {n: os.path.join(folder, mmb.FILES[fmt].format(n)) for n in names} for fmt in formats}
    for fmt in ("tflite", "tflite_int8", "tflite_onnx", "tflite_pt2"):  # exported before by the same code: copied
        for n in names if fmt in formats else ():
            if not os.path.exists(paths[fmt][n]):
                cache.fetch(mmb.cache_key(n, fmt), paths[fmt][n])
    int8 = "tflite_int8" in formats
    need = [n for n in names if any(not os.path.exists(paths[f][n]) for f in ("tflite", "tflite_int8")
                                    if f in formats)]
    export_in_children(need, folder, ["tflite"], int8, "exporting TFLite", progress)
    for fmt, desc in (("tflite_onnx", "converting ONNX to TFLite"), ("tflite_pt2", "converting .pt2 to TFLite")):
        if fmt in formats:
            need = [n for n in names if not os.path.exists(paths[fmt][n])]
            export_in_children(need, folder, [fmt], False, desc, progress)
    torch_formats = [f for f in ("onnx", "pt") if f in formats]
    if torch_formats:
        for name in tqdm(names, desc="exporting " + " + ".join(torch_formats), unit="net", disable=not progress):
            mmb.export(name, torch_formats, folder)
    return paths


def export_in_children(names, folder, formats, int8, desc, progress=True):
    """mmb.export(name, formats, folder) for every name, in one child process per core (the converters
    are single-threaded; each child takes about 1.5 GB), with a progress bar."""
    import selectors
    import subprocess

    from tqdm import tqdm

    if not names:
        return
    code = ("import sys; from experiments.zoo import mmb\n"
            "for name in sys.argv[2:]:\n"
            "    mmb.export(name, %r, sys.argv[1], int8=%r)\n"
            "    print(name, flush=True)\n") % (formats, int8)
    workers = max(1, min(len(os.sched_getaffinity(0)), EXPORT_WORKERS, len(names)))
    children = [subprocess.Popen([sys.executable, "-c", code, folder, *names[i::workers]], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True) for i in range(workers)]
    watch = selectors.DefaultSelector()
    for child in children:
        watch.register(child.stdout, selectors.EVENT_READ)
    with tqdm(total=len(names), desc=desc, unit="net", disable=not progress) as bar:
        open_pipes = len(children)
        while open_pipes:
            for key, _ in watch.select():
                if key.fileobj.readline():
                    bar.update(1)
                else:
                    watch.unregister(key.fileobj)
                    open_pipes -= 1
    failed = [child.wait() for child in children if child.wait()]
    if failed:
        raise SystemExit(f"mmb_phones: {desc} failed (exit {failed[0]})")


def profile_all(paths, store_path, backend_name, op_profile=10, iterations=None, threads=1):
    """{host profile name: {network: record}}. threads: the device-format profiles at this many threads
    on as many cores (the ONNX per-operator profile stays at one)."""
    from experiments.seedlib import profile_cached

    records = {}
    for profile, (fmt, runtime) in HOST_PROFILES.items():
        if fmt not in paths:
            continue
        env = dict(HOST_ENV, BACKEND=backend_name)
        if iterations:
            env["ITERATIONS"] = str(iterations)
        if threads != 1 and profile != "onnx":
            env.update(CPUS=str(threads), THREADS=str(threads))
        if profile == "onnx":
            env["OP_PROFILE"] = str(op_profile)
        records[profile] = profile_cached(paths[fmt], store_path, env, runtime)
        if runtime == "tflite":  # cards are cheap here: always the current card code's
            from profiler.batch import add_card

            for record in records[profile].values():
                add_card(record, None)
    return records


def host_record(records, profile, name):
    """The host record a slice calibrates against, with the ONNX profile's per-operator times and
    card added where the slice's own runtime has none (LiteRT has no per-operator profiler in Python)."""
    record = dict(records[profile][name])
    onnx = records.get("onnx", {}).get(name)
    if onnx and not record.get("op_time_ms") and onnx.get("op_time_ms"):
        record["op_time_ms"] = onnx["op_time_ms"]
    return record


def macs(record):
    return float((record.get("model_card") or {}).get("macs") or np.nan)


def fit_and_predict(method, refs, held, records, y, prior=None):
    """Fit `method` on the reference networks, predict the held-out ones: (predicted, fit).

    `relative` and `auto` use `prior` (a shape learned on another device); `relative:none` none. Where a
    method cannot fit these references (a slope that is not positive) it has no fit: every prediction is NaN (scored
    as outside ±10 %, left out of the MAPE and rank medians, and counted as `no_fit`)."""
    try:
        return _fit_and_predict(method, refs, held, records, y, prior)
    except (ValueError, CalibrationError):
        return np.full(len(held), np.nan), None


def _fit_and_predict(method, refs, held, records, y, prior):
    recs = [records[n] for n in refs]
    if method == "flops":  # the baseline: a·MACs + b (FLOPs ≈ 2·MACs, the same fit)
        fit = fit_group(refs, recs, [macs(r) for r in recs], [y[n] for n in refs], "ols")
        return np.array([fit.predict(macs(records[n]))["value"] for n in held]), fit
    x = [r["latency_ms"]["median"] for r in recs]
    name, _, variant = method.partition(":")
    fit = fit_group(refs, recs, x, [y[n] for n in refs], name, prior=None if variant == "none" else prior,
                         nested_loo=False)
    return np.array([fit.predict(records[n]["latency_ms"]["median"], records[n])["value"]
                     for n in held]), fit


def scores(measured, predicted):
    if np.isnan(predicted).any():  # no fit (see fit_and_predict)
        return {"mape": float("nan"), "within10": 0.0, "spearman": float("nan"), "kendall": float("nan"),
                "no_fit": True}
    return {"mape": M.mape(measured, predicted), "within10": 100 * M.within(measured, predicted),
            "spearman": M.spearman(measured, predicted), "kendall": M.kendall(measured, predicted)}


def random_draws(names, records, y, methods, ks, draws, seed, prior=None):
    """{(k, method): [per-draw scores]}, and the predictions of every k = 10 draw (for the figure)."""
    rng = np.random.default_rng(seed)
    out, typical = {}, {}
    for k in ks:
        for _ in range(draws):
            refs = sorted(rng.choice(names, size=k, replace=False))
            held = [n for n in names if n not in set(refs)]
            measured = np.array([y[n] for n in held])
            for method in methods:
                predicted, fit = fit_and_predict(method, refs, held, records, y, prior)
                score = scores(measured, predicted)
                if method == "auto":
                    score["chose"] = fit["auto"]["chose"] if fit else "no fit"
                out.setdefault((k, method), []).append(score)
                if k == 10:
                    typical.setdefault(method, []).append((score["mape"], held, measured, predicted))
    return out, typical


def farthest_point(records, k):
    """The plain baseline rule: standardised features as `calibrate suggest` describes them, the
    medoid first, then each time the candidate farthest from those chosen."""
    from calibration.references import distances, standardised

    X, _ = standardised(records)
    D = distances(X, len(records))
    chosen = [int(np.argmin(D.sum(axis=0)))]
    while len(chosen) < k:
        distance = D[:, chosen].min(axis=1)
        distance[chosen] = -1
        chosen.append(int(np.argmax(distance)))
    return chosen


def chosen_sets(names, records, y, ks, prior=None, method="auto"):
    """{(k, rule): scores} for references chosen from the host profiles alone (never from y): the
    `calibrate suggest` rule and the farthest-point baseline. `outside_mix` counts the predictions
    that the fit flags as outside its references' operator mix."""
    from calibration.references import order

    listed = [records[n] for n in names]
    out = {}
    for k in ks:
        for rule, picks in (("suggest", order(listed, k)[0]), ("farthest", farthest_point(listed, k))):
            refs = [names[i] for i in picks]
            held = [n for n in names if n not in set(refs)]
            measured = np.array([y[n] for n in held])
            predicted, fit = fit_and_predict(method, refs, held, records, y, prior)
            score = scores(measured, predicted)
            score["outside_mix"] = sum(bool(outside_mix(fit, records[n])) for n in held) if fit else 0
            score["references"] = refs
            out[(k, rule)] = score
    return out


def without_card_keys(records, keys):
    """{profile: {network: record}} with the named model-card entries removed (a feature left out)."""
    return {profile: {n: dict(r, model_card={k: v for k, v in (r.get("model_card") or {}).items() if k not in keys})
                      for n, r in per.items()} for profile, per in records.items()}


def all_but_one(data, selector, profile, records):
    """Each network predicted by the relative model (prior from the other phone) fitted on all the
    others: with every card feature, and with each candidate feature left out, to judge the feature."""
    out = {}
    for label, keys in (("all features", ()), ("without macs_narrow", ("macs_narrow",))):
        variant = without_card_keys(records, keys) if keys else records
        names, host, y, _ = slice_data(data, selector, profile, variant)
        prior = learn_prior(data, prior_source(selector), profile, variant)
        predicted = [fit_and_predict("relative", [m for m in names if m != n], [n], host, y, prior)[0][0]
                     for n in names]
        out[label] = scores(np.array([y[n] for n in names]), np.array(predicted))
    return out


def leave_one_family_out(names, families, records, y, methods, prior=None):
    """{method: {family: scores}}: every other family is the reference set of one family."""
    out = {}
    for family in sorted(set(families[n] for n in names)):
        held = [n for n in names if families[n] == family]
        refs = [n for n in names if families[n] != family]
        measured = np.array([y[n] for n in held])
        for method in methods:
            predicted, _ = fit_and_predict(method, refs, held, records, y, prior)
            out.setdefault(method, {})[family] = scores(measured, predicted) if len(held) > 1 else {
                "mape": M.mape(measured, predicted), "within10": 100 * M.within(measured, predicted),
                "spearman": float("nan"), "kendall": float("nan")}
    return out


def median_scores(per_draw):
    """Medians over the draws; a draw with no fit counts as 0 % within ±10 % and is left out of the others."""
    table = {m: float(np.nanmedian([d[m] for d in per_draw])) if not all(np.isnan(d[m]) for d in per_draw)
             else float("nan") for m in ("mape", "within10", "spearman", "kendall")}
    table["no_fit"] = sum(bool(d.get("no_fit")) for d in per_draw)
    if "chose" in per_draw[0]:
        chosen = [d["chose"] for d in per_draw]
        table["chose"] = {c: chosen.count(c) for c in sorted(set(chosen))}
    return table


METHODS = ("flops", "ols", "features", "relative:none", "relative", "auto")
METHOD_NOTES = {"flops": "a·MACs + b (the FLOPs baseline)", "ols": "a·host + b",
                "features": "the absolute feature fit (Σ w·feature + b, squared error)",
                "relative:none": "the relative model with no prior", "relative": "the relative model with the prior "
                "learned on the other phone (leave-one-device-out)", "auto": "`calibrate`'s default: the lowest "
                "leave-one-out error of ols, loglinear, relative (with that prior) and features"}


def prior_source(selector):
    """The slice a prior for `selector` is learned from: the other phone, same framework and precision, one
    big core (the device being predicted never contributes)."""
    other = {"pixel4": "iphone7", "iphone7": "pixel4"}[selector["device"]]
    return dict(selector, device=other, cores="1large")


def slice_data(data, selector, profile, records):
    rows = slice_rows(data, selector)
    names = sorted(n for n in rows if n in records.get(profile, {}))
    return names, {n: host_record(records, profile, n) for n in names}, {n: rows[n][1] for n in names}, rows


def learn_prior(data, selector, profile, records):
    names, host, y, _ = slice_data(data, selector, profile, records)
    if len(names) < 10:
        return None
    source = f"{selector['device']} {selector['framework']} {selector['precision']} {selector['cores']}"
    return {"shape": learn_shape([host[n] for n in names], [y[n] for n in names]), "source": source}


def evaluate_slice(data, selector, profile, records, ks, draws, seed, methods=METHODS, families=True):
    names, host, y, rows = slice_data(data, selector, profile, records)
    prior = learn_prior(data, prior_source(selector), profile, records)
    result = {"networks": len(names), "draws": {}, "typical": None, "lofo": None,
              "prior": prior["source"] if prior else None}
    per_draw, typical = random_draws(names, host, y, methods, [k for k in ks if k < len(names)], draws, seed, prior)
    result["draws"] = {key: median_scores(v) for key, v in per_draw.items()}
    result["chosen"] = chosen_sets(names, host, y, [k for k in ks if k < len(names)], prior)
    result["typical"] = typical
    if families:
        result["lofo"] = leave_one_family_out(names, {n: rows[n][0] for n in names}, host, y, methods, prior)
    return result


def mean_prior(learned, source="mmb-cnn: "):
    """One prior from several learned ones (None entries skipped): the mean weight of every feature
    they all have. None when none was learned."""
    learned = [p for p in learned if p]
    if not learned:
        return None
    features = sorted(set.intersection(*(set(p["shape"]) for p in learned)))
    return {"shape": {f: float(np.mean([p["shape"][f] for p in learned])) for f in features},
            "source": source + "; ".join(p["source"] for p in learned)}


def write_priors(data, records, path):
    """The shipped priors: per runtime, the mean of the shapes learned on both phones (fp32, one big core)."""
    priors = {}
    for runtime, framework, profile in (("tflite", "tflite-2.10", "tflite"), ("torch", "pytorch-mobile-2.0", "torch"),
                                        ("onnx->tflite", "tflite-2.10", "onnx")):  # host ONNX, device TFLite
        learned = [learn_prior(data, {"device": device, "framework": framework, "cores": "1large",
                                      "precision": "fp32"}, profile, records) for device in ("pixel4", "iphone7")]
        merged = mean_prior(learned)
        if merged:
            priors[runtime] = merged
    return save_priors(priors, path)


def save_priors(priors, path):
    """Write `priors` into the prior file at `path`, keeping the priors it has under other keys (a runtime,
    precision or thread count this run has no profiles for keeps the prior it had). All the priors."""
    import json

    from profiler.export import write_json

    if os.path.exists(path):
        with open(path) as f:
            priors = dict(json.load(f).get("priors", {}), **priors)
    try:
        write_json(path, {"schema": PRIOR_SCHEMA, "version": 1,
                          "note": "written by experiments/mmb_phones/run.py --write-priors (fp32, one thread) and "
                                  "experiments/mmb_phones/deploy.py --write-priors (int8, several threads); see their "
                                  "RESULTS.md", "priors": priors})
    except OSError as exc:
        raise SystemExit(f"mmb_phones: --write-priors {path}: {exc.strerror}") from None
    return priors


def lofo_summary(lofo):
    """{method: (median family MAPE, share of families with MAPE ≤ 10 %)}."""
    return {m: (float(np.nanmedian([s["mape"] for s in per.values()])),
                100 * np.mean([s["mape"] <= 10 for s in per.values()])) for m, per in lofo.items()}


def draw_rows(draws, ks, methods):
    """Table rows of the random draws' medians (k, method, MAPE, within ±10 %, ρ, τ), the method
    saying what `auto` chose and on how many draws there was no fit."""
    lines = []
    for k in ks:
        for method in methods:
            row = draws.get((k, method))
            if row:
                note = (" (chose " + ", ".join(f"{c} ×{n}" for c, n in row["chose"].items()) + ")"
                        if "chose" in row else "")
                if row.get("no_fit"):
                    note += f" (no fit on {row['no_fit']} draw{'s' if row['no_fit'] != 1 else ''}: slope ≤ 0)"
                lines.append(f"| {k} | {method}{note} | {row['mape']:.1f} | {row['within10']:.1f} | "
                             f"{row['spearman']:.4f} | {row['kendall']:.4f} |")
    return lines


def write_results(out, results, meta, ks):
    lines = [f"# {meta['networks']} CNNs in {meta['families']} families on real phones: host profiles + calibration", "",
             f"Generated by `{meta['command']}` ({meta['draws']} draws per k, seed {meta['seed']}).",
             "", f"- Device data: `mmb-cnn` ({meta['dataset']}), Pixel 4 and iPhone 7, CPU, batch 1, 224×224.",
             f"- Host: {meta['host']}; edge-profiler {meta['backend']} backend, CPUS=1, THREADS=1, "
             f"{HOST_ENV['WARMUP']} warm-up + {HOST_ENV['ITERATIONS']} runs, median. Each slice is calibrated "
             "against a host profile in the device's own format: TFLite files made from the same Keras twins "
             "(tf2cv) for TFLite slices, TorchScript from pytorchcv for PyTorch Mobile slices; a slice named "
             "\"host ONNX\" is calibrated against ONNX Runtime profiles of the ONNX export, one named \"host TFLite "
             "from ONNX\" against that export converted to TFLite by edge-profiler's converter (onnx2tf).",
             f"- Host profiles: {meta['profiled']}.",
             "- For each k, k reference networks are drawn at random; every method is fitted on them only "
             "(its choices use leave-one-out error on the references) and predicts every other network. "
             "Figures are medians over the draws.",
             "- Methods: " + "; ".join(f"`{m}` {METHOD_NOTES[m]}" for m in METHODS) + ".", ""]
    for name, result in results.items():
        lines += [f"## {name} ({result['networks']} networks)", "",
                  f"Prior for `relative` and `auto`: learned on {result['prior'] or 'nothing (none available)'}.", "",
                  "| k | method | MAPE % | within ±10 % | Spearman ρ | Kendall τ |", "|---|---|---|---|---|---|"]
        lines += draw_rows(result["draws"], ks, METHODS)
        if result.get("chosen"):
            lines += ["", "References chosen from the host profiles alone (`calibrate suggest`, and the plain "
                      "farthest-point rule as a baseline), `auto` fitted on them, every other network predicted; "
                      "beside them the median of the random draws:", "",
                      "| k | references | MAPE % | within ±10 % | Spearman ρ | flagged outside the mix |",
                      "|---|---|---|---|---|---|"]
            for k in ks:
                for rule in ("suggest", "farthest"):
                    row = result["chosen"].get((k, rule))
                    if row:
                        lines.append(f"| {k} | {rule} | {row['mape']:.1f} | {row['within10']:.1f} | "
                                     f"{row['spearman']:.4f} | {row['outside_mix']} |")
                row = result["draws"].get((k, "auto"))
                if row:
                    lines.append(f"| {k} | random (median) | {row['mape']:.1f} | {row['within10']:.1f} | "
                                 f"{row['spearman']:.4f} | |")
        if result.get("all_but_one"):
            lines += ["", "Each network predicted by `relative` fitted on all the others (prior from the other "
                      "phone), with every card feature and with one left out:", "",
                      "| card features | MAPE % | within ±10 % | Spearman ρ |", "|---|---|---|---|"]
            lines += [f"| {label} | {row['mape']:.2f} | {row['within10']:.1f} | {row['spearman']:.4f} |"
                      for label, row in result["all_but_one"].items()]
        if result["lofo"]:
            summary = lofo_summary(result["lofo"])
            lines += ["", "Leave-one-family-out (every other family is the reference set): median over the "
                      f"{len(next(iter(result['lofo'].values())))} families of the family's MAPE, and the share "
                      "of families predicted within 10 % MAPE:", "",
                      "| method | median family MAPE % | families ≤ 10 % |", "|---|---|---|"]
            lines += [f"| {m} | {summary[m][0]:.1f} | {summary[m][1]:.0f} % |" for m in METHODS if m in summary]
        lines.append("")
    write_study_results(out, lines)


def plot(out, main_result, results, ks):
    from calibration.plots import pred_vs_measured

    plt, fig, panels = typical_draws(main_result["typical"], ("flops", "ols", "auto"), (15, 5))
    for ax, method, (mape, held, measured, predicted) in panels:
        pred_vs_measured(ax, measured, predicted,
                         f"{method}: k = 10, MAPE {mape:.1f}%, {100 * M.within(measured, predicted):.0f}% within ±10%",
                         f"measured latency (ms), {MAIN_SLICE}", "predicted latency (ms)", log=True)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "pred_vs_measured_k10.png"), dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in results.items():
        done = [k for k in ks if (k, "auto") in result["draws"]]
        axes[0].plot(done, [result["draws"][(k, "auto")]["within10"] for k in done], marker="o", label=f"auto: {name}")
    main_done = [k for k in ks if (k, "ols") in main_result["draws"]]
    for method, style in (("ols", "--"), ("flops", ":")):
        axes[0].plot(main_done, [main_result["draws"][(k, method)]["within10"] for k in main_done], style,
                     color="grey", label=f"{method}: {MAIN_SLICE}")
    for method in METHODS:
        axes[1].plot(main_done, [main_result["draws"][(k, method)]["mape"] for k in main_done], marker="o", label=method)
    axes[0].set_ylabel("share within ±10% (%)")
    axes[1].set_ylabel(f"MAPE (%), {MAIN_SLICE}")
    axes[1].set_yscale("log")
    finish_accuracy_figure(plt, fig, axes, ks, "Phone latency predicted from host profiles (median over draws)",
                           os.path.join(out, "accuracy_vs_k.png"), 100, legend_size=7)


def check_draws(ks, draws, networks):
    if draws < 1:
        raise SystemExit("mmb_phones: --draws must be at least 1")
    bad = [k for k in ks if not 4 <= k < networks]
    if bad:
        raise SystemExit(f"mmb_phones: k = {bad[0]} is out of range: leave-one-out needs at least 4 references, "
                         f"and at least one of the {networks} networks must be left to predict")


def pick_names(data, models=None, pick="random", seed=0):
    """The networks a run uses: all, or `models` of them drawn at random (fixed seed), or with
    pick='per-family' the smallest network (by file size) of each family, smallest first."""
    names = sorted(set(data["model"]))
    if models and pick == "per-family":
        sizes = data.groupby("model").agg(size=("size_bytes", "first"), family=("family", "first"))
        return sorted(sizes.sort_values(["size"]).groupby("family").head(1).sort_values("size").index[:models])
    if models:
        return sorted(np.random.default_rng(seed).choice(names, size=min(models, len(names)), replace=False))
    return names


def main(argv=None):
    import datetime

    from experiments.zoo import mmb

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=mmb.default_dataset())
    parser.add_argument("--models", type=int, help="use only this many networks (drawn at random, fixed seed)")
    parser.add_argument("--pick", choices=["random", "per-family"], default="random",
                        help="how --models chooses: at random, or the smallest network (by file size) of each "
                             "family, smallest first (the cheapest set to export and profile that spans families)")
    parser.add_argument("--iterations", type=int, default=int(HOST_ENV["ITERATIONS"]),
                        help=f"timed runs per host profile (default {HOST_ENV['ITERATIONS']})")
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slices", nargs="+", choices=list(SLICES), default=list(SLICES), metavar="SLICE",
                        help=f"device slices (default all: {'; '.join(SLICES)})")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 TFLite export and slice")
    parser.add_argument("--no-families", action="store_true", help="skip leave-one-family-out")
    parser.add_argument("--all-but-one", action="store_true",
                        help="also predict each network from all the others, with and without the narrow-"
                             "convolution feature (how card features are judged: on both phones)")
    parser.add_argument("--write-priors", metavar="FILE",
                        help="also write the priors learned on both phones here (calibration/priors.json ships them)")
    parser.add_argument("--no-op-profile", action="store_true",
                        help="skip the ONNX Runtime per-operator profile (used by the `features` method only)")
    parser.add_argument("--backend", default="local", choices=["auto", "local", "docker"],
                        help="sandbox for the host profiles (default local: the phones ran without a container)")
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"), help="models and results store")
    parser.add_argument("--out", default=HERE, help="where RESULTS.md and the figures go")
    opts = parser.parse_args(argv)

    data = load_dataset(opts.dataset)
    names = pick_names(data, opts.models, opts.pick, opts.seed)
    check_draws(opts.ks, opts.draws, len(names))
    slices = [s for s in opts.slices if not (opts.no_int8 and SLICES[s][1] == "tflite_int8")]
    started = time.perf_counter()
    run_started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    profiles = {SLICES[s][1] for s in slices} | (set() if opts.no_op_profile else {"onnx"})
    paths = export_models(names, os.path.join(opts.cache, "models"), [HOST_PROFILES[p][0] for p in profiles])
    records = profile_all(paths, os.path.join(opts.cache, "profiles.db"), opts.backend, iterations=opts.iterations)
    prepared_s = time.perf_counter() - started
    every = [r for per in records.values() for r in per.values()]
    fresh = sum(datetime.datetime.strptime(r["started_at"], "%Y-%m-%dT%H:%M:%S%z") >= run_started for r in every)
    stamps = sorted(r["started_at"] for r in every)
    results = {}
    for name in slices:
        selector, profile = SLICES[name]
        results[name] = evaluate_slice(data, selector, profile, records, opts.ks, opts.draws, opts.seed,
                                       families=not opts.no_families)
        if opts.all_but_one:
            results[name]["all_but_one"] = all_but_one(data, selector, profile, records)
    os.makedirs(opts.out, exist_ok=True)
    if opts.write_priors:
        write_priors(data, records, opts.write_priors)
    import shlex

    argv = sys.argv[1:] if argv is None else argv
    meta = {"command": ("python experiments/mmb_phones/run.py " + " ".join(shlex.quote(str(a)) for a in argv)).rstrip(),
            "networks": len(names), "families": data[data["model"].isin(names)]["family"].nunique(),
            "draws": opts.draws, "seed": opts.seed, "dataset": os.path.basename(os.path.normpath(opts.dataset)),
            "host": every[0]["host"].get("cpu_model", "?"), "backend": every[0].get("backend"),
            "profiled": f"measured {stamps[0]} to {stamps[-1]}; {fresh} of the {len(every)} profiles were made by "
                        f"this run (export and profiling {prepared_s:.0f} s), the rest came from the store"}
    write_results(opts.out, results, meta, opts.ks)
    main_result = results.get(MAIN_SLICE) or next(iter(results.values()))
    plot(opts.out, main_result, results, opts.ks)
    for name, result in results.items():
        for method in METHODS:
            row = result["draws"].get((10, method))
            if row:
                print(f"{name:42s} k=10 {method:9s} MAPE {row['mape']:6.1f}%  within±10% {row['within10']:5.1f}%  "
                      f"ρ {row['spearman']:.4f}")
        for label, row in result.get("all_but_one", {}).items():
            print(f"{name:42s} all but one, {label}: MAPE {row['mape']:.2f}%  within±10% {row['within10']:.1f}%")
        for (k, rule), row in sorted(result.get("chosen", {}).items()):
            print(f"{name:42s} k={k} {rule:9s} MAPE {row['mape']:6.1f}%  within±10% {row['within10']:5.1f}%  "
                  f"ρ {row['spearman']:.4f}  outside the mix {row['outside_mix']}")
    return results


if __name__ == "__main__":
    main()
