"""env.template (python-dotenv format) -> a validated TargetDevice.

One module of about 440 lines on purpose: the settings table (SETTINGS, from which the env file, the
command-line options and the API keywords are made), the Target it fills and the steps that fill it
read each other at every line. Parsing one value (sizes, numbers, core lists) is `profiler.values`."""

import math
import os
import shlex
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from profiler.errors import ConfigError
from profiler.values import (MAX_THREADS, MAX_TIMEOUT_S, MIN_CPUS, data_file, docker_args, parse_cpu_set,
                             parse_size_mb, setting_number)

BACKENDS = ("auto", "docker", "local", "slurm", "ssh")
DEFAULT_BASE_IMAGE = "python:3.11-slim"


@dataclass
class TargetDevice:
    name: str = "device"
    cpus: float = 1.0
    cpu_set: Optional[List[int]] = None
    memory_mb: Optional[float] = None
    swap_mb: float = 0.0
    threads: int = 1
    warmup: int = 10
    iterations: int = 100
    batch: int = 1
    backend: str = "auto"
    base_image: Optional[str] = None  # None: the default, with the offline image as fallback
    timeout_s: float = 600.0
    input_shapes: str = ""
    seed: int = 0
    device_ram_mb: Optional[float] = None
    op_profile_runs: int = 0  # >0: also time per operator class with the runtime's profiler (ONNX)
    sample_memory: bool = False  # resident memory after every timed run (mean_rss_mb)
    cool_down_c: float = 0.0  # >0: before each model, wait until the hottest sensor reads at most this (°C)
    delegate: Optional[str] = None  # TFLite: none, xnnpack (the default), reference, or a delegate library
    execution_providers: Optional[List[str]] = None  # ONNX Runtime, in order of preference (default CPU)
    data: Optional[str] = None  # an .npz evaluated after the timed runs (accuracy)
    task: str = "auto"  # what its y_data holds: auto, classification, regression
    data_sha256: Optional[str] = None
    workers: int = 1  # worker processes per model, the timed runs split between them
    target_ci: float = 0.0  # >0: time until the median's 95% interval is within ±target_ci of it
    time_budget_s: float = 10.0  # seconds of timed runs per model that target_ci may spend
    jobs: int = 1  # sandboxes (or Slurm steps) at once, each on its own ceil(CPUS) cores
    slurm_partition: Optional[str] = None
    slurm_account: Optional[str] = None
    slurm_args: List[str] = field(default_factory=list)  # extra sbatch options, e.g. --qos=low
    slurm_folder: Optional[str] = None  # submitit's job folder; must be on a filesystem the nodes share
    ssh_host: Optional[str] = None  # BACKEND=ssh: user@host or an ~/.ssh/config alias
    ssh_python: str = "python3"  # the device's interpreter (with numpy and the runtime)
    ssh_config: Optional[str] = None  # an ssh_config file instead of ~/.ssh/config
    ssh_connect_timeout_s: float = 10.0
    # Cores a parallel run hands to one sandbox; not part of the target's identity (describe()).
    assigned_cores: Optional[List[int]] = field(default=None, compare=False)
    warnings: List[str] = field(default_factory=list, compare=False)

    def describe(self):
        """The part of the target that identifies a measurement (stored with every result)."""
        return {"name": self.name, "cpus": self.cpus, "cpuset": self.cpu_set, "threads": self.threads,
                "memory_mb": self.memory_mb, "swap_mb": self.swap_mb, "batch": self.batch}

    def settings(self):
        """What changes what is measured besides the target: part of a stored record's key."""
        return {"warmup": self.warmup, "iterations": self.iterations, "seed": self.seed,
                "input_shapes": self.input_shapes, "target_ci": self.target_ci, "workers": self.workers,
                "time_budget_s": self.time_budget_s if self.target_ci else None,
                "op_profile_runs": self.op_profile_runs, "data_sha256": self.data_sha256,
                "task": self.task if self.data else None,
                # what runs the model, named only when set, so that earlier stores keep their keys
                **({"delegate": self.delegate} if self.delegate else {}),
                **({"cool_down_c": self.cool_down_c} if self.cool_down_c else {}),
                **({"execution_providers": self.execution_providers} if self.execution_providers else {})}

    def as_dict(self):
        data = asdict(self)
        data.pop("warnings")
        return data

    @classmethod
    def from_env(cls, path=None, **settings):
        """The target an env file describes, with keyword settings on top (as the command's options are).

        A keyword is the env key in lower case (``cpus=1`` for CPUS, ``timeout_s=60`` or ``timeout=60``
        for TIMEOUT_S); numbers, lists of cores and sizes such as ``"512m"`` are accepted (a size without
        a unit is in bytes, as in the env file; ``device_ram_mb=4096`` is in MiB).

        >>> from profiler import Target
        >>> t = Target.from_env("env.template", backend="local", cpus=1, memory="512m", iterations=20)
        >>> (t.backend, t.cpus, t.memory_mb, t.iterations)
        ('local', 1.0, 512.0, 20)
        >>> Target.from_env(device_ram_mb=4096, cpu_set=[0]).device_ram_mb
        4096.0
        >>> Target.from_env(cpus=-1)
        Traceback (most recent call last):
        ...
        profiler.errors.ConfigError: CPUS=-1: must be greater than 0
        """
        if path is not None and (not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes)):
            raise ConfigError(f"path: expected an env file path or None, not {type(path).__name__}")
        path = os.fspath(path) if path is not None else None
        overrides = {}
        for name, value in settings.items():
            key = {"timeout": "TIMEOUT_S", "device_ram_mb": "DEVICE_RAM", "on": "SSH_HOST"}.get(name, name.upper())
            if key not in KEYS:
                raise ConfigError(f"{name}: not a target setting (known: "
                                  f"{', '.join(sorted(k.lower() for k in KEYS))})")
            if value is None:
                continue
            if key == "DATA" and not isinstance(value, (str, os.PathLike)):
                value = data_file(value)  # arrays: written once to a cache file named by their content
            if isinstance(value, (list, tuple)):
                value = ("," if key == "CPU_SET" else " ").join(str(v) for v in value)
            elif isinstance(value, bool):
                value = "1" if value else "0"
            elif name == "device_ram_mb":
                value = f"{value}m"
            overrides[key] = str(value)
        if overrides.get("SSH_HOST") and not overrides.get("BACKEND"):
            overrides["BACKEND"] = "ssh"
        from profiler.cores import physical_first_cores

        return load_target(path, overrides, host_cores=physical_first_cores())


