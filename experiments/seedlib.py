"""What the two seed experiments share: build from the zoo, profile a grid of caps with
repetitions, check the seed's claims, write CSV, markdown and figures, calibrate if a device
CSV is given."""

import os
import statistics
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from calibration import metrics as M  # noqa: E402
from profiler.config import load_target  # noqa: E402
from profiler.sandbox import physical_first_cores, select_backend  # noqa: E402


def build(names, formats, folder):
    from experiments.zoo.__main__ import export

    return {name: export(name, formats, folder)[formats[0]] for name in names}


def usable_cpus(wanted):
    """Split the CPU counts into what this host can honour and what it cannot (never oversubscribed)."""
    cores = len(physical_first_cores())
    return [c for c in wanted if c <= cores], [c for c in wanted if c > cores], cores


def profile_grid(models, runtime, configs, memory, iterations, repetitions, backend_name, extra=None, progress=True):
    """Rows: one per (model, cpus, threads, repetition). configs: [(cpus, threads, iterations or None)]."""
    from tqdm import tqdm

    rows = []
    for path in models.values():
        # Read once on the host: the file's page cache is then charged here, not to whichever sandbox
        # reads it first, so the cgroup peak compares models rather than cache history.
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    total = len(models) * len(configs) * repetitions
    bar = tqdm(total=total, desc="profiling", unit="run", disable=not progress)
    backend = None
    # One discarded run first: the sandbox's runtime libraries enter the page cache here, not
    # inside the first measured model's cgroup peak.
    warm = load_target(None, {"CPUS": "1", "ITERATIONS": "1", "WARMUP": "0", "BACKEND": backend_name,
                              "MEMORY": memory}, host_cores=physical_first_cores())
    backend = select_backend(warm)
    backend.run(warm, [next(iter(models.values()))], lambda record: None, runtime=runtime)
    for cpus, threads, per_model_iterations in configs:
        for repetition in range(repetitions):
            for name, path in models.items():
                n = (per_model_iterations or {}).get(name, iterations)
                target = load_target(None, {"CPUS": str(cpus), "THREADS": str(threads), "MEMORY": memory,
                                            "ITERATIONS": str(n), "WARMUP": "10", "BACKEND": backend_name,
                                            **(extra or {})}, host_cores=physical_first_cores())
                backend = backend or select_backend(target)
                got = []
                backend.run(target, [path], got.append, runtime=runtime)
                record = got[0]
                stats = record.get("latency_ms") or {}
                rows.append({"model": name, "cpus": cpus, "threads": threads, "repetition": repetition + 1,
                             "iterations": n, "status": record["status"], "backend": record.get("backend"),
                             "mean_ms": stats.get("mean"), "median_ms": stats.get("median"),
                             "total_runtime_s": (record.get("total_runtime_ms") or 0) / 1000 or None,
                             "peak_memory_mb": record.get("peak_memory_mb"), "rss_peak_mb": record.get("rss_peak_mb"),
                             "mean_rss_mb": record.get("mean_rss_mb"),
                             "memory_source": record.get("memory_source"),
                             "enforced": (record.get("enforced") or {}).get("how")})
                bar.update(1)
    bar.close()
    return rows


def _unstable(record):
    from profiler.stability import shaky

    return shaky(record)


def _steadier(backend, target, runtime, fresh, save):
    """Measure again the models whose figures are flagged unstable or disturbed (a busy host: on a
    shared machine one such reference can carry a whole calibration), keep each model's steadiest
    measurement, marked `remeasured`, and save it. Returns how many re-measurements were made."""
    from profiler.batch import add_card
    from profiler.stability import remeasure

    def measure(groups, emit):
        for group_runtime, paths in groups.items():
            backend.run(target, paths, emit, runtime=group_runtime)

    changed, made = remeasure(fresh, measure)
    for key, record in changed.items():
        add_card(record, target)
        save(record)
    return made


