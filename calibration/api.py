"""The Python API of `calibrate`: fit a host-to-device mapping, predict, save and load. It never prints
and never exits: problems are `CalibrationError` with the command's one-line message.

>>> import calibration
>>> example = "experiments/nb201_pi5/calibrate_example/"
>>> cal = calibration.fit(example + "pi5_device.csv", host=example + "host.json", method="ols", metrics=["latency_ms"])
>>> cal.method, len(cal.summary())
('ols', 1)
>>> bool(cal.summary().loc[0, "r2"] > 0.9)
True
>>> calibration.fit(example + "no_such.csv", host=example + "host.json")
Traceback (most recent call last):
...
calibration.errors.CalibrationError: experiments/nb201_pi5/calibrate_example/no_such.csv: file not found
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional

from calibration.errors import CalibrationError
from profiler.escape import printable_text as printable


class Calibration(Mapping):
    """A fitted calibration: its fits (`Fit` objects, whose estimators predict and give their
    intervals) and what it was made from (runtime, target, precisions, references left out…), read as a
    mapping in the shape it is saved in. `save` and `load` are the only places it is a JSON body; a
    body of an older version is upgraded on load."""

    def __init__(self, data, warnings=()):
        from calibration.fits import Fit
        from calibration.schema import calibration_problem

        if not isinstance(data, Mapping):
            raise CalibrationError(f"Calibration: expected the calibration's fields (a mapping), not "
                                   f"{type(data).__name__}")
        fits = data.get("fits")
        body = dict(data, fits=[f.to_dict() if isinstance(f, Fit) else f for f in fits]) \
            if isinstance(fits, (list, tuple)) else dict(data)
        problem = calibration_problem(body)
        if problem:
            raise CalibrationError(f"Calibration: not a usable calibration ({problem})")
        self._fields = dict(body, fits=[f if isinstance(f, Fit) else Fit.from_dict(f) for f in fits])
        self.warnings = list(warnings)

    def __getitem__(self, key):
        return self._fields[key]

    def __iter__(self):
        return iter(self._fields)

    def __len__(self):
        return len(self._fields)

    @property
    def data(self):
        """The JSON body `save` writes (a fresh copy: editing it changes nothing here)."""
        return self.to_dict()

    def to_dict(self):
        """The JSON body `save` writes."""
        import copy

        return copy.deepcopy(dict(self._fields, fits=[f.to_dict() for f in self.fits]))

    method = property(lambda self: self._fields.get("method"))
    runtime = property(lambda self: self._fields.get("runtime"))
    fits = property(lambda self: self._fields["fits"])

    def __repr__(self):
        metrics = sorted({f["metric"] for f in self.fits})
        return (f"<Calibration {self.method} for {self.runtime or '?'}: {len(self.fits)} fit(s) of "
                f"{', '.join(metrics)}>")

    def summary(self):
        """One row per fit (metric, threads, precision when the references mix them): method, n, R², MAPE
        and LOO MAPE (%), the share within ±10% (%, in-sample and leave-one-out), Spearman ρ and Kendall τ."""
        import pandas as pd

        from calibration.metrics import within

        columns = ["metric", "threads", "precision", "method", "n", "a", "b", "r2", "adj_r2", "rmse", "mape", "loo_mape",
                   "within10", "loo_within10", "spearman", "kendall"]
        rows = []
        for fit in self.fits:
            refs = fit.get("references") or []
            row = {c: fit.get(c) for c in columns}
            row["within10"] = 100 * within([r["device"] for r in refs], [r["fitted"] for r in refs]) if refs else None
            row["loo_within10"] = None if fit.get("loo_within_10pct") is None else 100 * fit["loo_within_10pct"]
            rows.append(row)
        return pd.DataFrame(rows, columns=columns)

    def predictor(self, *, force=False, warn=print, device_ram_mb=None):
        """The one-method predictor `profiler.profile(calibration=...)` annotates each record with."""
        from calibration.predicting import Predictor

        return Predictor(self, force=force, warn=warn, device_ram_mb=device_ram_mb)

    def annotate(self, records, *, force=False, device_ram=None, device_threads=None):
        """The records with `prediction` added (device value, 95% interval, flags); warnings go to self.warnings."""
        from calibration.predicting import Predictor

        if device_threads is not None and (isinstance(device_threads, bool) or not isinstance(device_threads, int)
                                           or device_threads < 1):
            raise CalibrationError(f"device_threads={device_threads!r}: a whole number of threads above 0")
        predictor = Predictor(self, force=force, warn=self.warnings.append, device_ram_mb=_ram(device_ram),
                              device_threads=device_threads)
        records = [predictor.annotate(dict(r)) for r in host_records(records)]
        self.warnings += predictor.mix_advice(records)
        return records

    def predict(self, results, *, force=False, device_ram=None, device_threads=None):
        """A DataFrame of predicted device figures, one row per model of `results` (records, `Results`,
        a `profile --json` path or a `Store`): model, predicted_<metric>, its _low/_high 95% interval,
        the extrapolation flag, the operator-mix flag, `bounded` (a fit that would have crossed zero
        there) and `no_prediction` (why a row has none). Raises CalibrationError when no row can be
        predicted."""
        import pandas as pd

        records = self.annotate(results, force=force, device_ram=device_ram, device_threads=device_threads)
        if not any(r.get("prediction") for r in records):
            reasons = sorted({r.get("no_prediction") or f"status {r.get('status')}" for r in records})
            raise CalibrationError("no prediction for any of the " + f"{len(records)} record(s): "
                                   + ("; ".join(reasons[:3]) if reasons else "no records"))
        return pd.DataFrame([prediction_row(r) for r in records])

    def save(self, path):
        """Write the calibration JSON (atomically), as `calibrate --out` does."""
        from calibration.schema import write

        path = _path(path, "path")
        try:
            write(self.to_dict(), path)
        except OSError as exc:
            raise CalibrationError(f"{path}: cannot write the calibration ({exc.strerror or exc})") from None

    def plot(self, folder, device_name="device"):
        """Predicted-against-measured figures, one per metric (PNG + SVG); returns the PNG paths."""
        from calibration.plots import plot_all

        folder = _path(folder, "folder")
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise CalibrationError(f"{folder}: is a file, not a folder for figures")
        try:
            return plot_all(self, folder, device_name)
        except OSError as exc:
            raise CalibrationError(f"{folder}: cannot write the figures ({exc.strerror or exc})") from None


def _path(value, name):
    """A file system path from str or os.PathLike; anything else is a one-line CalibrationError."""
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
        raise CalibrationError(f"{name}: expected a file path, not {type(value).__name__}")
    return os.fspath(value)


def prediction_row(record):
    """One flat row of a record's predictions (what `Calibration.predict` and `predict_model` return)."""
    stats = record.get("latency_ms") or {}
    row = {"model": record.get("model"), "runtime": record.get("runtime"), "status": record.get("status"),
           "host_latency_ms": stats.get("median") if isinstance(stats, dict) else None,
           "host_peak_memory_mb": record.get("peak_memory_mb")}
    flags, mix = False, set()
    for metric, p in (record.get("prediction") or {}).items():
        row[f"predicted_{metric}"] = p["value"]
        row[f"predicted_{metric}_low"] = p.get("low")
        row[f"predicted_{metric}_high"] = p.get("high")
        flags |= bool(p.get("extrapolated"))
        mix |= set(p.get("outside_mix") or [])
        if "exceeds_device_ram" in p:
            row["exceeds_device_ram"] = p["exceeds_device_ram"]
    row["extrapolated"] = flags
    row["outside_mix"] = ", ".join(sorted(mix)) or None
    row["bounded"] = any(bool(p.get("bounded")) for p in (record.get("prediction") or {}).values())
    row["no_prediction"] = record.get("no_prediction")
    if record.get("status") != "ok":
        row["error"] = record.get("error")
    return row