# Every setting: (env key, command-line option or None, help). The env file, the options of `profile`
# and the API keywords (the key in lower case) are all made from this one list.
SETTINGS = (
    ("DEVICE_NAME", "--device-name", "name of the target device"),
    ("BACKEND", "--backend", "auto (Docker if an engine answers, else local with a WARNING; TorchScript and "
                             ".pt2 files, which carry code, then need --backend local), docker, local (caps CPU"
                             " and memory with affinity and cgroups; NOT a security boundary), or slurm (each "
                             "batch in a Slurm job step, capped by Slurm's cgroups)"),
    ("CPUS", "--cpus", "device core count; may be fractional, e.g. 1.5"),
    ("CPU_SET", "--cpu-set", "explicit host cores, e.g. 0,1"),
    ("MEMORY", "--memory", "memory cap, e.g. 512m or 2g"),
    ("SWAP", "--swap", "swap allowed on top of MEMORY (default 0)"),
    ("THREADS", "--threads", "runtime threads (default ceil(CPUS))"),
    ("WARMUP", "--warmup", "untimed runs (default 10)"),
    ("ITERATIONS", "--iterations", "timed runs (default 100); with --target-ci, the least"),
    ("TARGET_CI", "--target-ci", "keep timing until the median's 95%% interval is within this share of it, e.g."
                                 " 1%% or 0.01 (default: a fixed ITERATIONS)"),
    ("DATA", "--data", "after timing, evaluate each model on this .npz (x_data: one sample per row, no batch "
                       "dimension; y_data: labels or targets, optional) inside the same sandbox and runtime"),
    ("TASK", "--task", "what y_data holds: auto (default: classes when the labels are integers), classification"
                       " or regression"),
    ("WORKERS", "--workers", "fresh worker processes per model, the timed runs split between them and pooled; "
                             "their medians' spread flags a host whose speed drifts (default 1)"),
    ("TIME_BUDGET_S", "--time-budget", "seconds of timed runs per model --target-ci may spend (default 10)"),
    ("BATCH", "--batch", "batch size (default 1)"),
    ("COOL_DOWN_C", "--cool-down-c", "before each model, wait (at most 300 s) until the board's hottest sensor "
                                     "reads at most this many °C, as the public Pi benchmarks do (e.g. 55)"),
    ("DELEGATE", "--delegate", "TFLite: xnnpack (default), none (builtin kernels, no delegate), reference, or a"
                               " delegate library with its options, e.g. libarmnnDelegate.so:backends=CpuAcc or"
                               " libedgetpu.so.1 (on the device, with --on)"),
    ("EXECUTION_PROVIDERS", "--execution-providers", "ONNX Runtime providers in order of preference, e.g. Tenso"
                                                     "rrtExecutionProvider,CUDAExecutionProvider,CPUExecutionPr"
                                                     "ovider (default CPU); an unavailable one is an error, "
                                                     "never a silent fallback"),
    ("TIMEOUT_S", "--timeout", "seconds per model before it counts as timeout (default 600)"),
    ("INPUT_SHAPES", "--input-shapes", "pin dynamic dims, e.g. input:1x3x224x224"),
    ("SEED", "--seed", "seed for the random inputs (default 0)"),
    ("BASE_IMAGE", "--base-image", "Docker base image (default python:3.11-slim, offline fallback)"),
    ("DEVICE_RAM", "--device-ram", "the device's RAM, to flag models that won't fit, e.g. 4g"),
    ("JOBS", "--jobs", "models measured at once, each sandbox (or Slurm step) on its own ceil(CPUS) cores; JOBS"
                       " x ceil(CPUS) may not exceed the host's cores (default 1)"),
    ("SLURM_PARTITION", "--slurm-partition", "BACKEND=slurm: the partition (default: the cluster's default)"),
    ("SLURM_ACCOUNT", "--slurm-account", "BACKEND=slurm: the account to charge"),
    ("SLURM_ARGS", "--slurm-args", "BACKEND=slurm: more sbatch options, e.g. '--qos=low --constraint=avx2'"),
    ("SLURM_FOLDER", "--slurm-folder", "BACKEND=slurm: job files, on a filesystem every node sees (default "
                                       "./.edge-profiler-slurm)"),
    ("SSH_HOST", "--on", "measure natively on this Linux device over SSH (user@host or an ~/.ssh/config alias; "
                         "key-based login, host key checked); implies --backend ssh"),
    ("SSH_PYTHON", "--ssh-python", "the device's Python with numpy and the runtime (default python3)"),
    ("SSH_CONFIG", "--ssh-config", "an ssh_config file to use instead of ~/.ssh/config"),
    ("OP_PROFILE", "--op-profile", "also time OP_PROFILE runs per operator class with onnxruntime's profiler "
                                   "(features for `calibrate --method features`)"),
    ("SAMPLE_MEMORY", "--sample-memory", "1: also read resident memory after every timed run (mean_rss_mb; "
                                         "default 0)"),
    ("SSH_CONNECT_TIMEOUT_S", "--ssh-connect-timeout", "--on: seconds to wait for the device's SSH connection "
                                                       "(default 10)"),
)
KEYS = {key for key, _, _ in SETTINGS}
MAX_RUNS = 10 ** 7  # ITERATIONS and WARMUP: far above any useful count, and below what a sandbox can run in a week
MAX_JOBS = 4096
ALIASES = {"DOCKCPUS": "CPUS", "DOCKMEMORY": "MEMORY"}


