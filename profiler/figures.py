"""The figures of one profile run, PNG + SVG: the latency distribution (a box per model from every
timed run) and, when models carry an accuracy, accuracy against latency with the front drawn."""

import os

MAX_MODELS = 50  # beyond this a figure stops being readable: the fastest are shown, and it says so
LOG_SPAN = 10.0  # a log axis when the boxes (quartiles) or the latencies span more than a decade
MAX_LABELS = 8  # the front figure names every model up to this many, else only those on the front


def _samples(records):
    shown = [r for r in records if r.get("status") == "ok" and r.get("samples_ms")]
    return sorted(shown, key=lambda r: r["latency_ms"]["median"])


def _save(fig, folder, name):
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, name)
    try:
        fig.savefig(base + ".png", dpi=110)
        fig.savefig(base + ".svg")
    finally:
        plt.close(fig)
    return base + ".png"


def latency_distribution(records, folder, name="latency_distribution"):
    """Write folder/name.png and .svg; returns the PNG path, or None when no record has its samples."""
    fig = distribution_figure(records)
    return None if fig is None else _save(fig, folder, name)


def accuracy_front(records, folder, name="accuracy_front", budget_ms=None, min_accuracy=None):
    """Write folder/name.png and .svg; returns the PNG path, or None when no model has an accuracy."""
    fig = front_figure(records, budget_ms, min_accuracy)
    return None if fig is None else _save(fig, folder, name)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # names are escaped by figure_text, so tick labels keep their mathtext
    import matplotlib.pyplot as plt

    return plt


def front_figure(records, budget_ms=None, min_accuracy=None):
    """Accuracy against latency, one marker per model or variant (shape by precision), the latency's 95%
    interval as error bars, the front as a step line; None when no measured model has an accuracy."""
    from profiler.escape import figure_text
    from profiler.report import accuracy_score, front, ranking_interval, ranking_latency

    scored, on_front = front(records, budget_ms, min_accuracy)
    if not scored:
        return None
    plt = _pyplot()
    regression = scored[0]["accuracy"]["task"] == "regression"
    sign = -1 if regression else 1  # the score is minus MAE; the axis shows the MAE itself
    scale = 1 if regression else 100
    predicted = bool((on_front[0].get("prediction") or {}).get("latency_ms"))
    markers = {"fp32": "o", "fp16": "s", "int8 dynamic": "^", "int8 static": "v"}
    fig, ax = plt.subplots(figsize=(8, 5))
    for precision in dict.fromkeys(r.get("precision") or "?" for r in scored):
        group = [r for r in scored if (r.get("precision") or "?") == precision]
        x = [ranking_latency(r) for r in group]
        low = [max(0.0, v - ranking_interval(r)[0]) for v, r in zip(x, group)]
        high = [max(0.0, ranking_interval(r)[1] - v) for v, r in zip(x, group)]
        y = [sign * accuracy_score(r) * scale for r in group]
        ax.errorbar(x, y, xerr=[low, high], fmt=markers.get(precision, "D"), capsize=3, label=precision,
                    alpha=0.85)
    steps_x = [ranking_latency(r) for r in on_front]
    steps_y = [sign * accuracy_score(r) * scale for r in on_front]
    ax.step(steps_x, steps_y, where="post", color="tab:red", lw=1.2, label="front")
    ax.scatter(steps_x, steps_y, s=160, facecolors="none", edgecolors="tab:red", lw=1.2)  # a one-model front shows too
    labelled = scored if len(scored) <= MAX_LABELS else on_front  # beyond that, labels hide the markers
    for r in labelled:
        text = figure_text(f"{r['model']} ({r.get('runtime')})", limit=40)
        point = (ranking_latency(r), sign * accuracy_score(r) * scale)
        ax.annotate(text, point, fontsize=7, xytext=(4, 4),
                    textcoords="offset points", fontweight="bold" if any(r is f for f in on_front) else "normal")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="grey", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    native = all(r.get("native_device") for r in scored)
    ax.set_xlabel(("predicted device latency" if predicted else "median latency measured on the device" if native
                   else "median latency on this host") + " (ms); bars: 95% interval")
    ax.set_ylabel("MAE (lower is better)" if regression else "top-1 accuracy (%)")
    if regression:
        ax.invert_yaxis()
    xs = [ranking_latency(r) for r in scored]
    if min(xs) > 0 and max(xs) / min(xs) > LOG_SPAN:
        ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right" if not regression else "upper right")
    n = scored[0]["accuracy"].get("n")
    ax.set_title(figure_text(f"accuracy against latency: {len(on_front)} of {len(scored)} model(s) on the front "
                             f"(circled)", limit=100) + "\n" + figure_text(f"n={n} samples of "
                                                                           f"{scored[0]['accuracy'].get('data')}",
                                                                           limit=100), fontsize=10)
    fig.tight_layout()
    return fig


