"""The device's format from the user's: edge-profiler's converters against the Keras twins.

A user's CNN arrives as PyTorch or ONNX; the phones ran TFLite files made from Keras. This study
converts each of the 102 mmb-cnn networks to TFLite with `profiler.conversions`, by one of the routes
`profile --variants tflite` takes (`--route onnx`: the ONNX export through onnx2tf; `--route pt2`: the
torch.export program through litert-torch), checks every conversion against the network's ONNX export
(the same weights), and compares the converted files with the Keras twins the device's files were made
from:

1. the conversion check: outputs on seeded random inputs (max |Δ| relative to the largest output,
   top-1 agreement) and the cards' MACs;
2. the op histogram of the converted file against the Keras twin's (a layout conversion that adds
   TRANSPOSE or other work the device's file would not have shows here), and both files' sizes
   against the size of the file the device ran;
3. the calibration: for the TFLite fp32 one-big-core slices of both dev phones, the relative model
   (prior from the other phone, learned on the same route's profiles) and `auto`, fitted on k random
   references and on `calibrate suggest`'s, from host profiles of either file.

Uses run.py's cache for the models; both files of every network are profiled into a store of this
study's own (`converter.db` beside run.py's), one after the other in the same session, so that a drift
of the host between sessions does not land on one route only:

    python experiments/mmb_phones/converter.py [--route onnx|pt2] [--draws 30] [--ks 5 10 20]
"""

import argparse
import collections
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from experiments.mmb_phones import run as base  # noqa: E402
from experiments.zoo import mmb  # noqa: E402

TWIN = ("Keras twin", "tflite")
CONVERTED = {"onnx": ("converted from ONNX", "tflite_onnx", "the ONNX export through `profiler.conversions.onnx_to_tflite` (onnx2tf)"),
             "pt2": ("converted from .pt2", "tflite_pt2",
                     "the torch.export program through `profiler.conversions.pt2_to_tflite` (litert-torch)")}
PHONES = (("Pixel 4", "pixel4"), ("iPhone 7", "iphone7"))
METHODS = ("relative", "auto")


def interleaved_profiles(paths, store):
    """{route: {network: record}} from one profile pass over both routes' files, network by network
    (the Keras twin, then the converted file), so that both are measured in the same session."""
    from experiments.seedlib import profile_cached

    order = dict(sorted(paths.items(), key=lambda kv: (kv[0].split("@")[0], kv[0])))
    flat = profile_cached(order, store, base.HOST_ENV | {"BACKEND": "local"}, "tflite")
    records = {}
    for key, record in flat.items():
        name, route = key.split("@")
        records.setdefault(route, {})[name] = record
    return records


def profiled_between(records):
    stamps = sorted(r["started_at"] for per in records.values() for r in per.values())
    return f"{stamps[0]} to {stamps[-1]}"


def histogram_rows(names, records, converted):
    """Per network: the ops the converted file has more or fewer of than the Keras twin."""
    rows = []
    for n in names:
        twin = collections.Counter(records["tflite"][n]["model_card"].get("ops") or {})
        made = collections.Counter(records[converted][n]["model_card"].get("ops") or {})
        rows.append((n, dict(made - twin), dict(twin - made)))
    return rows


def checks(names, paths, converted):
    """{network: check_conversion's figures} for every converted file against the network's ONNX export."""
    from profiler.conversions import check_conversion

    return {n: check_conversion(paths["onnx"][n], paths[converted][n]) for n in names}


def calibration_rows(data, records, routes, ks, draws, seed):
    """{(phone, route, k, method or 'suggest'): median scores}."""
    out = {}
    for _, device in PHONES:
        selector = {"device": device, "framework": "tflite-2.10", "cores": "1large", "precision": "fp32"}
        for _, profile in routes:
            names, host, y, _ = base.slice_data(data, selector, profile, records)
            prior = base.learn_prior(data, base.prior_source(selector), profile, records)
            per_draw, _ = base.random_draws(names, host, y, METHODS, ks, draws, seed, prior)
            for (k, method), scores in per_draw.items():
                out[(device, profile, k, method)] = base.median_scores(scores)
            for (k, rule), score in base.chosen_sets(names, host, y, ks, prior).items():
                if rule == "suggest":
                    out[(device, profile, k, "suggest")] = score
    return out