def read_env_file(path):
    from dotenv import dotenv_values

    if os.path.exists(path) and not os.path.isfile(path):
        raise ConfigError(f"{path}: not a regular file (a folder, FIFO or device cannot be an env file)")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: env file not found")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read env file ({getattr(exc, 'strerror', None) or exc})") from None
    import io

    from dotenv.parser import parse_stream

    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(f"{path}:{binding.original.line}: cannot read {binding.original.string.strip()!r}; "
                              "expected KEY=VALUE")
    # No ${VAR} expansion: a shared env file must never copy a secret of the environment into reports.
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text), interpolate=False).items() if v is not None}


def load_target(env_path=None, overrides=None, host_cores=None):
    """Defaults < env file < command-line overrides (same key names)."""
    values, warnings = {}, []
    if env_path:
        for key, value in read_env_file(env_path).items():
            key = key.strip().upper()
            if key in ALIASES:
                values.setdefault(ALIASES[key], value)
            elif key == "DOCKER_ARGS":
                docker_args(value, values, warnings)
            elif key in KEYS:
                values[key] = value
            else:
                warnings.append(f"{env_path}: unknown key {key} is ignored")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    return build_target(values, warnings, host_cores)


def build_target(values, warnings, host_cores=None):
    t = TargetDevice(warnings=warnings)
    get = values.get
    host_cores = _cores_and_backend(t, get, host_cores)
    host_cores = _remote(t, get, host_cores)
    _fits_host(t, host_cores)
    _memory_and_threads(t, get, warnings)
    _runs(t, get)
    _data_and_timing(t, get)
    _inputs_and_runtime(t, get)
    return t