def _ram(size):
    if isinstance(size, bool):
        raise CalibrationError(f"device_ram={size!r}: a size in MiB or a text such as 4g")
    if isinstance(size, (int, float)):
        if not (size > 0 and size == size and size != float("inf")):
            raise CalibrationError(f"device_ram={size!r}: must be a positive size in MiB")
        return size
    if size is None:
        return size
    from profiler.config import ConfigError
    from profiler.values import parse_size_mb

    try:
        return parse_size_mb("--device-ram", size)
    except ConfigError as exc:
        raise CalibrationError(str(exc)) from None


def host_records(host, store="profiles.db", runtime=None, target_name=None):
    """Host records from records/`Results`, a `Store`, a store path (.db), a `profile --json`/`--csv` path
    or None (the store at `store`)."""
    from calibration.hostdata import load_host
    from profiler.store import Store

    if isinstance(host, Store):
        records = [r for r in host.records() if not r.get("native_device")]
        return [r for r in records if not runtime or r.get("runtime") == runtime]
    if isinstance(host, (list, tuple)):
        from profiler.schema import record_problem

        bad = next((i for i, r in enumerate(host) if not isinstance(r, dict) or not isinstance(r.get("model"), str)
                    or not isinstance(r.get("latency_ms"), dict)), None)
        if bad is not None:
            raise CalibrationError(f"host: item {bad + 1} is not a profile result record (a dict with model and "
                                   "latency_ms)")
        for index, record in enumerate(host, start=1):
            problem = record_problem(dict(record, status=record.get("status", "ok")))
            if problem:
                raise CalibrationError(f"host: item {index} ({printable(record['model'])[:60]}): {problem}")
        return [r for r in host if not runtime or r.get("runtime") == runtime]
    if host is not None and (not isinstance(host, (str, os.PathLike)) or isinstance(host, bytes)):
        raise CalibrationError(f"host: expected profile results, a Store, or a results/store path, not "
                               f"{type(host).__name__}")
    if host is not None:
        host = os.fspath(host)
        if host.endswith((".db", ".sqlite", ".sqlite3")):
            return load_host(None, host, runtime, target_name=target_name)
    return load_host(host, os.fspath(store), runtime, target_name=target_name)


