"""Formatters: each returns lines; only the CLI prints them. Names and messages from files are data:
every cell goes through profiler.escape."""

import math

from profiler.escape import markdown_cell, printable_text


def _ms(value):
    """At least three significant digits, never an exponent: 123, 12.3, 1.23, 0.123, 0.00123."""
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    if value <= 0:
        return f"{value:.3f}"
    return f"{value:.{max(3, 2 - math.floor(math.log10(value)))}f}"


def _mb(value):
    return "-" if value is None else f"{value:.1f}"


def macs_cell(record):
    card = record.get("model_card") or {}
    if card.get("macs_unresolved"):
        return "?"
    macs = card.get("macs")
    return "-" if macs is None else _ms(macs / 1e6)


def caps_cell(record):
    enforced, target = record.get("enforced") or {}, record.get("target") or {}
    if not enforced:
        return "-"
    cpu = f"{target.get('cpus', 0):g}cpu" + ("" if enforced.get("cpus") else "(not enforced)")
    memory = (f"{target['memory_mb']:g}MiB" + ("" if enforced.get("memory") else "(not enforced)")
              if target.get("memory_mb") else "no-mem-cap")
    return f"{cpu} {memory}"


def _table(header, rows):
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def results_table(records):
    return _table(*result_rows(records))


def markdown_lines(records):
    """The results table as GitHub markdown, then the ranking, for pasting into a review."""
    header, rows = result_rows(records)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]
    for line in ranking(records):
        if line.startswith(("Ranking by", "Only ")):
            lines += ["", markdown_cell(line), ""]
        elif line.strip():
            lines.append(f"- {markdown_cell(line.strip())}")
    return lines


def flags(record):
    """Every reason to doubt a record's figures: the measurement's own flags (unstable, disturbed,
    remeasured) and its prediction's (extrapolated, outside_mix, bounded: a fit that would have
    crossed zero there, see calibration.fits.bounded_value)."""
    found = list(record.get("flags") or [])
    for p in (record.get("prediction") or {}).values():
        if p.get("extrapolated") and "extrapolated" not in found:
            found.append("extrapolated")
        if p.get("outside_mix") and "outside_mix" not in found:
            found.append("outside_mix")
        if p.get("bounded") and "bounded" not in found:
            found.append("bounded")
    return found


def result_rows(records):
    """(header, rows): one row per model; the terminal and markdown tables both show these."""
    predicted = any(r.get("prediction") for r in records)
    header = ["model", "runtime", "status", "load ms", "median ± IQR ms (min … max)", "median 95% CI", "p99 ms",
              "peak MiB", "MMACs", "caps", "flags"]
    scored = any(r.get("accuracy") for r in records)
    if predicted:
        header += ["device ms (95% PI)", "device MiB"]
    if scored:
        header.append("accuracy")
    rows = []
    for r in records:
        stats = r.get("latency_ms")
        latency = (f"{_ms(stats['median'])} ± {_ms(stats['iqr'])} ({_ms(stats['min'])} … {_ms(stats['max'])})"
                   if stats else printable_text(r.get("error") or "-")[:60])
        ci = (f"{_ms(stats['ci_low'])}–{_ms(stats['ci_high'])}" if stats and stats.get("ci_low") is not None
              else "-")
        row = [printable_text(r["model"]), r.get("runtime") or "-", r["status"], _ms(r.get("load_ms")), latency, ci,
               _ms(stats["p99"]) if stats else "-", _mb(r.get("peak_memory_mb")), macs_cell(r), caps_cell(r),
               ",".join(flags(r)) or "-"]
        if predicted:
            row += _prediction_cells(r.get("prediction"))
        if scored:
            row.append(accuracy_text(r.get("accuracy")))
        rows.append(row)
    return header, rows