def profile_cached(paths, store_path, env, runtime, progress=True):
    """{key: host record} for {key: model path}, profiling only what the store lacks for this target.

    A record is reused when the store has the same file (sha256) under the same target, so an
    interrupted run resumes and a rerun only re-fits."""
    import json
    import time

    from profiler.harness.files import sha256_of
    from profiler.batch import add_card
    from profiler.store import Store

    target = load_target(None, env)
    store = Store(store_path)
    key = json.dumps(target.describe(), sort_keys=True)
    cached = {r["sha256"]: r for r in store.records()
              if r.get("runtime") == runtime and json.dumps(r["target"], sort_keys=True) == key}
    by_sha = {sha256_of(p): k for k, p in paths.items()}
    records = {by_sha[sha]: cached[sha] for sha in by_sha if sha in cached}
    missing = [paths[k] for k in paths if k not in records]
    if missing:
        from tqdm import tqdm

        backend = select_backend(target)
        bar = tqdm(total=len(missing), desc=f"profiling {runtime} ({backend.name})", unit="model", disable=not progress)
        start = time.perf_counter()
        fresh = {}

        def on_result(record):
            add_card(record, target)
            store.save(record)  # as it arrives: an interrupted run keeps what it measured
            fresh[record["sha256"]] = record
            bar.update(1)

        backend.run(target, missing, on_result, runtime=runtime)
        bar.close()
        remeasured = _steadier(backend, target, runtime, fresh, store.save)
        for record in fresh.values():
            if record["status"] == "ok":
                records[by_sha[record["sha256"]]] = record
            else:
                print(f"{record['model']}: {record['status']}: {record.get('error')}", file=sys.stderr)
        print(f"profiled {len(missing)} {runtime} models in {time.perf_counter() - start:.1f} s "
              f"({backend.name} backend; {remeasured} unstable measurement(s) taken again)", file=sys.stderr)
    store.close()
    return records


def write_csv(path, rows):
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)


def read_rows(path):
    """The rows an earlier run wrote to results.csv (numbers as numbers, empty cells as None)."""
    import pandas as pd

    frame = pd.read_csv(path)
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


def measured_rows(opts, models, formats, runtime, configs, extra=None):
    """The experiment's rows: measured (the models built from the zoo first), or, with --rows, read
    back from an earlier run's results.csv, so an analysis (e.g. with --device-csv) costs no profiling."""
    if opts.rows:
        return read_rows(opts.rows)
    paths = build(models, formats, opts.models_dir)
    return profile_grid(paths, runtime, configs, opts.memory, opts.iterations, opts.repetitions, opts.backend,
                        extra=extra)


def summarise(rows, metric):
    """{(model, cpus): (mean over repetitions, std)} for rows with status ok."""
    groups = {}
    for r in rows:
        if r["status"] == "ok" and r[metric] is not None:
            groups.setdefault((r["model"], r["cpus"]), []).append(r[metric])
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in groups.items()}


def swapped_pairs(latency, models, a, b):
    """Each pair whose order differs between CPU = a and b, with its gap against the repetition noise
    (two standard deviations of the noisier of the two means)."""
    lines = []
    for i, first in enumerate(models):
        for second in models[i + 1:]:
            if (latency[(first, a)][0] - latency[(second, a)][0]) * (latency[(first, b)][0] - latency[(second, b)][0]) >= 0:
                continue
            gaps, noise = [], []
            for c in (a, b):
                low, high = sorted((latency[(first, c)][0], latency[(second, c)][0]))
                gaps.append(100 * (high - low) / low)
                noise.append(200 * max(latency[(m, c)][1] / latency[(m, c)][0] for m in (first, second)))
            within = all(gap < two_sd for gap, two_sd in zip(gaps, noise))
            lines.append(f"   - Swapped: {first} and {second}, {gaps[0]:.1f}% apart at CPU = {a} and {gaps[1]:.1f}% at "
                         f"CPU = {b}; two standard deviations of the repetitions are {noise[0]:.1f}% and {noise[1]:.1f}%, "
                         f"so the swap is {'within' if within else 'beyond'} the noise.")
    return lines


