"""Which candidates to measure on the device: references chosen from the candidates' host profiles only.

A calibration learns from the k references the user measures natively. The references should be
typical of the candidates (a prediction is only as good as the nearest references), span their host
latency (outside it a prediction is extrapolated) and carry every operator class the candidates
lean on (otherwise the out-of-mix warning fires). The rule:

1. Describe each candidate by standardised log host latency, log MACs, log node count, log activation
   bytes and the share of its MACs in each operator class.
2. Order them greedily by facility location: each next reference is the one that most shortens the
   candidates' distance to their nearest reference. The first is the medoid; below k = 6 a
   shorter list is the start of a longer one.
3. Repair: within the first k, an operator class that a candidate carries at a share more than twice
   any reference's gets the candidate that covers it at the least loss; the fastest and the slowest
   candidate join (if they are not already in) once k ≥ 6, so the predictions of the others are
   interpolated.

Device figures are never used: the user does not have them yet.
"""

import math
import os

import numpy as np

from calibration.errors import CalibrationError
from calibration.mix import MIX_CLASSES, MIX_MIN_SHARE, operator_mix

RANGE_FROM_K = 6  # from this many references on, the fastest and slowest candidates are among them


def describe(record):
    """{feature: value} of one host record (logs of sizes, shares of operator classes)."""
    features = {}
    median = (record.get("latency_ms") or {}).get("median")
    if isinstance(median, (int, float)) and median > 0:
        features["log host latency"] = math.log(median)
    card = record.get("model_card") or {}
    for key, label in (("macs", "log MACs"), ("nodes", "log nodes"), ("activation_bytes", "log activation bytes")):
        value = card.get(key)
        if isinstance(value, (int, float)) and value > 0:
            features[label] = math.log(value)
    for cls, share in (operator_mix(record) or {}).items():
        features[f"share {cls}"] = share
    return features


def standardised(records):
    """(candidates × features matrix, z-scored; the feature names): what the distances are taken on."""
    described = [describe(r) for r in records]
    names = sorted(set.intersection(*(set(d) for d in described))) if described else []
    X = np.array([[d[n] for n in names] for d in described], float).reshape(len(records), len(names))
    spread = X.std(axis=0)
    keep = spread > 1e-12
    return (X[:, keep] - X[:, keep].mean(axis=0)) / spread[keep], [n for n, k in zip(names, keep) if k]


def distances(X, n):
    """Euclidean distances between the candidates (n × n; no n × n × features intermediate)."""
    from scipy.spatial.distance import cdist

    return cdist(X, X) if X.size else np.zeros((n, n))


def _facility_order(D, chosen, k):
    """Extend `chosen` to k indices, each the one that most lowers the sum of nearest distances."""
    chosen = list(chosen)
    nearest = D[:, chosen].min(axis=1) if chosen else np.full(len(D), np.inf)
    while len(chosen) < min(k, len(D)):
        if not chosen:  # the medoid
            pick = int(np.argmin(D.sum(axis=0)))
        else:
            gain = np.maximum(nearest[:, None] - D, 0).sum(axis=0)
            gain[chosen] = -1
            pick = int(np.argmax(gain))
        chosen.append(pick)
        nearest = np.minimum(nearest, D[:, pick])
    return chosen


def _cost(D, chosen):
    return float(D[:, chosen].min(axis=1).sum())


def _uncovered(mixes, chosen):
    """Classes some candidate carries (≥ 5% of its MACs) at more than twice any chosen one's share."""
    best = {c: max((mixes[i] or {}).get(c, 0.0) for i in chosen) for c in MIX_CLASSES}
    worst = {}
    for mix in mixes:
        for cls, share in (mix or {}).items():
            if share >= MIX_MIN_SHARE and share > 2 * best[cls]:
                worst[cls] = max(worst.get(cls, 0.0), share)
    return sorted(worst, key=worst.get, reverse=True)


