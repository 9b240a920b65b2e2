"""Device logs -> DeviceMeasurement rows: model, threads and metric columns in ms / MiB.

Formats: generic CSV (unit from the header suffix), the project's own harness JSON/CSV,
LiteRT/TFLite benchmark_model logs (recent, legacy, logcat), onnxruntime_perf_test
output and jetson-stats (jtop) logger CSV.
"""

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field

from profiler.harness.memory import MIB
from profiler.harness.record import CSV_SECONDARY


class DeviceLogError(Exception):
    """Bad device input; the message names the file and the line or column."""


@dataclass
class DeviceMeasurement:
    model: str
    threads: int
    metrics: dict = field(default_factory=dict)  # e.g. latency_ms, peak_memory_mb, energy_mj
    source: str = ""
    sha256: str = None
    runtime: str = None  # the format the device ran (tflite, onnx, torch), where the log says
    accelerator: str = None  # what ran it when not the CPU (e.g. "gpu (TensorRT)"), where the log says


def runtime_name(text):
    """'tflite-2.10', 'LiteRT', 'onnxruntime 1.20', 'pytorch-mobile' -> tflite / onnx / torch; None if unknown."""
    text = str(text or "").strip().lower()
    for prefix, runtime in (("tflite", "tflite"), ("litert", "tflite"), ("tensorflow lite", "tflite"),
                            ("onnx", "onnx"), ("torch", "torch"), ("pytorch", "torch"), ("openvino", "openvino")):
        if text.startswith(prefix):
            return runtime
    return None


# Header suffix -> (canonical suffix, factor to it)
UNITS = {"us": ("ms", 1e-3), "ms": ("ms", 1.0), "s": ("ms", 1e3),
         "kb": ("mb", 1 / 1024), "mb": ("mb", 1.0), "mib": ("mb", 1.0), "bytes": ("mb", 1 / MIB),
         "mj": ("mj", 1.0), "j": ("mj", 1e3), "mw": ("mw", 1.0), "w": ("mw", 1e3)}
IDENTITY = {"model", "threads", "status", "runtime", "runtime_version", "sha256", "error", "path", "device"}


MODEL_EXTENSIONS = {".onnx", ".tflite", ".pt", ".pth", ".pt2", ".ort", ".mlmodel", ".engine", ".trt"}


def _stem(name):
    """File stem of a model path; 'mobilenet_v2_0.25' keeps its dot (only model extensions go)."""
    base = os.path.basename(str(name).strip())
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in MODEL_EXTENSIONS else base


