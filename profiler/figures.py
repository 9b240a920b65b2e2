"""The latency distribution of one profile run: a box per model from every timed run, PNG + SVG."""

import os

MAX_MODELS = 50  # beyond this a figure stops being readable: the fastest are shown, and it says so
LOG_SPAN = 10.0  # a log axis when the boxes (quartiles) span more than a decade


def _samples(records):
    shown = [r for r in records if r.get("status") == "ok" and r.get("samples_ms")]
    return sorted(shown, key=lambda r: r["latency_ms"]["median"])


def latency_distribution(records, folder, name="latency_distribution"):
    """Write folder/name.png and .svg; returns the PNG path, or None when no record has its samples."""
    import matplotlib.pyplot as plt

    fig = distribution_figure(records)
    if fig is None:
        return None
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, name)
    fig.savefig(base + ".png", dpi=110)
    fig.savefig(base + ".svg")
    plt.close(fig)
    return base + ".png"


def distribution_figure(records):
    """The matplotlib figure (None when no record has its per-run samples)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # model names are data: "$" is a dollar, not mathtext
    import matplotlib.pyplot as plt

    from profiler.escape import printable_text

    shown = _samples(records)
    if not shown:
        return None
    missing = sum(1 for r in records if r.get("status") == "ok" and not r.get("samples_ms"))
    dropped = max(0, len(shown) - MAX_MODELS)
    shown = shown[:MAX_MODELS]
    data = [r["samples_ms"] for r in shown]
    labels = [printable_text(f"{r['model']} ({r.get('runtime')})") for r in shown]
    import numpy as np

    low = min(np.percentile(d, 25) for d in data)  # the boxes' span: a few slow runs decide nothing
    high = max(np.percentile(d, 75) for d in data)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.42 * len(shown)))
    ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=True, widths=0.6,
               flierprops={"marker": ".", "markersize": 3, "alpha": 0.5},
               medianprops={"color": "tab:red"})
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
    caps = f"{cpus:g} CPU, " if isinstance(cpus, (int, float)) else ""
    where = (f"measured natively on {target.get('name', 'the device')}" if shown[0].get("native_device") else
             f"measured on this host ({shown[0].get('backend')}) under the caps of {target.get('name', 'the target')}")
    ax.set_title(printable_text(f"latency distribution, {where} ({caps}{shown[0].get('iterations')} runs each)")
                 + (f"\n{'; '.join(notes)}" if notes else ""), fontsize=10)
    fig.tight_layout()
    return fig