def _swap_in(D, chosen, fixed, candidates):
    """Put the best of `candidates` into `chosen`, in place of the non-fixed member whose loss costs least."""
    best = None
    for new in candidates:
        if new in chosen:
            return chosen
        for slot, old in enumerate(chosen):
            if old in fixed:
                continue
            trial = chosen[:slot] + chosen[slot + 1:] + [new]
            cost = _cost(D, trial)
            if best is None or cost < best[0]:
                best = (cost, trial)
    return best[1] if best else chosen  # every slot is fixed: k is too small to add it


def design_columns(records):
    """The relative model's columns for each candidate, as that model weighs them: every column over
    the candidate's host latency (the model fits relative error), scaled to a mean of 1."""
    from calibration.models import feature_matrix, relative_columns

    columns = relative_columns(records, "host_latency_ms")
    X = feature_matrix(records, columns)
    host = np.where(X[:, 0] > 0, X[:, 0], np.nan)
    A = X / host[:, None]
    scale = np.nanmean(A, axis=0)
    scale[~(scale > 0)] = 1.0
    return np.nan_to_num(A / scale), columns


def design_order(records, k, have=()):
    """Indices in the order a D-optimal design picks them for the relative model: each next reference
    the one that most raises log det(λI + Σ aᵢaᵢᵀ) over its columns aᵢ (design_columns), the medoid
    of those columns first. A few references then pin the host ratio and the corrections apart
    instead of repeating one kind of model."""
    A, _ = design_columns(records)
    n, p = A.shape
    chosen = list(have)
    if not chosen and n:
        D = distances(A, n)
        chosen.append(int(np.argmin(D.sum(axis=0))))
    information = 1e-2 * np.eye(p) + sum(np.outer(A[i], A[i]) for i in chosen)
    while len(chosen) < min(k, n):
        inverse = np.linalg.inv(information)
        gain = np.einsum("ij,jk,ik->i", A, inverse, A)  # log det grows by log(1 + aᵀ M⁻¹ a)
        gain[chosen] = -np.inf
        pick = int(np.argmax(gain))
        chosen.append(pick)
        information += np.outer(A[pick], A[pick])
    return chosen


def order(records, k=10, have=()):
    """Indices of `records` in the order to measure them: the indices in `have` first (already
    measured), then k − len(have) more. Returns (indices, why) with one reason per index."""
    n = len(records)
    k = max(0, min(k, n))
    X, _ = standardised(records)
    D = distances(X, n)
    have = list(dict.fromkeys(have))
    chosen = _facility_order(D, have, max(k, len(have)))
    fixed = set(have)
    mixes = [operator_mix(r) for r in records]
    latency = np.array([(r.get("latency_ms") or {}).get("median") or 0.0 for r in records], float)
    reasons = {}
    if len(chosen) >= RANGE_FROM_K:
        for end, label in ((int(np.argmin(latency)), "the fastest candidate on the host"),
                           (int(np.argmax(latency)), "the slowest candidate on the host")):
            if end not in chosen:
                chosen = _swap_in(D, chosen, fixed | {int(np.argmin(latency)), int(np.argmax(latency))}, [end])
            reasons.setdefault(end, label)
            fixed.add(end)
    for cls in _uncovered(mixes, chosen) if len(chosen) >= 2 else []:
        top = max((mixes[i] or {}).get(cls, 0.0) for i in range(n))
        covering = [i for i in range(n) if (mixes[i] or {}).get(cls, 0.0) * 2 >= top]
        covering.sort(key=lambda i: D[i].sum())  # the most typical of those that cover it
        chosen = _swap_in(D, chosen, fixed, covering[:8])
        covered = next((i for i in chosen if i in covering), None)
        if covered is None:  # no free slot left: k is too small for this class
            continue
        fixed.add(covered)
        reasons.setdefault(covered, f"covers {cls} ({100 * mixes[covered][cls]:.0f}% of its MACs; "
                                    f"up to {100 * top:.0f}% in the candidates)")
    # Measure in facility order among the chosen, the ones already measured first.
    rest = [i for i in chosen if i not in have]
    ordered = list(have)
    while rest:
        costs = [_cost(D, ordered + [i]) for i in rest]  # the least total distance: the medoid first
        ordered.append(rest.pop(int(np.argmin(costs))))
    nearest = np.array([min(ordered, key=lambda j: D[i, j]) for i in range(n)]) if ordered else np.array([])
    why = []
    for position, i in enumerate(ordered):
        if i in have:
            why.append("already measured")
            continue
        group = int((nearest == i).sum())
        text = reasons.get(i) or ("the most typical candidate" if position == 0 and not have
                                  else "covers the candidates least like the ones before it")
        mix = mixes[i]
        lead = f", mostly {max(mix, key=mix.get)}" if mix else ""
        why.append(f"{text}; stands for {group} candidate{'s' * (group != 1)} "
                   f"(host {latency[i]:.3g} ms{lead})")
    return ordered, why