def claims(rows, models, cpus_done, latency_metric="mean_ms"):
    """The seed's three claims, checked: ranking stability, memory vs threads, run-to-run variance."""
    lines = []
    latency = summarise(rows, latency_metric)
    memory = summarise(rows, "peak_memory_mb")
    if len(cpus_done) >= 2:
        a, b = cpus_done[0], cpus_done[1]
        common = [m for m in models if (m, a) in latency and (m, b) in latency]
        tau = M.kendall([latency[(m, a)][0] for m in common], [latency[(m, b)][0] for m in common])
        order_a = sorted(common, key=lambda m: latency[(m, a)][0])
        order_b = sorted(common, key=lambda m: latency[(m, b)][0])
        lines += [f"1. **Ranking stability across CPU caps.** Kendall τ between the model orderings at CPU = {a} "
                  f"and CPU = {b}: **{tau:.3f}** over {len(common)} models.",
                  f"   - CPU = {a}: {' < '.join(order_a)}", f"   - CPU = {b}: {' < '.join(order_b)}"]
        lines += swapped_pairs(latency, common, a, b)
        changes = {m: abs(memory[(m, b)][0] - memory[(m, a)][0]) / memory[(m, a)][0]
                   for m in common if (m, a) in memory and (m, b) in memory}
        worst = max(changes, key=changes.get)
        lines.append(f"2. **Peak memory against thread count.** Largest relative change of peak memory between "
                     f"{a} and {b} threads: **{100 * changes[worst]:.1f}%** ({worst}); median over models "
                     f"{100 * statistics.median(changes.values()):.1f}%.")
    else:
        lines.append("1–2. Only one CPU count could run on this host, so ranking stability and the "
                     "memory-against-threads claim could not be checked.")
    cvs = {k: v[1] / v[0] for k, v in latency.items() if v[0] and v[2] > 1}
    if not cvs:
        lines.append("3. **Run-to-run variance** could not be checked: every configuration ran once "
                     "(give --repetitions 2 or more).")
        return lines
    noisy = sorted((k for k, cv in cvs.items() if cv > 0.02), key=lambda k: -cvs[k])
    lines.append(f"3. **Run-to-run variance.** Coefficient of variation of the {latency_metric.replace('_ms', '')} "
                 f"latency over the repetitions: median **{100 * statistics.median(cvs.values()):.2f}%**, "
                 f"largest {100 * max(cvs.values()):.2f}% ({max(cvs, key=cvs.get)[0]} at CPU = {max(cvs, key=cvs.get)[1]}). "
                 + (f"Noisy (> 2%): {', '.join(f'{m} at CPU = {c}' for m, c in noisy)}." if noisy
                    else "No configuration is above 2%."))
    return lines