def accuracy_text(accuracy):
    """One cell: top-1 (classification), MAE (regression), or what the outputs were (no labels)."""
    if not accuracy:
        return "-"
    metrics, n = accuracy.get("metrics") or {}, accuracy.get("n")
    if accuracy.get("task") == "classification":
        text = f"top-1 {100 * metrics['top1']:.2f}% (n={n})"
    elif accuracy.get("task") == "regression":
        text = f"MAE {metrics['mae']:.4g} (n={n})"
    else:
        text = f"outputs only (n={n})"
    agreement = accuracy.get("agreement")
    if isinstance(agreement, dict):
        parts = [f"{100 * agreement['top1']:.2f}% same top class"] if agreement.get("top1") is not None else []
        if agreement.get("max_abs_diff") is not None:
            parts.append(f"max |Δ| {agreement['max_abs_diff']:.3g}")
        text += f"; vs {printable_text(agreement.get('with'))}: {', '.join(parts)}"
    return text


def _prediction_cells(prediction):
    if not prediction:
        return ["-", "-"]
    cells = []
    for metric in ("latency_ms", "peak_memory_mb"):
        p = prediction.get(metric)
        if not p:
            cells.append("-")
            continue
        text = _ms(p["value"]) if metric == "latency_ms" else _mb(p["value"])
        if p.get("low") is not None:
            fmt = _ms if metric == "latency_ms" else _mb
            text += f" ({fmt(p['low'])}–{fmt(p['high'])})"
        if p.get("extrapolated"):
            text += " extrap."
        if p.get("bounded"):
            text += " bounded"
        if p.get("outside_mix"):
            text += " mix: " + "+".join(p["outside_mix"])
        if p.get("exceeds_device_ram"):
            text += " WON'T FIT"
        cells.append(text)
    return cells


def ranking_latency(record):
    """What a model is ranked by: its predicted device latency when there is one, else its median."""
    p = (record.get("prediction") or {}).get("latency_ms")
    return p["value"] if p else record["latency_ms"]["median"]


def _predicted(record):
    return bool((record.get("prediction") or {}).get("latency_ms"))


def ranking_groups(records):
    """[(basis, records fastest first)]: predicted device latencies and host medians are two kinds of
    figure, never ranked against each other; the predicted group comes first."""
    ok = [r for r in records if r["status"] == "ok" and r.get("latency_ms")]
    measured = [r for r in ok if not _predicted(r)]
    groups = [("predicted device latency", [r for r in ok if _predicted(r)]),
              ("median latency measured on the device" if measured and all(r.get("native_device") for r in measured)
               else "median latency on this host", measured)]
    return [(basis, sorted(group, key=ranking_latency)) for basis, group in groups if group]


def ranked(records):
    """The measured models of the leading kind of figure, fastest first: those with a predicted device
    latency when any has one, else every measured model by its host median."""
    groups = ranking_groups(records)
    return groups[0][1] if groups else []


def ranking_interval(record):
    """The span a model's ranked figure may lie in: its prediction's 95% interval, else the host median's."""
    p = (record.get("prediction") or {}).get("latency_ms")
    if p:
        return (p["low"], p["high"]) if p.get("low") is not None else (p["value"], p["value"])
    stats = record["latency_ms"]
    return stats.get("ci_low", stats["median"]), stats.get("ci_high", stats["median"])