def suggest(host, k=None, have=None, runtime=None, store="profiles.db", precision=None):
    """The k candidates to measure on the device (default 10, or 1 more with `have`), in the order to
    measure them.

    host: the candidates' host profiles (anything `calibration.fit` takes as host: records,
    `profiler.Results`, a `profile --json`/`--csv` path, a Store or a store path; None reads `store`).
    have: names (or paths) of references already measured; they come first, marked measured, and
    the k new ones follow. runtime, precision: the group to choose in; fits are made per runtime and
    precision, so candidates that mix them are refused with the groups named. Returns a list of
    {"model", "path", "reason", "measured"} dicts.
    """
    from calibration.api import host_records

    if k is None:
        k = 1 if have else 10
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise CalibrationError(f"k: expected a whole number of references above 0, not {k!r}")
    records = [r for r in host_records(host, store, runtime) if r.get("status", "ok") == "ok"
               and not r.get("native_device") and (precision is None or r.get("precision") == precision)]
    groups = {}
    for record in records:
        key = (record.get("runtime") or "?", record.get("precision") or "?")
        groups[key] = groups.get(key, 0) + 1
    if len(groups) > 1:
        named = ", ".join(f"{rt} {p}: {n}" for (rt, p), n in sorted(groups.items()))
        largest = max(groups, key=groups.get)
        raise CalibrationError(f"the candidates mix runtimes or precisions ({named}); a calibration fits each "
                               f"runtime and precision apart, with at least 3 references each, so suggest within "
                               f"one group: --runtime {largest[0]} --precision '{largest[1]}'")
    unique = {}
    for record in records:  # one record per file: the latest measurement of it
        unique[record.get("sha256") or record.get("path") or record["model"]] = record
    # A fixed order, so ties resolve the same way however the candidates were listed.
    records = sorted(unique.values(), key=lambda r: (str(r["model"]), str(r.get("path")), str(r.get("sha256"))))
    if len(records) < 2:
        raise CalibrationError(f"suggest needs the host profiles of at least 2 candidates, not {len(records)}")
    if isinstance(have, (str, os.PathLike)):
        have = [have]
    if have is not None and not (isinstance(have, (list, tuple)) and all(isinstance(h, (str, os.PathLike))
                                                                         for h in have)):
        raise CalibrationError(f"have: expected model names or paths (a list), not {type(have).__name__}")
    have = list(dict.fromkeys(os.fspath(h) for h in have or []))  # a name given twice is one reference
    index, missing = [], []
    for name in have:
        hits = [i for i, r in enumerate(records) if name in (r.get("model"), r.get("path"))]
        (index.append(hits[0]) if hits else missing.append(name))
    index = list(dict.fromkeys(index))  # a name and its path are one reference
    if missing:
        raise CalibrationError(f"--have: {', '.join(map(repr, missing[:5]))} not among the candidates' host profiles")
    chosen, why = order(records, len(index) + k, have=index)
    return [{"model": records[i]["model"], "path": records[i].get("path"), "reason": reason,
             "measured": i in index} for i, reason in zip(chosen, why)]