def split_by_the_twin(names, records, converted):
    """The networks whose Keras twin splits its grouped convolutions (one CONV_2D per group between a
    SPLIT and a CONCATENATION) where the converted file keeps one grouped CONV_2D: there the converted
    file is not the file the device ran, but a faster one."""
    return [n for n in names if (records["tflite"][n]["model_card"].get("ops") or {}).get("SPLIT", 0)
            > (records[converted][n]["model_card"].get("ops") or {}).get("SPLIT", 0)]


def size_ratios(data, paths, names, routes):
    """{route: [file size / the device's file size]} over the networks."""
    device = dict(zip(data["model"], data["size_bytes"]))
    return {profile: [os.path.getsize(paths[profile][n]) / device[n] for n in names if device.get(n)]
            for _, profile in routes}


def calibration_table(calib, label, routes, ks):
    lines = [f"| phone | k | method | Keras twin | {label} | difference (points) |", "|---|---|---|---|---|---|"]
    for phone, device in PHONES:
        for k in ks:
            for method in METHODS + ("suggest",):
                cells, values = [], []
                for _, profile in routes:
                    s = calib[(device, profile, k, method)]
                    cells.append(f"{s['within10']:.1f} ({s['mape']:.1f}, {s['spearman']:.4f})")
                    values.append(s["within10"])
                name = "auto, suggested refs" if method == "suggest" else method
                lines.append(f"| {phone} | {k} | {name} | {cells[0]} | {cells[1]} | {values[1] - values[0]:+.1f} |")
    return lines