def _cores_and_backend(t, get, host_cores):
    """The name, the cores (CPUS, CPU_SET), JOBS and BACKEND."""
    if get("DEVICE_NAME"):
        t.name = str(get("DEVICE_NAME")).strip()
    if get("CPUS") not in (None, ""):
        t.cpus = setting_number("CPUS", get("CPUS"), float, 0, strict=True)
        if t.cpus < MIN_CPUS:
            raise ConfigError(f"CPUS={get('CPUS')}: below {MIN_CPUS:g}, the smallest CPU cap that can be enforced")
    if get("CPU_SET") not in (None, ""):
        t.cpu_set = parse_cpu_set("CPU_SET", get("CPU_SET"))
        if get("CPUS") in (None, ""):
            t.cpus = float(len(t.cpu_set))
        elif len(t.cpu_set) < math.ceil(t.cpus):
            raise ConfigError(f"CPU_SET={get('CPU_SET')}: lists {len(t.cpu_set)} cores but CPUS={t.cpus:g}")
    if get("JOBS") not in (None, ""):
        t.jobs = setting_number("JOBS", get("JOBS"), int, 1, maximum=MAX_JOBS)
    if get("BACKEND") not in (None, ""):
        t.backend = str(get("BACKEND")).strip().lower()
        if t.backend not in BACKENDS:
            raise ConfigError(f"BACKEND={get('BACKEND')}: choose one of {', '.join(BACKENDS)}")
    if t.backend == "slurm":
        host_cores = None  # the cores are a node's, and Slurm checks them
        if t.cpu_set:
            raise ConfigError("CPU_SET: Slurm chooses a step's cores; give CPUS only with BACKEND=slurm")
    return host_cores


def _remote(t, get, host_cores):
    """Where it runs when not on this host: SSH_HOST and its settings, Slurm's."""
    if get("SSH_HOST") not in (None, ""):
        t.ssh_host = str(get("SSH_HOST")).strip()
        if t.ssh_host.startswith("-") or any(c.isspace() for c in t.ssh_host):
            raise ConfigError(f"SSH_HOST={t.ssh_host}: not a host name, user@host or ssh_config alias")
    if get("SSH_CONFIG") not in (None, "") and not os.path.isfile(str(get("SSH_CONFIG"))):
        raise ConfigError(f"SSH_CONFIG={get('SSH_CONFIG')}: file not found")
    if get("SSH_CONNECT_TIMEOUT_S") not in (None, ""):
        t.ssh_connect_timeout_s = setting_number("SSH_CONNECT_TIMEOUT_S", get("SSH_CONNECT_TIMEOUT_S"), float, 0,
                                          strict=True, maximum=3600)
    if t.ssh_host and t.backend == "auto":
        t.backend = "ssh"  # a device named is a device measured on
    elif t.ssh_host and t.backend != "ssh":
        raise ConfigError(f"SSH_HOST={t.ssh_host} (--on) measures on that device, but BACKEND={t.backend} asks "
                          "for this host; give one of them")
    if t.backend == "ssh":
        host_cores = None  # the device's cores; nothing is capped there
        if not t.ssh_host:
            raise ConfigError("BACKEND=ssh needs SSH_HOST (or --on user@host)")
    for key in ("SLURM_PARTITION", "SLURM_ACCOUNT", "SLURM_FOLDER", "SSH_PYTHON", "SSH_CONFIG"):
        if get(key) not in (None, ""):
            setattr(t, key.lower(), str(get(key)).strip())
    if t.slurm_folder and "%" in t.slurm_folder:
        raise ConfigError(f"SLURM_FOLDER={t.slurm_folder}: Slurm expands % in job file names (%u, %j, …); "
                          "choose a folder without %")
    if get("SLURM_ARGS") not in (None, ""):
        try:
            t.slurm_args = shlex.split(str(get("SLURM_ARGS")))
        except ValueError as exc:
            raise ConfigError(f"SLURM_ARGS={get('SLURM_ARGS')}: cannot be split into arguments ({exc})") from None
        bad = [a for a in t.slurm_args if not a.startswith("--") or "=" not in a]
        if bad:
            raise ConfigError(f"SLURM_ARGS: {bad[0]}: write each option as --name=value")
    return host_cores