def _table_runs(record):
    """(runs the table's figures come from, runs left out): the undisturbed runs when the record's
    figures were taken from them, else every run."""
    from profiler.harness.stats import disturbed_run, on_cpu_times

    samples, waits = record["samples_ms"], record.get("samples_wait_ms")
    basis = (record.get("disturbance") or {}).get("basis")
    if basis not in ("undisturbed", "on_cpu") or not waits or len(waits) != len(samples):
        return list(samples), []
    if basis == "on_cpu":  # the table's figures: each run's time on a CPU
        return on_cpu_times(samples, waits), []
    bad = [disturbed_run(t, w) for t, w in zip(samples, waits)]
    return [t for t, b in zip(samples, bad) if not b], [t for t, b in zip(samples, bad) if b]


def distribution_figure(records):
    """The matplotlib figure (None when no record has its per-run samples). Each box is drawn from the
    runs the table's figures come from; runs left out as disturbed are grey crosses."""
    from profiler.escape import figure_text

    shown = _samples(records)
    if not shown:
        return None
    missing = sum(1 for r in records if r.get("status") == "ok" and not r.get("samples_ms"))
    dropped = max(0, len(shown) - MAX_MODELS)
    shown = shown[:MAX_MODELS]
    runs = [_table_runs(r) for r in shown]
    data = [used for used, _ in runs]
    labels = [figure_text(f"{r['model']} ({r.get('runtime')})", limit=48) for r in shown]
    import numpy as np

    low = min(np.percentile(d, 25) for d in data)  # the boxes' span: a few slow runs decide nothing
    high = max(np.percentile(d, 75) for d in data)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.42 * len(shown)))
    ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=True, widths=0.6,
               flierprops={"marker": ".", "markersize": 3, "alpha": 0.5},
               medianprops={"color": "tab:red"})
    left_out = [(i, t) for i, (_, excluded) in enumerate(runs, start=1) for t in excluded]
    if left_out:
        ax.scatter([t for _, t in left_out], [i for i, _ in left_out], marker="x", s=12, color="grey", alpha=0.6,
                   label="left out: waited for a core", zorder=3)
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(range(1, len(shown) + 1), labels, fontsize=8)
    ax.invert_yaxis()  # fastest on top, as in the ranking
    if low > 0 and high / low > LOG_SPAN:
        ax.set_xscale("log")
    ax.set_xlabel("latency per run (ms); box: quartiles, whiskers: p1 … p99, dots: beyond")
    ax.grid(alpha=0.3, axis="x", which="both")
    target = shown[0].get("target") or {}
    cpus = target.get("cpus")
    notes = []
    if dropped:
        notes.append(f"{dropped} slower models not shown")
    if missing:
        notes.append(f"{missing} without per-run samples (measured by an older version) not shown")
    if left_out:
        notes.append(f"{len(left_out)} disturbed runs left out of the boxes, as of the table's figures")
    caps = f"{cpus:g} CPU, " if isinstance(cpus, (int, float)) else ""
    where = (f"measured natively on {target.get('name', 'the device')}" if shown[0].get("native_device") else
             f"measured on this host ({shown[0].get('backend')}) under the caps of {target.get('name', 'the target')}")
    title = [figure_text("latency distribution, " + where, limit=90),
             figure_text(f"({caps}{shown[0].get('iterations')} runs each)")] + [figure_text(n) for n in notes]
    ax.set_title("\n".join(title), fontsize=9)
    fig.tight_layout()
    return fig
