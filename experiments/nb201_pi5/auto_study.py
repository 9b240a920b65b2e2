"""How `auto` should score the feature model, judged without any device measurement.

    python experiments/nb201_pi5/auto_study.py [--cache experiments/nb201_pi5/.cache] [--ks 5 10]
                                              [--draws 30] [--seeds 3]

The host records are the real profiles of the NAS-Bench-201 networks that run.py stored (run it
first); the device numbers are synthetic truths of five kinds, each with 2% noise:
  linear   device = 3 · host latency
  power    device = 2 · host latency^0.85
  ops2     3×3 convolutions at one ratio, all other operator time at another (log-normal ratios)
  ops      six operator classes, each at its own ratio (log-normal, sigma 0.3)
  macs     3×3 MACs, 1×1 MACs and node count, each at its own cost (log-normal, sigma 0.5)
For each truth, k and draw of k references, every candidate is fitted on the references and
predicts the other networks; `auto` chooses by leave-one-out MAPE with the feature model scored
two ways: nested (selection redone in every fold) and with its selected features held fixed.
Printed: the share within ±10% of each, and the regret (best single method minus auto, in points).
"""

import argparse
import os
import statistics
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from calibration import metrics as M  # noqa: E402
from calibration.fitting import auto_choice, auto_score, fit_group  # noqa: E402
from calibration.models import record_features  # noqa: E402
from experiments.nb201_pi5.run import check_draws  # noqa: E402

KINDS = ("linear", "power", "ops2", "ops", "macs")
SINGLE = ("ols", "loglinear", "features")


def truth(kind, features, seed):
    rng = np.random.default_rng(seed)
    column = {name: np.array([f.get(name, 0.0) for f in features]) for name in features[0]}
    host = column["host_latency_ms"]
    noise = 1 + rng.normal(0, 0.02, len(host))
    if kind == "linear":
        return 3 * host * noise
    if kind == "power":
        return 2 * host ** 0.85 * noise
    if kind == "ops2":
        rest = sum(column[f"op_ms:{c}"] for c in ("conv_1x1", "pool", "elementwise", "overhead", "other"))
        r = np.exp(rng.normal(0, 0.5, 2))
        return (2 * r[0] * column["op_ms:conv_kxk"] + r[1] * rest) * noise
    if kind == "ops":
        classes = ("conv_kxk", "conv_1x1", "pool", "elementwise", "overhead", "other")
        r = 1.8 * np.exp(rng.normal(0, 0.3, len(classes)))
        return sum(ri * column[f"op_ms:{c}"] for ri, c in zip(r, classes)) * noise
    a = np.exp(rng.normal(0, 0.5, 3))
    return (a[0] * column["macs:conv_kxk"] / 1.5e7 + a[1] * column["macs:conv_1x1"] / 5e6
            + a[2] * column["nodes"] / 60) * noise


def study(records, kind, seed, k, draws):
    features = [record_features(r) for r in records]
    device = truth(kind, features, seed)
    host = np.array([f["host_latency_ms"] for f in features])
    rng = np.random.default_rng(1000 + seed)
    within = {}
    for _ in range(draws):
        refs = sorted(int(i) for i in rng.choice(len(records), size=k, replace=False))
        held = [i for i in range(len(records)) if i not in set(refs)]
        names = [f"n{i}" for i in refs]
        fits = {m: fit_group(names, [records[i] for i in refs], host[refs], device[refs], m) for m in SINGLE}
        scores = {}
        for method, fit in fits.items():
            predicted = np.array([fit.predict(host[i], records[i])["value"] for i in held])
            scores[method] = 100 * M.within(device[held], predicted)
        nested = auto_choice({m: f.get("loo_mape", float("inf")) for m, f in fits.items()})
        fixed = auto_choice({m: auto_score(f) for m, f in fits.items()})
        scores["auto, nested"], scores["auto, selection fixed"] = scores[nested], scores[fixed]
        for name, value in scores.items():
            within.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in within.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=os.path.join(HERE, ".cache"), help="run.py's store of host profiles")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3, help="truths of each kind")
    opts = parser.parse_args(argv)
    if opts.seeds < 1:
        raise SystemExit("auto_study: --seeds must be at least 1")

    from profiler.store import Store

    path = os.path.join(opts.cache, "profiles.db")
    if not os.path.isfile(path):
        raise SystemExit(f"auto_study: {path} not found (run experiments/nb201_pi5/run.py first)")
    store = Store(path)
    records = sorted((r for r in store.records() if r.get("op_time_ms")), key=lambda r: r["sha256"])
    store.close()
    check_draws("auto_study", opts.ks, opts.draws, len(records))
    columns = SINGLE + ("auto, nested", "auto, selection fixed")
    print(f"{len(records)} host records; median share within ±10% over {opts.draws} draws")
    print(f"{'truth':8} {'seed':>4} {'k':>3} " + " ".join(f"{c:>22}" for c in columns))
    regret = {}
    for k in opts.ks:
        for kind in KINDS:
            for seed in range(opts.seeds):
                row = study(records, kind, seed, k, opts.draws)
                best = max(row[m] for m in SINGLE)
                for c in columns[3:]:
                    regret.setdefault((k, c), []).append(best - row[c])
                print(f"{kind:8} {seed:>4} {k:>3} " + " ".join(f"{row[c]:>22.1f}" for c in columns), flush=True)
    for (k, c), values in regret.items():
        print(f"k = {k:>2}, {c}: regret mean {statistics.mean(values):.1f}, largest {max(values):.1f} points")


if __name__ == "__main__":
    main()