def ranking(records):
    """hyperfine-style summary: fastest first, with ratios to the fastest; neighbours whose intervals
    overlap are said to be within each other's noise, and flagged figures say so. Rows with a device
    prediction and rows without one are ranked apart, each by its own kind of figure."""
    key = ranking_latency
    name = lambda r: f"{printable_text(r['model'])} ({r.get('runtime')})"  # noqa: E731
    mark = lambda r: f"  [{', '.join(flags(r))}]" if flags(r) else ""  # noqa: E731
    groups = ranking_groups(records)
    lines = []
    for index, (basis, ok) in enumerate(groups):
        if len(ok) < 2:
            if len(groups) > 1:
                only = ok[0]
                text = (f"Only {name(only)} has a predicted device latency ({_ms(key(only))} ms); it is not ranked "
                        "against the host figures of the others" if basis.startswith("predicted") else
                        f"Only {name(only)} has no device prediction: its {basis} ({_ms(key(only))} ms) is not "
                        "ranked against the predicted figures")
                lines += ([""] if lines else []) + [text]
            continue
        apart = (" (no device prediction for these: not comparable with the ranking above)"
                 if index and lines else " (no device prediction for the models below)" if len(groups) > 1 and
                 basis.startswith("median") else "")
        lines += ([""] if lines else []) + [f"Ranking by {basis}{apart}:", f"  {name(ok[0])} is fastest{mark(ok[0])}"]
        for r in ok[1:]:
            lines.append(f"    {key(r) / key(ok[0]):6.2f} × slower: {name(r)}{mark(r)}")
        ties = [(a, b) for a, b in zip(ok, ok[1:]) if ranking_interval(b)[0] <= ranking_interval(a)[1]]
        for a, b in ties:
            lines.append(f"  {name(a)} and {name(b)} are within each other's noise (95% intervals overlap)")
    return lines if any(line.startswith("Ranking by") for line in lines) else []


def accuracy_score(record):
    """What the front maximises: top-1 for classification, minus MAE for regression, else None."""
    accuracy = record.get("accuracy") or {}
    metrics = accuracy.get("metrics") or {}
    if accuracy.get("task") == "classification":
        return metrics.get("top1")
    if accuracy.get("task") == "regression" and metrics.get("mae") is not None:
        return -metrics["mae"]
    return None