def _number(text, where, positive=False):
    try:
        value = float(str(text).strip())
    except ValueError:
        raise DeviceLogError(f"{where}: {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise DeviceLogError(f"{where}: {text!r} is not a finite number")
    if positive and value <= 0:
        raise DeviceLogError(f"{where}: {text!r} must be greater than 0")
    return value


def _threads(text, where):
    value = _number(text, where)
    if value < 1 or value != int(value):
        raise DeviceLogError(f"{where}: {text!r} is not a thread count (a whole number, at least 1)")
    return int(value)


def _canonical(column, where):
    """'latency_us' -> ('latency_ms', 1e-3); raises on an unknown unit suffix."""
    base, _, suffix = column.strip().lower().rpartition("_")
    if not base:
        raise DeviceLogError(f"{where}: column {column!r} has no unit suffix (e.g. _ms, _mb)")
    if suffix not in UNITS:
        known = ", ".join("_" + u for u in UNITS)
        raise DeviceLogError(f"{where}: column {column!r} has unknown unit suffix _{suffix} (known: {known})")
    unit, factor = UNITS[suffix]
    return f"{base}_{unit}", factor


def read_csv(path, default_threads=None):
    """Generic CSV, and the harness's --csv output (same columns)."""
    return read_csv_text(_read(path), path, default_threads)


def read_csv_text(text, path, default_threads=None):
    """Rows of a device CSV given as text; path names it in messages."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise DeviceLogError(f"{path}: empty file")
    columns = [c.strip() for c in reader.fieldnames]
    if "model" not in columns:
        raise DeviceLogError(f"{path}: missing column 'model' (header: {', '.join(columns)})")
    if "threads" not in columns and default_threads is None:
        raise DeviceLogError(f"{path}: missing column 'threads' (or give --threads)")
    metric_columns = {}
    for column in columns:
        if column in IDENTITY or column in CSV_SECONDARY:
            continue
        metric_columns[column] = _canonical(column, f"{path}: header")
    rows, seen = [], {}
    try:
        records = list(reader)
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
        raise DeviceLogError(f"{path}:{reader.line_num}: not readable as CSV ({exc})") from None
    for line_no, raw in enumerate(records, start=2):
        where = f"{path}:{line_no}"
        if None in raw or None in raw.values():  # more or fewer fields than the header names
            raise DeviceLogError(f"{where}: the row does not have the header's {len(columns)} fields "
                                 "(a decimal comma, or a stray separator?)")
        row = {k.strip(): (v or "").strip() for k, v in raw.items()}
        if row.get("status") and row["status"] != "ok":
            continue
        threads = _threads(row.get("threads") or default_threads, f"{where}: column 'threads'")
        model = _stem(row["model"])
        if not model:
            raise DeviceLogError(f"{where}: empty model name")
        metrics = {}
        for column, (name, factor) in metric_columns.items():
            if row.get(column, "") == "":
                continue
            metrics[name] = _number(row[column], f"{where}: column {column!r}", positive=True) * factor
        key = (model.lower(), threads)
        if key in seen:
            raise DeviceLogError(f"{where}: duplicate row for model {model!r} with {threads} threads "
                               f"(first on line {seen[key]})")
        seen[key] = line_no
        rows.append(DeviceMeasurement(model, threads, metrics, source=path, sha256=row.get("sha256") or None,
                                      runtime=runtime_name(row.get("runtime"))))
    if not rows:
        raise DeviceLogError(f"{path}: no data rows")
    return rows


def read_harness_json(path):
    """`python -m profiler.harness --json` output, or its JSON lines on stdout."""
    text = _read(path).strip()
    try:
        records = json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    except json.JSONDecodeError as exc:
        raise DeviceLogError(f"{path}:{exc.lineno}: not harness JSON ({exc.msg})") from None
    if not isinstance(records, list):
        records = [records]
    return harness_rows(records, path)


def harness_rows(records, path):
    """Device rows from harness records: a JSON log, or the store's native device measurements."""
    rows, seen = [], set()
    for index, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DeviceLogError(f"{path}: record {index} is not a harness record (a JSON object)")
        if record.get("status") != "ok":
            continue
        where = f"{path}: record {index}"
        try:
            name, median = str(record["model"]), record["latency_ms"]["median"]
        except (KeyError, TypeError):
            raise DeviceLogError(f"{where}: lacks model or latency_ms.median") from None
        threads = _threads(record.get("threads"), f"{where}: threads")
        median = _number(median, f"{where}: latency_ms.median", positive=True)
        record = dict(record, model=name, threads=threads)
        key = (record["model"].lower(), int(record["threads"]))
        if key in seen:
            raise DeviceLogError(f"{path}: record {index}: duplicate model {record['model']!r} with "
                               f"{record['threads']} threads")
        seen.add(key)
        metrics = {"latency_ms": median}
        if record.get("peak_memory_mb") is not None:
            metrics["peak_memory_mb"] = _number(record["peak_memory_mb"], f"{where}: peak_memory_mb", positive=True)
        energy = (record.get("telemetry") or {}).get("energy") if isinstance(record.get("telemetry"), dict) else None
        if isinstance(energy, dict) and energy.get("energy_mj_per_inference") is not None:
            # measured on the device by its own sensor (PMIC, INA3221 rails, RAPL): energy fits from native runs
            metrics["energy_mj"] = _number(energy["energy_mj_per_inference"], f"{where}: telemetry energy",
                                           positive=True)
        rows.append(DeviceMeasurement(record["model"], threads, metrics, source=path, sha256=record.get("sha256"),
                                      runtime=runtime_name(record.get("runtime"))))
    if not rows:
        raise DeviceLogError(f"{path}: no successful harness records")
    return rows


_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_LOGCAT = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*:\s?")


def read_benchmark_model(path, model=None, threads=None):
    lines = [_LOGCAT.sub("", line).replace("INFO: ", "", 1).strip() for line in _read(path).splitlines()]
    graph = next((re.search(r"Graph: \[(.*)\]", l).group(1) for l in lines if l.startswith("Graph:")), None)
    found_threads = next((int(re.search(r"\[(\d+)\]", l).group(1)) for l in lines if l.startswith("Num threads:")), None)
    counts = [l for l in lines if l.startswith("count=")]
    if not counts:
        raise DeviceLogError(f"{path}: not a benchmark_model log (no 'count=' timing line)")
    timed = dict(re.findall(r"(\w+)=" + _NUM, counts[-1]))  # the last count= line is the timed runs
    if "median" not in timed and "avg" not in timed:
        raise DeviceLogError(f"{path}: the timing line has no avg= or median= (is the log cut short?): "
                             f"{counts[-1][:80]!r}")
    latency_us = _number(timed.get("median", timed.get("avg")), f"{path}: timing line", positive=True)
    metrics = {"latency_ms": latency_us / 1000.0}
    peak = next((re.search(_NUM + r"\s*$", l) for l in lines if l.startswith("Overall peak memory footprint")), None)
    overall = next((re.search(r"overall=" + _NUM, l) for l in lines if "Memory footprint delta" in l), None)
    if peak:
        metrics["peak_memory_mb"] = float(peak.group(1))
    elif overall:
        metrics["peak_memory_mb"] = float(overall.group(1))
    name = model or (graph and _stem(graph))
    if not name:
        raise DeviceLogError(f"{path}: no 'Graph:' line; give the model name with --model")
    if threads is None and found_threads is None:
        raise DeviceLogError(f"{path}: no 'Num threads:' line; give --threads")
    return [DeviceMeasurement(name, threads or found_threads, metrics, source=path, runtime="tflite")]


def read_ort_perf_test(path, model=None, threads=None):
    text = _read(path)
    fields = dict(re.findall(r"^\s*([A-Za-z0-9 ]+?):\s*" + _NUM, text, re.MULTILINE))
    if "P50 Latency" not in fields and "Average inference time cost" not in fields:
        raise DeviceLogError(f"{path}: not onnxruntime_perf_test output (no 'P50 Latency' line)")
    latency_ms = float(fields["P50 Latency"]) * 1000 if "P50 Latency" in fields \
        else float(fields["Average inference time cost"])
    metrics = {"latency_ms": latency_ms}
    if "Peak working set size" in fields:
        metrics["peak_memory_mb"] = float(fields["Peak working set size"]) / MIB
    if not model:
        raise DeviceLogError(f"{path}: onnxruntime_perf_test output names no model; give --model")
    if threads is None:
        raise DeviceLogError(f"{path}: onnxruntime_perf_test output gives no thread count; give --threads")
    return [DeviceMeasurement(model, threads, metrics, source=path, runtime="onnx")]


def read_benchmark_app(path, model=None, threads=None):
    """OpenVINO's benchmark_app report: the median latency (µs or ms), the compile time as load_ms,
    the process's peak memory at the end of compilation, and the thread count it ran with
    (INFERENCE_NUM_THREADS). It names no model file: --model does, else the log's file name."""
    text = _read(path)
    median = re.search(r"^\[ INFO \]\s+Median:\s+" + _NUM + r"\s*(us|ms|s)\b", text, re.MULTILINE)
    if not median:
        raise DeviceLogError(f"{path}: not benchmark_app output (no 'Median:' latency line)")
    factor = {"us": 1e-3, "ms": 1.0, "s": 1e3}[median.group(2)]
    metrics = {"latency_ms": float(median.group(1)) * factor}
    compiled = re.search(r"Compile model took\s+" + _NUM + r"\s*ms", text)
    if compiled:
        metrics["load_ms"] = float(compiled.group(1))
    peak = re.search(r"End of compilation memory usage: Peak\s+" + _NUM + r"\s*KB", text)
    if peak:
        metrics["peak_memory_mb"] = float(peak.group(1)) / 1024
    found = re.search(r"INFERENCE_NUM_THREADS:\s*(\d+)", text)
    threads = threads if threads is not None else (int(found.group(1)) if found and int(found.group(1)) > 0 else None)
    # benchmark_app names no model file: --model, else the log's own name (resnet18.txt: resnet18)
    model = model or os.path.splitext(os.path.basename(path))[0]
    if threads is None:
        raise DeviceLogError(f"{path}: benchmark_app output gives no thread count (run it with -nthreads N, "
                             "or give --threads)")
    return [DeviceMeasurement(model, threads, metrics, source=path, runtime="openvino")]


def read_trtexec(path, model=None, threads=None):
    """TensorRT's trtexec performance summary: the end-to-end latency median (host to device, compute,
    device to host) as latency_ms and the GPU compute time median as gpu_compute_ms; the model from
    its "Model:" option line, else --model, else the log's file name. A GPU row: `calibrate` says so
    when it maps CPU host profiles to it."""
    text = _read(path)

    def median(label):
        found = re.search(r"\]\s*" + label + r":\s*min = [^\n]*?median = " + _NUM + r"\s*ms", text)
        return float(found.group(1)) if found else None

    latency, compute = median("Latency"), median("GPU Compute Time")
    if latency is None:
        raise DeviceLogError(f"{path}: not trtexec output (no 'Latency: … median = … ms' line of its performance "
                             "summary)")
    metrics = {"latency_ms": latency}
    if compute is not None:
        metrics["gpu_compute_ms"] = compute
    named = re.search(r"\]\s*(?:Model|ONNX|Loading engine|Engine):\s*(\S+)", text)
    model = model or (os.path.splitext(os.path.basename(named.group(1)))[0] if named else
                      os.path.splitext(os.path.basename(path))[0])
    return [DeviceMeasurement(model, threads or 1, metrics, source=path, runtime="tensorrt",
                              accelerator="gpu (TensorRT)")]


def read_jtop(path, model=None, threads=None, device_ram_mb=None, start=None, end=None):
    reader = csv.DictReader(io.StringIO(_read(path)))
    if not reader.fieldnames or "RAM" not in reader.fieldnames:
        raise DeviceLogError(f"{path}: not a jetson-stats log (no 'RAM' column)")
    if not device_ram_mb:
        raise DeviceLogError(f"{path}: jtop RAM is a fraction; give the board's total with --device-ram (e.g. 4g)")
    if not model or threads is None:
        raise DeviceLogError(f"{path}: a jtop log names no model; give --model and --threads")
    power_column = next((c for c in reader.fieldnames if c.strip().lower() in ("power cur", "power tot")), None)
    ram, power = [], []
    for line_no, row in enumerate(reader, start=2):
        stamp = row.get("time", "")
        if (start and stamp < start) or (end and stamp > end):
            continue
        ram.append(_number(row["RAM"], f"{path}:{line_no}: column 'RAM'") * device_ram_mb)
        if power_column and row.get(power_column) not in (None, "", "OFF"):
            power.append(_number(row[power_column], f"{path}:{line_no}: column {power_column!r}"))
    if not ram:
        raise DeviceLogError(f"{path}: no rows in the time window")
    metrics = {"peak_memory_mb": max(ram), "mean_memory_mb": sum(ram) / len(ram)}
    if power:
        metrics["power_mw"] = sum(power) / len(power)
    return [DeviceMeasurement(model, threads, metrics, source=path)]


def _read(path):
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO or device would block, a folder fail
        raise DeviceLogError(f"{path}: not a regular file (a device log is a file)")
    try:
        with open(path, encoding="utf-8-sig") as f:  # a spreadsheet's CSV may start with a BOM
            text = f.read()
    except FileNotFoundError:
        raise DeviceLogError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceLogError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not text.strip():
        raise DeviceLogError(f"{path}: empty file")
    return text


def detect(path):
    """Pick the importer from the content, not only the extension."""
    text = _read(path)
    head = text[:4096]
    if head.lstrip().startswith("[Step ") and ("OpenVINO" in head or "Parsing and validating input" in head):
        return "benchmark_app"
    if "&&&& RUNNING TensorRT" in head or ("=== Performance summary ===" in text and "GPU Compute Time" in text):
        return "trtexec"
    if head.lstrip().startswith(("[", "{")):
        return "harness"
    if "count=" in head and ("Graph:" in head or "Num threads" in head or "Inference timings" in head):
        return "benchmark_model"
    if "Session creation time cost" in head or "P50 Latency" in head:
        return "ort_perf_test"
    first = head.splitlines()[0]
    if "RAM" in first.split(",") and "time" in first.split(","):
        return "jtop"
    if "," in first and ("model" in [c.strip() for c in first.split(",")] or path.lower().endswith(".csv")):
        return "csv"  # the CSV importer names a missing column
    raise DeviceLogError(f"{path}: not a recognised device log (CSV with a 'model' column, harness JSON, "
                       f"benchmark_model, onnxruntime_perf_test or jtop)")


FORMATS = ("auto", "csv", "harness", "benchmark_model", "ort_perf_test", "benchmark_app", "trtexec", "jtop")


def load(path, fmt="auto", model=None, threads=None, device_ram_mb=None, start=None, end=None):
    fmt = detect(path) if fmt == "auto" else fmt
    if (start or end) and fmt != "jtop":
        raise DeviceLogError(f"{path}: --start/--end select a run in a jtop log; this is a {fmt} file")
    if fmt == "csv":
        return read_csv(path, default_threads=threads)
    if fmt == "harness":
        return read_harness_json(path)
    if fmt == "benchmark_model":
        return read_benchmark_model(path, model, threads)
    if fmt == "ort_perf_test":
        return read_ort_perf_test(path, model, threads)
    if fmt == "benchmark_app":
        return read_benchmark_app(path, model, threads)
    if fmt == "trtexec":
        return read_trtexec(path, model, threads)
    if fmt == "jtop":
        return read_jtop(path, model, threads, device_ram_mb, start, end)
    raise DeviceLogError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