def _fits_host(t, host_cores):
    """A cap this host can honour: the cores CPUS, CPU_SET and JOBS ask for exist here."""
    if host_cores is not None:
        available = len(host_cores)
        width = math.ceil(t.cpus)
        if math.ceil(t.cpus) > available:
            raise ConfigError(f"CPUS={t.cpus:g}: this host has only {available} usable cores, so the cap "
                              f"cannot be honoured; profile at CPUS<={available} THREADS<={available} and calibrate "
                              f"against the device's rows at that thread count (README: Threads and cores), or "
                              f"profile on the device itself with --on")
        if t.cpu_set and not set(t.cpu_set) <= set(host_cores):
            missing = sorted(set(t.cpu_set) - set(host_cores))
            raise ConfigError(f"CPU_SET: core {missing[0]} is not available on this host "
                              f"(available: {','.join(map(str, host_cores))})")
        if t.jobs > 1 and (t.cpu_set and len(t.cpu_set) != t.jobs * width):
            raise ConfigError(f"JOBS={t.jobs}: CPU_SET lists {len(t.cpu_set)} cores, but {t.jobs} sandboxes of "
                              f"{width} core(s) need exactly {t.jobs * width}")
        if t.jobs * width > available:
            raise ConfigError(f"JOBS={t.jobs}: {t.jobs} sandboxes of {width} core(s) need {t.jobs * width} cores and "
                              f"this host has {available} usable; use JOBS<={max(1, available // width)} "
                              "(cores are never shared between sandboxes)")


def _memory_and_threads(t, get, warnings):
    """MEMORY, SWAP and THREADS (warned of above the sandbox's cores)."""
    if get("MEMORY") not in (None, ""):
        t.memory_mb = parse_size_mb("MEMORY", get("MEMORY"))
        if t.memory_mb < 6:
            raise ConfigError(f"MEMORY={get('MEMORY')}: below the 6 MiB a sandbox needs")
    if get("SWAP") not in (None, ""):
        t.swap_mb = parse_size_mb("SWAP", get("SWAP"))
    elif get("_MEMORY_SWAP") not in (None, "") and t.memory_mb:
        t.swap_mb = max(0.0, parse_size_mb("DOCKER_ARGS --memory-swap", get("_MEMORY_SWAP")) - t.memory_mb)
    t.threads = (setting_number("THREADS", get("THREADS"), int, 1, maximum=MAX_THREADS) if get("THREADS") not in (None, "")
                 else math.ceil(t.cpus))
    cores = len(t.cpu_set) if t.cpu_set else math.ceil(t.cpus)
    if t.threads > cores and t.backend != "ssh":  # on a device the harness checks its own cores
        warnings.append(f"THREADS={t.threads} is above the {cores} core(s) the sandbox has (CPUS={t.cpus:g}): the "
                        "model's threads will take turns on them, which no device with that many cores does; "
                        "its rows are flagged `oversubscribed`. Use THREADS<=" + str(cores) + " or more CPUS")


def _runs(t, get):
    """How each model is timed: WARMUP, ITERATIONS, TARGET_CI, WORKERS."""
    if get("WARMUP") not in (None, ""):
        t.warmup = setting_number("WARMUP", get("WARMUP"), int, 0, maximum=MAX_RUNS)
    if get("ITERATIONS") not in (None, ""):
        t.iterations = setting_number("ITERATIONS", get("ITERATIONS"), int, 1, maximum=MAX_RUNS)
    if get("TARGET_CI") not in (None, ""):
        text = str(get("TARGET_CI")).strip()
        value = setting_number("TARGET_CI", text[:-1] if text.endswith("%") else text, float, 0)
        t.target_ci = value / 100 if text.endswith("%") else value
        if t.target_ci >= 1:
            raise ConfigError(f"TARGET_CI={text}: a share of the median below 1 (e.g. 0.01 or 1%)")
    if get("WORKERS") not in (None, ""):
        t.workers = setting_number("WORKERS", get("WORKERS"), int, 1, maximum=64)


