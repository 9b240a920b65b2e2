"""One self-contained HTML report (`profile --html`, `calibrate --html`): sortable tables, the ranking,
figures inline as data: URIs, and what was measured where and when. No script, style or image comes
from the network; the page's Content-Security-Policy forbids it, so it opens offline from disk."""

import base64
import html
import os
import tempfile
import time

import profiler
from profiler.escape import printable_text
from profiler.harness.files import write_atomic
from profiler.report import caps_cell, macs_cell, accuracy_text, ranking, ranking_groups, ranking_latency

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1400px;
color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}
.meta{color:#556;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin:6px 0}
th,td{padding:3px 7px;border-bottom:1px solid #e4e6ee;text-align:left;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#f3f4f8;user-select:none}
table.sortable th:after{content:" \\2195";color:#99a}
th[data-dir=asc]:after{content:" \\2191"}th[data-dir=desc]:after{content:" \\2193"}
.flag{color:#a33;font-weight:600}.ok{color:#276}.warn{color:#a33}
.scroll{overflow-x:auto}figure{margin:12px 0}figure img{max-width:100%;border:1px solid #e4e6ee}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}dt{color:#556}dd{margin:0}
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
      table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.v, y = b.cells[column].dataset.v;
        x = x === undefined ? a.cells[column].textContent : x;
        y = y === undefined ? b.cells[column].textContent : y;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return dir === 'asc' ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def html_text(value):
    """Text as HTML: markup taken literally, control characters (ESC, BEL, newlines) shown as \\xNN."""
    return html.escape(printable_text("" if value is None else str(value)))


def number_text(value, digits=3):
    if value is None or value != value:
        return None
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def table(header, rows, sortable=True, table_id=None):
    """rows: lists of cells; a cell is text, a number, or (text, sort value, css class)."""
    attrs = (f' id="{html_text(table_id)}"' if table_id else "") + (' class="sortable"' if sortable else "")
    out = [f"<div class=scroll><table{attrs}><thead><tr>"]
    out += [f"<th>{html_text(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for cell in row:
            if isinstance(cell, tuple):
                text, value, css = (cell + (None, None))[:3]
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                text, value, css = number_text(cell), cell, "n"
            else:
                text, value, css = cell, None, None
            attrs = (f' data-v="{html_text(value)}"' if value is not None else "") + (f' class="{css}"' if css else "")
            out.append(f"<td{attrs}>{html_text('-' if text is None else text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def figure(path, caption):
    """An <img> with the SVG (or PNG) inline as a data: URI."""
    svg = os.path.splitext(path)[0] + ".svg"
    source, mime = (svg, "image/svg+xml") if os.path.isfile(svg) else (path, "image/png")
    with open(source, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return (f'<figure><img alt="{html_text(caption)}" src="data:{mime};base64,{data}">'
            f"<figcaption class=meta>{html_text(caption)}</figcaption></figure>")


def facts(pairs):
    return "<dl>" + "".join(f"<dt>{html_text(k)}</dt><dd>{html_text(v)}</dd>" for k, v in pairs if v not in (None, "")) + "</dl>"


def page(title, subtitle, sections):
    body = "".join(f"<section><h2>{html_text(name)}</h2>{content}</section>" for name, content in sections if content)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html_text(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html_text(title)}</h1><p class=meta>{html_text(subtitle)}</p>{body}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


UNITS = {"latency_ms": "ms", "peak_memory_mb": "MiB", "energy_mj": "mJ", "power_mw": "mW", "load_ms": "load ms"}


def predicted_metrics(records):
    """The metrics any record has a prediction for, latency first."""
    found = {m for r in records for m in (r.get("prediction") or {})}
    return sorted(found, key=lambda m: (m != "latency_ms", m))


def _when(records):
    times = sorted(r.get("started_at") for r in records if r.get("started_at"))
    return f"{times[0]} to {times[-1]}" if len(times) > 1 else (times[0] if times else "unknown")


def _prediction_cell(p, digits=3):
    if not p:
        return None
    text = number_text(p["value"], digits)
    if p.get("low") is not None:
        text += f" ({number_text(p['low'], digits)}–{number_text(p['high'], digits)})"
    return (text, p["value"], "n")


def _flags(record):
    """The record's measurement flags and its prediction's, for the flags column."""
    flags = set(record.get("flags") or [])
    for p in (record.get("prediction") or {}).values():
        if p.get("extrapolated"):
            flags.add("extrapolated")
        if p.get("bounded"):
            flags.add("bounded")
        if p.get("outside_mix"):
            flags.add("mix: " + "+".join(p["outside_mix"]))
        if p.get("exceeds_device_ram"):
            flags.add("won't fit in device RAM")
    return ", ".join(sorted(flags))


def results_section(records):
    metrics = predicted_metrics(records)
    header = ["model", "runtime", "status", "load ms", "median ms", "IQR ms", "min ms", "max ms", "p99 ms",
              "median 95% CI", "disturbed runs", "peak MiB", "MMACs", "caps"]
    if metrics:
        header += [f"device {UNITS.get(m, m)} (95% PI)" for m in metrics]
    scored = any(r.get("accuracy") for r in records)
    if scored:
        header.append("accuracy")
    header += ["flags"]
    rows = []
    for r in records:
        stats = r.get("latency_ms") or {}
        status = (r["status"], r["status"], "ok" if r["status"] == "ok" else "warn")
        row = [r.get("model"), r.get("runtime"), status, r.get("load_ms")]
        row += [stats.get(k) for k in ("median", "iqr", "min", "max", "p99")]
        row.append(f"{number_text(stats['ci_low'])}–{number_text(stats['ci_high'])}" if stats.get("ci_low") is not None else "-")
        disturbance = r.get("disturbance") or {}
        row.append(f"{disturbance['runs']} of {disturbance['of']}" if disturbance.get("runs") is not None else "-")
        macs = macs_cell(r)
        row += [r.get("peak_memory_mb"), (macs, None if macs == "-" else float(macs), "n"), caps_cell(r)]
        if metrics:
            prediction = r.get("prediction") or {}
            row += [_prediction_cell(prediction.get(m)) for m in metrics]
        if scored:
            row.append(accuracy_text(r.get("accuracy")))
        flags = _flags(r)
        row.append((flags, flags, "flag") if flags else "")
        if r["status"] != "ok" and r.get("error"):
            row[2] = (f"{r['status']}: {r['error'][:120]}", r["status"], "warn")
        rows.append(row)
    return table(header, rows, table_id="results")


def ranking_section(records):
    groups = ranking_groups(records)
    if not groups:
        return ""
    ties = [line.strip() for line in ranking(records) if "within each other's noise" in line]
    notes = "".join(f"<p class=meta>{html_text(line)}</p>" for line in ties)
    return "".join(_ranking_table(basis, ok, index, len(groups) > 1) for index, (basis, ok) in enumerate(groups)) + notes


def _ranking_table(basis, ok, index, several):
    """One ranked table: rows of one kind of figure (predicted device latency, or host median)."""
    key = ranking_latency
    predicted = basis.startswith("predicted")
    others = [m for m in predicted_metrics(ok) if m != "latency_ms"]
    header = ["rank", "model", "runtime", ("predicted device ms" if predicted else "median ms"), "× fastest"]
    if predicted:
        header += ["95% interval"] + [f"predicted {UNITS.get(m, m)}" for m in others] + ["flags"]
    rows = []
    for rank, r in enumerate(ok, start=1):
        row = [rank, r["model"], r.get("runtime"), key(r), round(key(r) / key(ok[0]), 3)]
        if predicted:
            prediction = r.get("prediction") or {}
            p = prediction.get("latency_ms") or {}
            interval = f"{number_text(p['low'])} – {number_text(p['high'])}" if p.get("low") is not None else "none"
            row += [interval] + [(prediction.get(m) or {}).get("value") for m in others] + [_flags(r)]
        rows.append(row)
    if not predicted:  # the group's own basis (ranking_groups), with what the host figures were taken under
        basis += (", under the target's caps" if basis.endswith("on this host") else "") + (
            "; these models have no device prediction and are not ranked against those above" if several else "")
    return (f"<p class=meta>By {basis}, fastest first.</p>"
            + table(header, rows, table_id="ranking" if index == 0 else f"ranking-{index}"))


def target_section(records):
    first = next((r for r in records if r.get("target")), {})
    target, enforced, host = first.get("target") or {}, first.get("enforced") or {}, first.get("host") or {}
    versions = sorted({f"{r.get('runtime')} {r.get('runtime_version')}" for r in records if r.get("runtime_version")})
    memory = f"{target['memory_mb']:g} MiB" if target.get("memory_mb") else "no cap"
    return facts([
        ("target", target.get("name")), ("CPUs", target.get("cpus")), ("threads", target.get("threads")),
        ("memory cap", memory), ("backend", first.get("backend")),
        ("caps enforced", f"none: measured natively on {first['native_device'].get('ssh_host', 'the device')}"
         if isinstance(first.get("native_device"), dict)
         else f"CPU {'yes' if enforced.get('cpus') else 'NO'}, memory {'yes' if enforced.get('memory') else 'NO'}"
         if enforced else "none reported"),
        ("how", enforced.get("how")), ("runtimes", ", ".join(versions)),
        ("host", f"{host.get('hostname') or ''} {host.get('cpu_model') or ''}".strip()),
        ("kernel", host.get("kernel")), ("measured", _when(records)),
        ("edge-profiler", host.get("tool_version") or profiler.__version__)])


def profile_report(path, records, calibration=None, budget_ms=None, min_accuracy=None):
    """Write the report of one profile run; calibration (an object with plot(), calibration.Calibration) adds its figures; models
    with an accuracy add the accuracy-latency front (within the budget and the accuracy floor)."""
    from profiler.figures import accuracy_front, latency_distribution

    with tempfile.TemporaryDirectory(prefix="edge-profiler-report-") as folder:
        figures = []
        png = latency_distribution(records, folder)
        if png:
            figures.append(figure(png, "Latency distribution per model (every timed run)"))
        png = accuracy_front(records, folder, budget_ms=budget_ms, min_accuracy=min_accuracy)
        if png:
            figures.append(figure(png, "Accuracy against latency: the front (circled) is every model no other beats "
                                       "on both"))
        if calibration:
            figures += _calibration_figures(calibration, folder)
        warnings = [line for r in records for line in r.get("warnings") or []]
        sections = [("Target, caps and host", target_section(records)), ("Results", results_section(records)),
                    ("Ranking", ranking_section(records)), ("Figures", "".join(figures)),
                    ("Warnings", "<ul>" + "".join(f"<li class=warn>{html_text(w)}</li>" for w in warnings) + "</ul>"
                     if warnings else "")]
        text = page(f"edge-profiler: {len(records)} model(s)", f"measured {_when(records)}; report written "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", sections)
    write_atomic(path, lambda f: f.write(text))


def _calibration_figures(calibration, folder, device_name="device"):
    """The figures of a calibration object that draws its own (`plot(folder, device_name)`: PNG paths)."""
    plot = getattr(calibration, "plot", None)
    if not callable(plot):
        return []
    return [figure(png, f"Calibration: predicted against measured ({os.path.basename(png)[12:-4]})")
            for png in plot(folder, device_name)]
