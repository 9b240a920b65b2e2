"""`calibrate --html`: one self-contained page of a fit (the fit table, every reference, the
figures and the provenance), built with the profile report's page parts."""

import os
import tempfile
import time

import profiler
from profiler.harness.files import write_atomic
from profiler.html_report import html_text, number_text, facts, figure, page, table


def calibration_report(path, calibration, device_name="device"):
    """Write the report of one fit: the fit table, every reference, the figures and the provenance."""
    from calibration.api import Calibration
    from calibration.fits import fit_label
    from calibration.plots import plot_all

    fits = calibration["fits"]
    header = ["metric", "threads", "method", "n", "R²", "MAPE %", "LOO MAPE %", "within ±10% (LOO)", "ρ", "τ",
              "host range"]
    summary = Calibration(calibration).summary()
    summary = summary.astype(object).where(summary.notna(), None).to_dict("records")  # plain numbers, None for none
    rows = [[f["metric"] + (f" ({f['precision']})" if f.get("precision") else "")]
            + [s[c] for c in ("threads", "method", "n", "r2", "mape", "loo_mape", "loo_within10", "spearman", "kendall")]
            + [" – ".join(number_text(v) for v in f["host_range"])] for s, f in zip(summary, fits)]
    choices = "".join(f"<li>{html_text(fit_label(f))}: auto chose {html_text(f['auto']['chose'])} "
                      f"({html_text(f['auto']['why'])})</li>" for f in fits if f.get("auto"))
    refs = []
    for f in fits:
        for r in f["references"]:
            loo = r.get("loo")
            refs.append([f["metric"], f["threads"], r["model"], r["host"], r["device"], r["fitted"], loo,
                         None if loo is None else round(100 * (loo - r["device"]) / r["device"], 2)])
    target = calibration.get("target") or {}
    provenance = facts([("device", device_name), ("runtime", f"{calibration.get('runtime')} "
                                                             f"{calibration.get('runtime_version') or ''}"),
                        ("host target", f"{target.get('name')}: {target.get('cpus')} CPU, {target.get('threads')} "
                                        f"threads, memory {target.get('memory_mb') or 'uncapped'} MiB"
                         if target else None),
                        ("method asked", calibration.get("method")), ("fitted", calibration.get("created_at")),
                        ("edge-profiler", profiler.__version__)])
    unmatched = ", ".join(f"{u['model']}@{u['threads']}t" for u in calibration.get("unmatched") or [])
    with tempfile.TemporaryDirectory(prefix="edge-profiler-report-") as folder:
        figures = "".join(figure(png, f"Calibration: predicted against measured ({os.path.basename(png)[12:-4]})")
                          for png in plot_all(calibration, folder, device_name))
        sections = [("Calibration", provenance), ("Fits", table(header, rows, table_id="fits")
                                                   + (f"<ul>{choices}</ul>" if choices else "")),
                    ("References", table(["metric", "threads", "model", "host", "measured", "fitted", "leave-one-out",
                                          "LOO error %"], refs, table_id="references")),
                    ("Figures", figures),
                    ("Unmatched device rows", f"<p class=warn>{html_text(unmatched)}</p>" if unmatched else "")]
        text = page(f"edge-profiler calibration: {device_name}", f"{len(fits)} fit(s), written "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", sections)
    write_atomic(path, lambda f: f.write(text))