@dataclass(frozen=True)
class FitOptions:
    """`fit`'s keyword options, as `calibrate`'s flags name them (see `fit` and `calibrate --help`)."""

    method: str = "auto"
    store: Any = "profiles.db"
    runtime: Optional[str] = None
    metrics: Any = None
    fmt: str = "auto"  # the device logs' format
    model: Optional[str] = None  # the model a single-model log (benchmark_model, perf_test, jtop) measured
    threads: Optional[int] = None  # threads of device rows that do not say
    device_ram: Any = None
    start: Optional[str] = None  # a jtop log's window
    end: Optional[str] = None
    prior: Any = "auto"
    device_target: Optional[str] = None
    skip_unsteady: bool = False
    force: bool = False

    @classmethod
    def from_options(cls, options):
        """Checked options; an unknown one, or a value of the wrong kind, is a CalibrationError naming it."""
        from calibration.fitting import METHODS

        from profiler.values import unknown_option

        problem = unknown_option(options, cls.__dataclass_fields__, "fit")
        if problem:
            raise CalibrationError(problem)
        opts = cls(**options)
        if opts.method not in METHODS:
            raise CalibrationError(f"method {opts.method!r}: choose from {', '.join(METHODS)}")
        metrics = [opts.metrics] if isinstance(opts.metrics, str) else opts.metrics
        if metrics is not None and not (isinstance(metrics, (list, tuple)) and all(isinstance(m, str) for m in metrics)):
            raise CalibrationError(f"metrics: expected a list of metric names such as ['latency_ms'], not "
                                   f"{type(metrics).__name__}")
        if not isinstance(opts.store, (str, os.PathLike)) or isinstance(opts.store, bytes):
            raise CalibrationError(f"store: expected a store path, not {type(opts.store).__name__}")
        if opts.prior not in ("auto", "none") and not os.path.isfile(opts.prior):
            raise CalibrationError(f"--prior {opts.prior}: prior file not found")
        return replace(opts, metrics=metrics, force=bool(opts.force))