def _data_and_timing(t, get):
    """DATA and TASK, the time budget and timeout, BATCH and BASE_IMAGE."""
    if get("DATA") not in (None, ""):
        t.data = os.path.abspath(str(get("DATA")).strip())
        if not os.path.isfile(t.data):
            raise ConfigError(f"DATA={get('DATA')}: " + ("not a regular file" if os.path.exists(t.data)
                                                         else "data file not found"))
        if not t.data.endswith(".npz"):
            raise ConfigError(f"DATA={get('DATA')}: an .npz file with x_data and optional y_data")
        from profiler.harness.files import sha256_of

        try:
            t.data_sha256 = sha256_of(t.data)
        except OSError as exc:
            raise ConfigError(f"DATA={get('DATA')}: cannot read it ({exc.strerror})") from None
    if get("TASK") not in (None, ""):
        t.task = str(get("TASK")).strip().lower()
        if t.task not in ("auto", "classification", "regression"):
            raise ConfigError(f"TASK={get('TASK')}: choose auto, classification or regression")
    if get("TIME_BUDGET_S") not in (None, ""):
        t.time_budget_s = setting_number("TIME_BUDGET_S", get("TIME_BUDGET_S"), float, 0, strict=True,
                                  maximum=MAX_TIMEOUT_S)
    if get("BATCH") not in (None, ""):
        t.batch = setting_number("BATCH", get("BATCH"), int, 1)
    if get("BASE_IMAGE") not in (None, ""):
        t.base_image = str(get("BASE_IMAGE")).strip()
    if get("TIMEOUT_S") not in (None, ""):
        t.timeout_s = setting_number("TIMEOUT_S", get("TIMEOUT_S"), float, 0, strict=True, maximum=MAX_TIMEOUT_S)


def _inputs_and_runtime(t, get):
    """Inputs, seed, operator profile, memory sampling, device RAM, cool-down and the runtime's delegate and providers."""
    if get("INPUT_SHAPES") not in (None, ""):
        from profiler.harness.runtimes import ModelError, parse_input_shapes

        try:
            parse_input_shapes(get("INPUT_SHAPES"))
        except ModelError as exc:
            raise ConfigError(str(exc)) from None
        t.input_shapes = str(get("INPUT_SHAPES")).strip()
    if get("SEED") not in (None, ""):
        t.seed = setting_number("SEED", get("SEED"), int, 0, maximum=2 ** 32 - 1)  # numpy's seed range
    if get("OP_PROFILE") not in (None, ""):
        t.op_profile_runs = setting_number("OP_PROFILE", get("OP_PROFILE"), int, 0)
    if get("SAMPLE_MEMORY") not in (None, ""):
        flag = str(get("SAMPLE_MEMORY")).strip().lower()
        if flag not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"SAMPLE_MEMORY={get('SAMPLE_MEMORY')}: use 1 or 0")
        t.sample_memory = flag in ("1", "true", "yes")
    if get("DEVICE_RAM") not in (None, ""):
        t.device_ram_mb = parse_size_mb("DEVICE_RAM", get("DEVICE_RAM"))
    if get("COOL_DOWN_C") not in (None, ""):
        t.cool_down_c = setting_number("COOL_DOWN_C", get("COOL_DOWN_C"), float, 1, maximum=150)
    if get("DELEGATE") not in (None, ""):
        t.delegate = str(get("DELEGATE")).strip()
        if t.delegate.lower() in ("none", "xnnpack", "reference"):
            t.delegate = t.delegate.lower()
        else:
            from profiler.harness.runtimes import ModelError, delegate_library

            try:
                delegate_library(t.delegate)
            except ModelError as exc:
                raise ConfigError(str(exc)) from None
    if get("EXECUTION_PROVIDERS") not in (None, ""):
        providers = [p.strip() for p in str(get("EXECUTION_PROVIDERS")).split(",") if p.strip()]
        bad = [p for p in providers if not p.isidentifier() or not p.endswith("ExecutionProvider")]
        if not providers or bad:
            raise ConfigError(f"EXECUTION_PROVIDERS={get('EXECUTION_PROVIDERS')}: ONNX Runtime provider names, "
                              "comma-separated, e.g. CUDAExecutionProvider,CPUExecutionProvider")
        t.execution_providers = providers
