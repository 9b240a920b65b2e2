"""Accuracy on the user's own data, with the runtime the device uses, after the timed runs.

Runs inside the sandbox (and on a device), so it needs only numpy. The data file is an .npz with
`x_data` (one sample per row, no batch dimension) and optionally `y_data`, as the single-board-
computer benchmarks use; a model with several inputs takes one array per input name instead of
`x_data`. Each sample runs alone (batch 1), as it would on the device.
"""

import hashlib
import os
import zipfile
from typing import Any, NamedTuple

from profiler.harness.files import printable, sha256_of
from profiler.harness.runtimes import ModelError, as_nhwc

TASKS = ("auto", "classification", "regression")


def array_bytes(path):
    """{array name: bytes it takes in memory} from the .npz's headers alone, without reading the data:
    the larger of the array header's size and the member's declared uncompressed size, so that a
    member that inflates past its header counts as what it would take. A member that is not a .npy
    array is a ModelError (np.load would hand it over as raw bytes)."""
    import numpy as np

    sizes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                raise ModelError(f"--data {os.path.basename(path)}: member {printable(info.filename)[:60]!r} is not "
                                 f"a .npy array ({_gib(info.file_size)} uncompressed); an .npz holds arrays only")
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else
                                   np.lib.format.read_array_header_2_0(f))
            sizes[info.filename[:-4]] = max(int(np.prod(shape, dtype=np.float64) * dtype.itemsize), info.file_size)
    return sizes