def device_rows(device, opts, device_ram_mb=None):
    """Device measurements from log paths, a DataFrame in the CSV's shape, or the store's native rows
    (opts: `FitOptions`)."""
    from calibration import importers
    from calibration.hostdata import device_rows_from_store

    if device is None and not opts.device_target:
        raise CalibrationError("give device logs, or --device-target NAME to take the device rows from the store")
    paths = [device] if isinstance(device, (str, os.PathLike)) else device
    if device is not None and not hasattr(device, "to_csv") and (
            isinstance(device, (bytes, dict)) or not isinstance(paths, (list, tuple))
            or not all(isinstance(p, (str, os.PathLike)) and not isinstance(p, bytes) for p in paths)):
        raise CalibrationError(f"device: expected a device log path, a list of them or a DataFrame, not "
                               f"{type(device).__name__}")
    rows = device_rows_from_store(os.fspath(opts.store), opts.device_target) if opts.device_target else []
    if device is not None and hasattr(device, "to_csv"):  # a DataFrame: the columns of a device CSV
        rows += importers.read_csv_text(device.to_csv(index=False), "the device DataFrame",
                                        default_threads=opts.threads)
        device = []
    for path in [device] if isinstance(device, (str, os.PathLike)) else (device or []):
        rows += importers.load(os.fspath(path), opts.fmt, model=opts.model, threads=opts.threads,
                               device_ram_mb=device_ram_mb, start=opts.start, end=opts.end)
    seen = {}
    for row in rows:
        key = (row.model.lower(), row.threads)
        if key in seen and set(seen[key].metrics) & set(row.metrics):
            raise CalibrationError(f"{row.source}: duplicate row for model {row.model!r} with {row.threads} "
                                   f"threads (also in {seen[key].source})")
        seen[key] = row
    return rows


def fit(device=None, host=None, **options):
    """Fit device ≈ f(host) per metric and thread count, as `calibrate` does; returns a `Calibration`.

    device: a device log path (CSV, harness JSON, benchmark_model, onnxruntime_perf_test, jtop), a list of
    them, or a DataFrame with a model column, threads and metric columns with unit suffixes (latency_ms).
    host: the host profiles: `profiler.profile`'s results, a `profile --json`/`--csv` path, a `Store` or a
    store path; None reads the store at `store`.
    Options (`FitOptions`): method: auto, ols, robust, loglinear, relative, features. store, runtime,
    metrics (e.g. ["latency_ms"]), fmt, model, threads, device_ram (MiB or a text such as 4g), start and
    end (a jtop log's window), prior ('auto', 'none' or a prior file), device_target (take the device
    rows from the store's `profile --on` measurements of that target). skip_unsteady: leave out
    references whose host figure is flagged unstable or disturbed (they are named in a warning either
    way). force: keep a fit on fewer than 3 references (unchecked: no leave-one-out error, no interval);
    refused without it.
    """
    from calibration.fitting import build
    from calibration.importers import DeviceLogError
    from calibration.report import warnings

    opts = FitOptions.from_options(options)
    device_ram_mb = _ram(opts.device_ram)
    try:
        rows = device_rows(device, opts, device_ram_mb)
    except DeviceLogError as exc:
        raise CalibrationError(str(exc)) from None
    hosts = [r for r in host_records(host, opts.store, opts.runtime, opts.device_target)
             if r.get("status", "ok") == "ok" and not r.get("native_device")]
    if not hosts:
        raise CalibrationError("no successful host profiles" + (f" for runtime {opts.runtime}" if opts.runtime else ""))
    data = build(rows, hosts, opts.method, opts.metrics, device_ram_mb, prior=opts.prior,
                 skip_unsteady=opts.skip_unsteady, force=opts.force)
    return Calibration(data, warnings(data))


def load(path):
    """A calibration saved by `Calibration.save` or `calibrate --out`."""
    from calibration.schema import read

    return Calibration(read(_path(path, "path")))


def predict_model(path, cal, target=None, *, store="profiles.db", force=False, remeasure=False, session=None):
    """Profile one model (from the store when it holds it for this target) and predict its device
    figures: the row `Calibration.predict` would give, as a dict.

    cal: a `Calibration` or its JSON path; target: a `profiler.Target` or an env file path. For search
    loops, give a `profiler.Profiler` session instead of target and store: its backend and store stay
    open between calls, so a model already measured costs a hash and a lookup.
    """
    from profiler.api import Profiler, ProfileError

    if isinstance(cal, (str, os.PathLike)):
        cal = load(cal)
    if not isinstance(cal, Calibration):
        raise CalibrationError(f"cal: expected a calibration.Calibration or its JSON path, not {type(cal).__name__}")
    if session is None:
        with Profiler(target, store=store) as own:
            return predict_model(path, cal, force=force, remeasure=remeasure, session=own)
    if not isinstance(session, Profiler):
        raise CalibrationError(f"session: expected a profiler.Profiler, not {type(session).__name__}")
    if target is not None:
        raise ProfileError("target: a session's target is given when the Profiler is made; give one or the other")
    results = session.profile(path, calibration=cal, force=force, remeasure=remeasure)
    return prediction_row(results[0])