def table(rows, models, cpus_done, columns):
    """Markdown table: one row per model, mean ± std over repetitions per (metric, CPU count)."""
    stats = {metric: summarise(rows, metric) for metric, _ in columns}
    header = ["model"] + [f"{label} CPU={c}" for metric, label in columns for c in cpus_done]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in models:
        cells = [m]
        for metric, _ in columns:
            for c in cpus_done:
                v = stats[metric].get((m, c))
                cells.append(f"{v[0]:.3f} ± {v[1]:.3f}" if v else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _bars(summary, models, cpus_done, path, ylabel, title, log=False):
    """Grouped bars: one group per model, one bar per CPU count, std over repetitions as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(models))
    width = 0.8 / max(1, len(cpus_done))
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(models)), 4.5))
    for i, c in enumerate(cpus_done):
        values = [summary.get((m, c), (np.nan, 0))[0] for m in models]
        errors = [summary.get((m, c), (0, 0))[1] for m in models]
        ax.bar(x + i * width, values, width, yerr=errors, capsize=2, label=f"CPU/Thread = {c}")
    ax.set_xticks(x + width * (len(cpus_done) - 1) / 2)
    ax.set_xticklabels(models, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def host_figures(rows, models, cpus_done, out, title, latency_metric="mean_ms", latency_label="mean inference time (ms)"):
    _bars(summarise(rows, latency_metric), models, cpus_done, os.path.join(out, "time_per_model.png"), latency_label,
          f"{title}: time per model (mean ± std over repetitions)", log=True)
    _bars(summarise(rows, "peak_memory_mb"), models, cpus_done, os.path.join(out, "peak_memory.png"),
          "peak memory (MiB)", f"{title}: peak memory per model (mean ± std)")


def common_arguments(parser, here, cpus, memory, quick_help):
    """The options both seed experiments take."""
    parser.add_argument("--models", nargs="+", help="zoo names (default: the experiment's full set)")
    parser.add_argument("--cpus", type=int, nargs="+", default=cpus, help="CPU caps; threads = CPUs")
    parser.add_argument("--iterations", type=int, default=500, help="timed iterations (default 500)")
    parser.add_argument("--repetitions", type=int, default=5, help="repetitions of every configuration (default 5)")
    parser.add_argument("--memory", default=memory, help=f"memory cap (default {memory})")
    parser.add_argument("--backend", default="auto", choices=["auto", "docker", "local"])
    parser.add_argument("--device-csv", help="device measurements (model, threads, latency_ms[, peak_memory_mb])")
    parser.add_argument("--rows", metavar="RESULTS_CSV",
                        help="analyse the rows of an earlier run's results.csv instead of measuring again")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", default=here, help="where RESULTS.md, results.csv and the figures go")
    parser.add_argument("--models-dir", default=os.path.join(here, ".cache", "models"))


def calibrate_with_device(rows, device_csv, out, runtime, latency_metric="mean_ms"):
    """Full calibration against a device CSV (model, threads, latency_ms, ...): figures with R²."""
    from calibration import importers, plots
    from calibration.api import Calibration
    from calibration.fitting import build

    device = importers.load(device_csv)
    latency, memory = summarise(rows, latency_metric), summarise(rows, "peak_memory_mb")
    host = [{"model": m, "threads": c, "runtime": runtime, "status": "ok", "latency_ms": {"median": v[0]},
             "peak_memory_mb": memory.get((m, c), (None,))[0]} for (m, c), v in latency.items()]
    # The full runs have a reference per zoo model; --quick has two, a fit no leave-one-out can check,
    # kept all the same and named unchecked in RESULTS.md.
    calibration = Calibration(build(device, host, "ols", force=True))
    calibration.save(os.path.join(out, "calibration.json"))
    figures = plots.plot_all(calibration, out, "device")
    return calibration, figures


def finish(opts, rows, lines, runtime, started, models, cpus_done):
    """Add the wall time, the seed's claims, the figures and (with a device CSV) the calibration;
    then write RESULTS.md and print it."""
    import time

    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    lines[next(i for i, line in enumerate(lines) if line.startswith("- Every row"))] += (
        f"\n- Wall time of this run on this host: {minutes} min {seconds} s (model export included).")
    lines += ["## The seed's claims, checked on this host", "", *claims(rows, models, cpus_done), "",
              "![time per model](time_per_model.png)", "", "![peak memory](peak_memory.png)", ""]
    if opts.device_csv:
        calibration, figures = calibrate_with_device(rows, opts.device_csv, opts.out, runtime)
        lines += ["## Calibration against the device", ""]
        lines += [f"- {f['metric']} at {f['threads']} threads: y = {f['a']:.3g}x + {f['b']:.3g}, "
                  + (f"R² = {f['r2']:.3f}, LOO MAPE {f.get('loo_mape', float('nan')):.1f}%" if f["n"] >= 3 else
                     f"unchecked: {f['n']} references, which a line fits exactly") for f in calibration["fits"]]
        lines += [""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in figures]
    with open(os.path.join(opts.out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def command(main, name):
    """Run an experiment's main as a command: an unknown zoo name or an unwritable output is one line."""
    try:
        main()
    except (KeyError, OSError) as exc:
        sys.exit(f"{name}: error: {exc}")


def cpu_note(skipped, cores):
    if not skipped:
        return []
    return [f"- CPU = {', '.join(map(str, skipped))} could not run: this host has {cores} cores, and edge-profiler "
            f"refuses a cap it cannot honour rather than oversubscribe (`CPUS={skipped[0]}: this host has only "
            f"{cores} usable cores`)."]


STUDY_FIGURES = ["![predicted against measured, typical k = 10 draw](pred_vs_measured_k10.png)", "",
                 "![accuracy against k](accuracy_vs_k.png)", ""]


def write_study_results(out, lines):
    """A calibration study's RESULTS.md: its lines, then the two figures every study draws."""
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines + STUDY_FIGURES))


def typical_draws(draws_by_method, methods, size):
    """(matplotlib's pyplot, the figure, [(axis, method, the median draw of that method)]): one panel
    per method, each showing its typical k = 10 draw (the draws are tuples whose first item is the MAPE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(methods), figsize=size)
    panels = []
    for ax, method in zip(axes, methods):
        runs = sorted(draws_by_method[method], key=lambda r: r[0])
        panels.append((ax, method, runs[len(runs) // 2]))  # the median draw: a typical one
    return plt, fig, panels


def finish_accuracy_figure(plt, fig, axes, ks, title, path, dpi, legend_size=8):
    """The accuracy-against-k figure's common dressing (k on the x axis, grid, legend, title), saved."""
    for ax in axes:
        ax.set_xlabel("reference networks k")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=legend_size)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
