"""Setting values as the env file, the options and the API give them: sizes, numbers, core lists,
Docker's cap flags and evaluation arrays, checked against their limits (a ConfigError of one line)."""

import math
import os
import re
import shlex

from profiler.errors import ConfigError
from profiler.harness.memory import MIB


def unknown_option(options, fields, call):
    """The one-line complaint about the first keyword of `options` that is not among a dataclass's
    `fields` (`call` names the function they were given to), or None when every one is known."""
    known = set(fields)
    unknown = sorted(set(options) - known)
    if unknown:
        return f"{unknown[0]}: not an option of {call} (options: {', '.join(sorted(known))})"
    return None


def data_file(data):
    """The .npz path for data given as arrays: x_data, (x_data, y_data), or a dict of arrays (x_data
    and y_data, or one array per input name), written to ~/.cache/edge-profiler/data/ under the sha256
    of its content, so the same arrays are one file and one store key."""
    import hashlib
    import io

    import numpy as np

    if isinstance(data, dict):
        arrays = dict(data)
    elif isinstance(data, tuple) and len(data) == 2:
        arrays = {"x_data": data[0], "y_data": data[1]}
    elif hasattr(data, "shape") and hasattr(data, "dtype"):
        arrays = {"x_data": data}
    else:
        raise ConfigError(f"data: an .npz path, an array of samples, (x_data, y_data) or a dict of arrays, "
                          f"not {type(data).__name__}")
    try:
        arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data: not arrays ({exc})") from None
    if any(a.dtype == object for a in arrays.values()):
        raise ConfigError("data: arrays of numbers, not Python objects")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    content = buffer.getvalue()
    from profiler.harness.files import cache_folder

    folder = cache_folder("data")
    path = os.path.join(folder, hashlib.sha256(content).hexdigest()[:24] + ".npz")
    if not os.path.isfile(path):
        import tempfile

        try:
            os.makedirs(folder, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=folder, suffix=".partial")
            with os.fdopen(handle, "wb") as f:
                f.write(content)
            os.replace(partial, path)  # whole or not at all: another run may be writing the same file
        except OSError as exc:
            raise ConfigError(f"data: cannot write the arrays to {folder} ({exc.strerror})") from None
    return path


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def mib_to_bytes(mib):
    """A size in MiB (MEMORY, SWAP: settings are held in MiB) as the whole bytes a kernel or engine takes."""
    return int((mib or 0) * MIB)


_SCALE_MB = {"": 1 / MIB, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
MAX_SIZE_MB = 1024.0 ** 3  # 1 PiB
MAX_CORE = 4095  # the kernel's largest CPU number on common builds (CONFIG_NR_CPUS)
MAX_THREADS = 128  # far above any edge device; the sandbox's process limit (512) leaves room for it
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week; a larger value overflows the timers that enforce it
MIN_CPUS = 0.01  # Docker's and the CFS quota's granularity: below it a cap is not applied


def parse_size_mb(key, text):
    """Docker-style sizes: 512m, 2g, 1.5G, 1024k; a bare number is bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"{key}={text}: not a size; use e.g. 512m or 2g")
    value = float(match.group(1)) * _SCALE_MB[match.group(2).lower()]
    if value > MAX_SIZE_MB:  # beyond what a cgroup or the Engine API can hold (int64 bytes)
        raise ConfigError(f"{key}={text}: larger than any memory a cap can express (at most 1024t)")
    return value


def setting_number(key, text, kind=float, minimum=None, strict=False, maximum=None):
    try:
        value = kind(str(text).strip())
    except ValueError:
        raise ConfigError(f"{key}={text}: not a{'n integer' if kind is int else ' number'}") from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{key}={text}: not a finite number")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = "greater than" if strict else "at least"
        raise ConfigError(f"{key}={text}: must be {relation} {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}={text}: must be at most {maximum:g}")
    return value


def parse_cpu_set(key, text):
    """'0,2-3' -> [0, 2, 3]."""
    cores = set()
    try:
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            low, dash, high = part.partition("-")
            first, last = int(low), int(high if dash else low)  # "0-" is an error, not core 0
            if first < 0 or last < first:
                raise ValueError
            if last > MAX_CORE:
                raise ConfigError(f"{key}={text}: core {last} is beyond any CPU number (at most {MAX_CORE})")
            cores.update(range(first, last + 1))
    except ValueError:
        raise ConfigError(f"{key}={text}: not a core list; use e.g. 0,2 or 0-3") from None
    if not cores:
        raise ConfigError(f"{key}={text}: names no core")
    return sorted(cores)


def docker_args(text, values, warnings):
    """Auptimizer's DOCKER_ARGS: the cap flags in it become ordinary keys."""
    flags = {"--cpus": "CPUS", "--memory": "MEMORY", "-m": "MEMORY", "--cpuset-cpus": "CPU_SET"}
    try:
        tokens = shlex.split(text)
    except ValueError as exc:  # e.g. an unbalanced quote
        raise ConfigError(f"DOCKER_ARGS={text}: cannot be split into arguments ({exc})") from None
    i = 0
    while i < len(tokens):
        name, eq, value = tokens[i].partition("=")
        if name in flags:
            if not eq:
                i += 1
                value = tokens[i] if i < len(tokens) else ""
            values.setdefault(flags[name], value)
        elif name == "--memory-swap":
            if not eq:
                i += 1
                value = tokens[i] if i < len(tokens) else ""
            values.setdefault("_MEMORY_SWAP", value)
        else:
            warnings.append(f"DOCKER_ARGS: {tokens[i]} is not used by edge-profiler")
        i += 1
