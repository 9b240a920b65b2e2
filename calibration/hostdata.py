"""Host results and device rows side by side: read the host profiles (a `profile --json`/`--csv`
export or the results store), the device's own measurements from the store, and pair them."""

import json
import os

import numpy as np

from calibration.errors import CalibrationError

MAX_HOST_VALUE = 1e9  # ms or MiB: eleven days, a petabyte; beyond it a fit overflows to infinity


def host_value(record, metric):
    """The host figure a device metric is fitted against: same metric where the host has it,
    else the host's median latency (energy and power scale with time on the device)."""
    if metric in ("peak_memory_mb", "mean_memory_mb"):
        return record.get("peak_memory_mb"), "peak_memory_mb"
    if metric in ("load_ms",) and record.get("load_ms") is not None:
        return record["load_ms"], "load_ms"
    stats = record.get("latency_ms") or {}
    return stats.get("median"), "latency_ms"


def _store_records(store):
    from profiler.store import Store, StoreError

    if not os.path.isfile(store):
        raise CalibrationError(f"{store}: no results store here; run `profile` first or give --host")
    try:
        return Store(store).records()
    except StoreError as exc:
        raise CalibrationError(str(exc)) from None


def device_rows_from_store(store, target_name):
    """The native device measurements (`profile --on HOST`) of one target, as device rows."""
    from calibration.importers import harness_rows

    records = [r for r in _store_records(store)
               if r.get("native_device") and (r.get("target") or {}).get("name") == target_name]
    if not records:
        names = sorted({(r.get("target") or {}).get("name") for r in _store_records(store) if r.get("native_device")})
        raise CalibrationError(f"{store}: no device measurements for target {target_name!r} "
                               + (f"(device targets here: {', '.join(map(str, names))})" if names
                                  else "(measure some with `profile --on HOST`)"))
    return harness_rows(records, f"{store} (device {target_name})")


def load_host(path=None, store=None, runtime=None, target_name=None):
    """Host records (status ok) from a `profile --json`/`--csv` export or the SQLite store (never the
    device's own measurements); with target_name, that target's records when the store has any."""
    if path:
        if os.path.exists(path) and not os.path.isfile(path):
            raise CalibrationError(f"{path}: not a regular file (host results are a `profile --json`/`--csv` file)")
        if not os.path.isfile(path):
            raise CalibrationError(f"{path}: host results file not found")
        if path.endswith(".csv"):
            records = _host_csv(path)
        else:
            try:
                with open(path, encoding="utf-8") as f:
                    records = [r for r in json.load(f) if r.get("status") == "ok"]
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as exc:
                raise CalibrationError(f"{path}: not a `profile --json` export ({str(exc)[:120]})") from None
            from profiler.escape import printable_text
            from profiler.schema import record_problem

            for index, record in enumerate(records, start=1):
                median = (record.get("latency_ms") or {}).get("median") if isinstance(record.get("latency_ms"), dict) \
                    else None
                if not isinstance(record.get("model"), str) or not isinstance(median, (int, float)) \
                        or isinstance(median, bool) or not 0 < median <= MAX_HOST_VALUE:
                    raise CalibrationError(f"{path}: record {index} ({printable_text(record.get('model'))[:60]}) is "
                                           f"not a profile result (needs model and a latency_ms.median above 0 and at "
                                           f"most {MAX_HOST_VALUE:g})")
                problem = record_problem(record)
                if problem:
                    raise CalibrationError(f"{path}: record {index} ({printable_text(record['model'])[:60]}): {problem}")
    else:
        records = [r for r in _store_records(store) if not r.get("native_device")]
        named = [r for r in records if (r.get("target") or {}).get("name") == target_name]
        records = named or records
    if runtime:
        records = [r for r in records if r.get("runtime") == runtime]
    if not records:
        raise CalibrationError(f"{path or store}: no successful host profiles" + (f" for runtime {runtime}" if runtime else ""))
    return records


def _host_csv(path):
    """Host rows of a `profile --csv` export (status ok only); messages name the file's line."""
    import pandas as pd

    from profiler.escape import from_csv_cell

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CalibrationError(f"{path}: not UTF-8 text, so not a `profile --csv` export") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CalibrationError(f"{path}: not readable as CSV ({str(exc).strip().splitlines()[0]})") from None

    def number(row, column, line):
        text = row.get(column, "")
        if text == "":
            return None
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or value <= 0 or value > MAX_HOST_VALUE:
            raise CalibrationError(f"{path}:{line}: column {column!r}: {text!r} is not a positive number "
                                   f"of at most {MAX_HOST_VALUE:g}")
        return value

    records = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        if row.get("status") != "ok":
            continue
        if not row.get("model") or number(row, "latency_median_ms", line) is None:
            raise CalibrationError(f"{path}:{line}: needs model and latency_median_ms")
        threads = number(row, "threads", line)
        if threads is None or threads != int(threads):
            raise CalibrationError(f"{path}:{line}: column 'threads': {row.get('threads')!r} is not a whole number")
        records.append({"model": from_csv_cell(row["model"]), "sha256": row.get("sha256") or None,
                        "runtime": row.get("runtime"), "flags": row.get("flags", "").split(),
                        "threads": int(threads), "started_at": row.get("started_at"),
                        "latency_ms": {"median": number(row, "latency_median_ms", line)},
                        "peak_memory_mb": number(row, "peak_memory_mb", line),
                        "load_ms": number(row, "load_ms", line)})
    return records


def record_threads(record):
    return int(record.get("threads") or (record.get("target") or {}).get("threads") or 1)


def match(device_rows, host_records):
    """Pair each device row with a host record: sha256 first, else file stem (case-insensitive), and
    threads. A device row with no host profile at its thread count is paired with the same model's
    host profile at another count (the nearest below it, else the nearest above): a laptop cannot
    always give a device's threads, and the fit then maps the host's count to the device's."""
    by_sha, by_name = {}, {}
    for record in sorted(host_records, key=lambda r: r.get("started_at") or ""):  # latest wins
        threads = record_threads(record)
        if record.get("sha256"):
            by_sha[(record["sha256"], threads)] = record
        by_name[(record["model"].lower(), threads)] = record
    pairs, unmatched = [], []
    for row in device_rows:
        record = (row.sha256 and by_sha.get((row.sha256, row.threads))) or by_name.get((row.model.lower(), row.threads))
        if not record:
            others = [(t, r) for (sha, t), r in by_sha.items() if row.sha256 and sha == row.sha256] or \
                     [(t, r) for (name, t), r in by_name.items() if name == row.model.lower()]
            if others:
                record = min(others, key=lambda item: (item[0] > row.threads, abs(item[0] - row.threads)))[1]
        if record:
            pairs.append((row, record))
        else:
            unmatched.append(row)
    return pairs, unmatched