def available_bytes(limit=None):
    """What the evaluation may hold: the sandbox's memory cap when there is one, else the host's
    available memory (MemAvailable)."""
    if limit:
        return limit
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def short(text, limit):
    """text cut at a word boundary to at most `limit` characters, with an ellipsis when cut."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else text[:limit - 1]) + "…"


def _gib(n):
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.0f} MiB"


def load_data(path, specs, limit=None):
    """({input name: array of samples}, labels or None) from the .npz; ModelError names what is wrong.
    Arrays that would not fit in `limit` bytes (the memory cap, else what the host has free) are
    refused from their headers, before any is read."""
    import numpy as np

    name = os.path.basename(path)
    try:
        sizes = array_bytes(path)
    except ModelError:
        raise
    except Exception:  # not a zip of .npy files: np.load below names what it is
        sizes = {}
    room = available_bytes(limit)
    if sizes and room and sum(sizes.values()) > room / 2:
        largest = max(sizes, key=sizes.get)
        raise ModelError(f"--data {name}: the arrays take {_gib(sum(sizes.values()))} in memory ({largest}: "
                         f"{_gib(sizes[largest])}), more than half the {_gib(room)} "
                         f"{'memory cap' if limit else 'this host has free'}; evaluate on fewer samples")
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise ValueError("a single array, not an .npz archive")
        names = set(data.files)
        wanted = ["x_data"] if len(specs) == 1 and "x_data" in names else [s.name for s in specs if s.name in names]
        arrays = {key: data[key] for key in wanted + (["y_data"] if "y_data" in names else [])}  # only what is used
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"--data {name}: not a readable .npz file ({short(str(exc).splitlines()[0], 120)})") \
            from None
    if len(specs) == 1 and "x_data" in arrays:
        inputs = {specs[0].name: arrays["x_data"]}
    else:
        missing = [s.name for s in specs if s.name not in arrays]
        if missing:
            wanted = "x_data" if len(specs) == 1 else "one array per input name"
            raise ModelError(f"--data {name}: needs {wanted} (the model's input is {missing[0]!r}; the file has "
                             f"{', '.join(sorted(names)) or 'no arrays'})")
        inputs = {s.name: arrays[s.name] for s in specs}
    labels = arrays.get("y_data")
    named = ([("x_data", a) for a in inputs.values()] if "x_data" in arrays else list(inputs.items()))
    for key, array in named + ([("y_data", labels)] if labels is not None else []):
        if array.ndim == 0 or len(array) == 0:
            raise ModelError(f"--data {name}: {key} holds no samples (shape {list(array.shape)})")
    counts = {len(a) for a in inputs.values()} | ({len(labels)} if labels is not None else set())
    if len(counts) != 1:
        raise ModelError(f"--data {name}: the arrays hold different numbers of samples ({sorted(counts)})")
    for key, array in list(inputs.items()) + ([("y_data", labels)] if labels is not None else []):
        if array.dtype.kind not in "fiub":
            raise ModelError(f"--data {name}: {key} has dtype {array.dtype}, not numbers")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ModelError(f"--data {name}: {key} holds NaN or infinite values")
    return inputs, labels


def _as_fed(inputs, specs, shapes, keep_float):
    """The input arrays checked against the model's sample shape and in the dtype it takes, once for
    all samples (sample i is then a view, [i:i + 1])."""
    import numpy as np

    fed = {}
    for spec in specs:
        array = inputs[spec.name]
        wanted = tuple(shapes[spec.name])
        array = as_nhwc(array, wanted[1:])
        if (1,) + tuple(array.shape[1:]) != wanted:
            raise ModelError(f"--data: a sample of {spec.name!r} has shape {list(array.shape[1:])}, the model takes "
                             f"{list(wanted[1:])} (one sample per row, no batch dimension)")
        dtype = np.dtype(spec.dtype)
        keep = keep_float and dtype.kind in "iu" and array.dtype.kind == "f"  # the adapter quantizes it
        fed[spec.name] = array if keep or array.dtype == dtype else array.astype(dtype)
    return fed


def classification_metrics(scores, labels):
    """top-1, top-5 (with five classes or more), and macro precision, recall and F1 over the classes
    seen in the labels or the predictions (as scikit-learn's default does)."""
    import numpy as np

    predicted = scores.argmax(axis=1)
    metrics = {"top1": float(np.mean(predicted == labels))}
    if scores.shape[1] >= 5:
        top5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        metrics["top5"] = float(np.mean((top5 == labels[:, None]).any(axis=1)))
    precision, recall, f1 = [], [], []
    for cls in np.union1d(labels, predicted):
        tp = float(np.sum((predicted == cls) & (labels == cls)))
        fp = float(np.sum((predicted == cls) & (labels != cls)))
        fn = float(np.sum((predicted != cls) & (labels == cls)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    metrics.update(precision=float(np.mean(precision)), recall=float(np.mean(recall)), f1=float(np.mean(f1)))
    return metrics


def regression_metrics(predicted, targets):
    import numpy as np

    error = predicted - targets
    nonzero = targets != 0
    metrics = {"mae": float(np.mean(np.abs(error))), "mse": float(np.mean(error ** 2))}
    metrics["rmse"] = float(np.sqrt(metrics["mse"]))
    metrics["mape"] = float(100 * np.mean(np.abs(error[nonzero] / targets[nonzero]))) if nonzero.any() else None
    return metrics


OUTPUTS_KEPT = 250_000  # output values carried back for the agreement with a reference (1 MB as float32)


def pack_outputs(predicted):
    """The first output of every sample, to compare with a reference model's on the same data: float32
    when it is small enough, else only each sample's top class."""
    import base64

    import numpy as np

    if predicted.size <= OUTPUTS_KEPT:
        values, kind = predicted.astype(np.float32), "values"
    else:
        values, kind = predicted.argmax(axis=1).astype(np.int32), "top1"
    return {"kind": kind, "shape": list(values.shape), "b64": base64.b64encode(values.tobytes()).decode("ascii")}


def unpack_outputs(packed):
    """(kind, array) from pack_outputs, or None for anything else."""
    import base64

    import numpy as np

    try:
        dtype = {"values": np.float32, "top1": np.int32}[packed["kind"]]
        array = np.frombuffer(base64.b64decode(packed["b64"]), dtype=dtype).reshape(packed["shape"])
    except (KeyError, TypeError, ValueError):
        return None
    return packed["kind"], array


def agreement(reference, outputs, name):
    """How closely a model's outputs follow a reference's on the same samples (e.g. an int8 variant and
    its fp32 original): the share with the same top class, and the max and mean absolute difference of
    the outputs (when both kept their values). None when the two cannot be compared."""
    import numpy as np

    (ref_kind, ref), (kind, out) = reference, outputs
    if len(ref) != len(out):
        return None
    ref_top = ref if ref_kind == "top1" else ref.argmax(axis=1) if ref.ndim == 2 and ref.shape[1] > 1 else None
    top = out if kind == "top1" else out.argmax(axis=1) if out.ndim == 2 and out.shape[1] > 1 else None
    result = {"with": name, "n": int(len(out))}
    if ref_top is not None and top is not None:
        result["top1"] = float(np.mean(ref_top == top))
    if ref_kind == kind == "values" and ref.shape == out.shape:
        diff = np.abs(out.astype(np.float64) - ref)
        result.update(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()))
    return result if len(result) > 2 else None


class Loaded(NamedTuple):
    """A model loaded by a runtime adapter: what evaluation runs it with."""

    rt: Any  # the runtime adapter
    session: Any
    specs: Any  # its inputs' names, shapes and types
    shapes: Any  # the input shapes it ran with
    runtime: str


def evaluate(model, path, task="auto", limit=None, sha256=None):
    """The record's `accuracy` object for a `Loaded` model: task, metrics, number of samples, the data
    file's sha256 (as given, else hashed here). limit: the sandbox's memory cap in bytes, if any."""
    import numpy as np

    rt, session, specs, shapes, runtime = model

    inputs, labels = load_data(path, specs, limit)
    n = len(next(iter(inputs.values())))
    fed = _as_fed(inputs, specs, shapes, keep_float=runtime == "tflite")
    rows = []
    for i in range(n):
        out = rt.outputs(session, {name: array[i:i + 1] for name, array in fed.items()})
        rows.append(np.asarray(out[0], dtype=np.float64).reshape(-1))
    predicted = np.stack(rows)
    result = {"n": n, "data": os.path.basename(path), "data_sha256": sha256 or sha256_of(path),
              "output_shape": list(predicted.shape[1:]), "outputs": pack_outputs(predicted)}
    if labels is None:
        result.update(task="outputs", metrics={"top1_classes": np.bincount(predicted.argmax(axis=1)).tolist()
                                               if predicted.shape[1] > 1 else None,
                                               "output_mean": float(predicted.mean())})
        result["outputs_sha256"] = hashlib.sha256(predicted.astype(np.float32).tobytes()).hexdigest()
        return result
    if task == "auto":
        task = "classification" if labels.dtype.kind in "iu" and predicted.shape[1] > 1 else "regression"
    if task == "classification":
        labels = labels.reshape(-1)
        if labels.dtype.kind not in "iu" and not np.all(labels == np.round(labels)):
            raise ModelError("--data: classification needs whole-number class labels in y_data")
        low, high = labels.min(), labels.max()  # before any cast: a uint64 label would wrap
        if low < 0 or high >= predicted.shape[1]:
            raise ModelError(f"--data: a label of y_data ({low}…{high}) is outside the model's {predicted.shape[1]} "
                             "classes")
        labels = labels.astype(np.int64)
        result["metrics"] = classification_metrics(predicted, labels)
    else:
        targets = labels.reshape(n, -1).astype(np.float64)
        if targets.shape[1] != predicted.shape[1]:
            raise ModelError(f"--data: y_data has {targets.shape[1]} value(s) per sample, the model outputs "
                             f"{predicted.shape[1]}")
        result["metrics"] = regression_metrics(predicted, targets)
    result["task"] = task
    return result