def front_limit_problem(name, value):
    """Why a front filter cannot work (budget_ms: a latency above 0; min_accuracy: a finite score, a
    top-1 share at most 1), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value!r} is not a number"
    if not math.isfinite(value):
        return f"{value}: not a finite number"
    if name == "budget_ms" and value <= 0:
        return f"{value:g}: a latency in ms above 0"
    if name == "min_accuracy" and value > 1:
        return f"{value:g}: a top-1 share at most 1 (e.g. 0.95), or minus an MAE"
    return None


def front(records, budget_ms=None, min_accuracy=None):
    """(candidates, on the front): the measured models with an accuracy score that meet the budget and
    the accuracy floor, fastest first, and those of them no other beats on both latency and accuracy."""
    scored = [r for r in ranked(records) if accuracy_score(r) is not None]
    if budget_ms is not None:
        scored = [r for r in scored if ranking_latency(r) <= budget_ms]
    if min_accuracy is not None:
        scored = [r for r in scored if accuracy_score(r) >= min_accuracy]
    best, on_front = None, []
    for r in scored:  # fastest first: on the front when more accurate than every faster one
        if best is None or accuracy_score(r) > best:
            on_front.append(r)
            best = accuracy_score(r)
    return scored, on_front


def front_lines(records, budget_ms=None, min_accuracy=None, device_ram_mb=None):
    """The accuracy-latency front as lines: each model on it, its accuracy, latency and memory fit."""
    scored, on_front = front(records, budget_ms, min_accuracy)
    if not scored:
        unfiltered = front(records)[0] if budget_ms is not None or min_accuracy is not None else []
        if unfiltered:
            limits = " and ".join(text for value, text in ((budget_ms, f"--budget-ms {budget_ms:g}"),
                                                           (min_accuracy, f"--min-accuracy {min_accuracy:g}"))
                                  if value is not None)
            return [f"Accuracy front: no model meets {limits} ({len(unfiltered)} scored)"]
        return []
    basis = ("predicted device latency" if on_front and on_front[0].get("prediction") else
             "device median latency" if on_front and all(r.get("native_device") for r in scored) else
             "host median latency")
    lines = [f"Accuracy against {basis}: {len(on_front)} of {len(scored)} model(s) on the front"]
    for r in on_front:
        memory = ""
        if device_ram_mb and r.get("peak_memory_mb") is not None:
            predicted = ((r.get("prediction") or {}).get("peak_memory_mb") or {}).get("value")
            peak, which = ((predicted, "predicted") if predicted is not None else
                           (r["peak_memory_mb"], "device peak" if r.get("native_device") else "host peak"))
            memory = f", {which} {peak:.0f} MiB {'fits' if peak <= device_ram_mb else 'does NOT fit'} DEVICE_RAM"
        lines.append(f"  {printable_text(r['model'])} ({r.get('runtime')}, {r.get('precision') or '?'}): "
                     f"{accuracy_text(r.get('accuracy'))}, {_ms(ranking_latency(r))} ms{memory}")
    return lines


def card_lines(path, card):
    lines = [printable_text(path), f"  size         {card['size_mb']:.3f} MiB"]
    if card.get("params") is not None:
        lines.append(f"  params       {card['params']:,}")
        if card.get("macs_unresolved"):
            lines.append("  MACs         unknown: the shapes of " + ", ".join(
                f"{printable_text(op)}×{n}" for op, n in card["macs_unresolved"].items())
                + " could not be resolved, even by running the model once at the profiled input shape")
        else:
            lines.append(f"  MACs         {card['macs']:,} (conv + fc/matmul)")
            if card.get("macs_int") is not None:
                lines.append(f"    integer     {card['macs_int']:,}, float {card['macs_float']:,}")
            lines += [f"    {cls:<11} {value:,}" for cls, value in card["macs_by_class"].items() if value]
            if card.get("macs_attention"):
                lines.append(f"    attention   {card['macs_attention']:,} (activation × activation, within fc/matmul)")
        elements = [(label, card.get(key)) for label, key in (("softmax", "softmax_elements"),
                    ("norm", "norm_elements"), ("GELU", "gelu_elements")) if card.get(key)]
        if elements:
            lines.append("  elements     " + ", ".join(f"{label} {value:,}" for label, value in elements))
        lines.append(f"  activations  {card['activation_bytes'] / (1024 * 1024):.2f} MiB written, {card['nodes']} nodes")
    ops = card.get("ops") or {}
    if ops:
        lines.append("  ops          " + ", ".join(f"{printable_text(name)}×{count}" for name, count in ops.items()))
    return lines


def cap_warnings(records):
    """One line per distinct reason a requested cap was not enforced (the table marks each row too)."""
    seen, lines = set(), []
    for r in records:
        if r.get("native_device"):  # measured on the device itself: nothing is meant to be capped
            continue
        enforced, target = r.get("enforced") or {}, r.get("target") or {}
        wanted = {"CPUS": True, "MEMORY": bool(target.get("memory_mb"))}
        missing = tuple(key for key, asked in wanted.items() if asked and enforced and not enforced.get(key.lower()))
        if missing and (missing, enforced.get("how")) not in seen:
            seen.add((missing, enforced.get("how")))
            lines.append(f"WARNING: {' and '.join(missing)} not enforced by the {r.get('backend')} backend: "
                         f"{enforced.get('how')}")
    return lines


def overhead_lines(records):
    """One line per backend and runtime: what an empty sandbox run costs, outside every figure."""
    seen, lines = set(), []
    for r in records:
        overhead = r.get("executor_overhead")
        key = (r.get("backend"), r.get("runtime"))
        if not overhead or key in seen:
            continue
        seen.add(key)
        if overhead.get("empty_run_ms") is None:
            lines.append(f"Overhead: the empty {key[0]} run with {key[1]} failed: {overhead.get('error')}")
        else:
            lines.append(f"Overhead: an empty {key[0]} run with {key[1]} takes {overhead['empty_run_ms']:.0f} ms "
                         f"({overhead['runtime_import_ms']:.0f} ms of it importing the runtime); "
                         f"no figure above includes it")
    return lines