def write_results(out, command, route, names, checked, hist, sizes, calib, ks, draws, seconds, stamps, split,
                  calib_same):
    label, _, how = CONVERTED[route]
    routes = (TWIN, CONVERTED[route][:2])
    relative = [c["relative"] for c in checked.values()]
    top1 = [c["top1"] for c in checked.values()]
    macs_equal = sum(c["macs"]["source"] == c["macs"]["converted"] for c in checked.values())
    added = collections.Counter(op for _, more, _ in hist for op in more for _ in range(more[op]))
    removed = collections.Counter(op for _, _, fewer in hist for op in fewer for _ in range(fewer[op]))
    same = [n for n, more, fewer in hist if not more and not fewer]
    lines = [f"# The device's format {label}: converter against Keras twin", "",
             f"Generated by `{command}` ({draws} draws per k, seed 0; {seconds:.0f} s).", "",
             f"- {len(names)} networks of mmb-cnn; the converted file is each pytorchcv network (random weights): "
             f"{how}; the Keras twin is the tf2cv network through TensorFlow's converter (what the phones ran).",
             "- Host: local backend, 1 core, 1 thread, 5 warm-up + 30 timed runs, median; both files of each network "
             f"profiled one after the other in one session (measured {stamps}).", "",
             "## The conversion check against the ONNX export (outputs on 16 seeded random inputs, MACs)", "",
             f"- Outputs: max |Δ| / largest output median {np.median(relative):.2e}, worst {max(relative):.2e}; "
             f"top-1 agreement {min(top1):.3f} at worst.",
             f"- MACs equal on {macs_equal} of {len(checked)} networks.", "",
             "## Op histogram against the Keras twin", "",
             f"- Identical on {len(same)} of {len(hist)} networks.",
             "- Ops the converted files have more of, summed over the networks: "
             + (", ".join(f"{op} +{n}" for op, n in added.most_common()) or "none") + ".",
             "- Ops they have fewer of: " + (", ".join(f"{op} −{n}" for op, n in removed.most_common()) or "none") + ".",
             f"- TRANSPOSE ops added: {added.get('TRANSPOSE', 0)}.", "",
             "| network | more in the converted file | fewer |", "|---|---|---|"]
    for n, more, fewer in hist:
        if more or fewer:
            lines.append(f"| {n} | {', '.join(f'{k} +{v}' for k, v in sorted(more.items())) or '–'} | "
                         f"{', '.join(f'{k} −{v}' for k, v in sorted(fewer.items())) or '–'} |")
    lines += ["", "File size against the file the device ran (median, range):", ""]
    for name, profile in routes:
        r = sizes[profile]
        lines.append(f"- {name}: {np.median(r):.3f} ({min(r):.3f}–{max(r):.3f})")
    lines += ["", "## Calibration: TFLite fp32, one big core, host profiles of either file", "",
              "Medians over the random draws (relative model with the other phone's prior, and `auto`), and "
              "`auto` on the k references `calibrate suggest` picks: within ±10 % (MAPE %, Spearman ρ).", "",
              ] + calibration_table(calib, label, routes, ks)
    lines += ["", f"### Without the {len(split)} networks whose grouped convolutions the twin splits", "",
              "There the converted file keeps one grouped `CONV_2D` where the Keras twin, like the file the phone "
              "ran, has one `CONV_2D` per group: the converted file is another, faster file than the device's "
              f"({', '.join(split)}). The same calibration on the other {len(names) - len(split)} networks, "
              "references drawn among them:", ""] + calibration_table(calib_same, label, routes, ks)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=mmb.default_dataset())
    parser.add_argument("--route", choices=sorted(CONVERTED), default="onnx",
                        help="onnx: the ONNX export through onnx2tf (default); pt2: the torch.export program "
                             "through litert-torch")
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"), help="models (run.py's cache)")
    parser.add_argument("--store", help="the host profiles of both routes (default CACHE/converter.db, "
                                        "converter_pt2.db for --route pt2)")
    parser.add_argument("--out", help="where RESULTS.md goes (default converter/, converter/pt2/ for --route pt2)")
    opts = parser.parse_args(argv)
    command = " ".join(["python experiments/mmb_phones/converter.py"] + list(sys.argv[1:] if argv is None else argv))
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    data = base.load_dataset(opts.dataset)
    names = base.pick_names(data)
    base.check_draws(opts.ks, opts.draws, len(names))
    converted = CONVERTED[opts.route][1]
    routes = (TWIN, CONVERTED[opts.route][:2])
    suffix = "" if opts.route == "onnx" else f"_{opts.route}"
    out = opts.out or os.path.join(HERE, "converter", *([opts.route] if suffix else []))
    paths = base.export_models(names, os.path.join(opts.cache, "models"), ["tflite", converted, "onnx"])
    both = {n: p for f in ("tflite", converted) for n, p in ((f"{n}@{f}", paths[f][n]) for n in names)}
    records = interleaved_profiles(both, opts.store or os.path.join(opts.cache, f"converter{suffix}.db"))
    checked = checks(names, paths, converted)
    calib = calibration_rows(data, records, routes, opts.ks, opts.draws, 0)
    split = split_by_the_twin(names, records, converted)
    calib_same = calibration_rows(data[~data["model"].isin(split)], records, routes, opts.ks, opts.draws, 0)
    write_results(out, command, opts.route, names, checked, histogram_rows(names, records, converted),
                  size_ratios(data, paths, names, routes), calib, opts.ks, opts.draws, time.perf_counter() - started,
                  profiled_between(records), split, calib_same)
    for (device, profile, k, method), s in sorted(calib.items()):
        print(f"{device:8s} {profile:12s} k={k:<2d} {method:8s} within±10% {s['within10']:5.1f}%  MAPE {s['mape']:5.1f}%")


if __name__ == "__main__":
    main()
