"""The parts every backend shares: the Backend interface, the harness's files and arguments, and
the record helpers. Backends import this module; `profiler.sandbox` chooses among them."""

import math
import os
import time

import profiler
from profiler.cores import physical_first_cores  # noqa: F401  (sandbox users import it from here too)
from profiler.harness.runtimes import runtime_for

LABEL = "edge-profiler"
OWNER = f"{LABEL}.owner"  # "host:pid" of the process that created a container
HOST_GRACE_S = 60.0  # on top of TIMEOUT_S, for sandbox start-up and runtime import


class SandboxError(Exception):
    """The sandbox cannot be used at all (no engine, image build failed); one line."""


def pick_cores(target):
    if target.assigned_cores:
        return list(target.assigned_cores)
    if target.cpu_set:
        return list(target.cpu_set)
    return sorted(physical_first_cores()[: math.ceil(target.cpus)])


def harness_files():
    """The standalone harness: what a sandbox image or a device needs of this package (numpy and a runtime
    besides); returns (package folder, paths relative to it)."""
    package = os.path.dirname(os.path.abspath(profiler.__file__))
    files = ["__init__.py"]  # the version; its public API is imported on first use only
    for folder, subfolders, names in os.walk(os.path.join(package, "harness")):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        files += [os.path.relpath(os.path.join(folder, n), package) for n in sorted(names) if n.endswith(".py")]
    return package, files


def harness_args(target, paths, cgroup, runtime=None, data=None):
    """The harness's arguments for these model paths; data: where the target's DATA file is as the
    harness sees it (inside a container or on a device), default its host path."""
    if not paths:
        return ["--empty", "--runtime", runtime]
    args = [*paths, "--threads", str(target.threads), "--warmup", str(target.warmup),
            "--iterations", str(target.iterations), "--batch", str(target.batch),
            "--seed", str(target.seed), "--timeout", f"{target.timeout_s:g}", "--keep-samples"]
    if target.input_shapes:
        args += ["--input-shapes", target.input_shapes]
    if target.data:
        args += ["--data", data or target.data, "--task", target.task]
        if target.data_sha256:  # hashed once on this side; a large file is not read twice for it
            args += ["--data-sha256", target.data_sha256]
    if target.workers > 1:
        args += ["--workers", str(target.workers)]
    if target.target_ci:
        args += ["--target-ci", f"{target.target_ci:g}", "--time-budget", f"{target.time_budget_s:g}"]
    try:  # every backend measures at the caller's priority (a container would start at dockerd's)
        args += ["--nice", str(os.getpriority(os.PRIO_PROCESS, 0))]
    except OSError:
        pass
    if target.sample_memory:
        args.append("--sample-memory")
    if target.delegate:
        args += ["--delegate", target.delegate]
    if target.cool_down_c:
        args += ["--cool-down-c", f"{target.cool_down_c:g}"]
    if target.execution_providers:
        args += ["--execution-providers", ",".join(target.execution_providers)]
    if target.op_profile_runs:
        args += ["--op-profile", str(target.op_profile_runs)]
    if cgroup:
        args.append("--cgroup")
    if runtime:
        args += ["--runtime", runtime]
    return args


def harness_record(line, keys=("model", "status")):
    """The record on one stdout line of the harness, or None for any other line. A wrapper, a shell
    profile or a device's own tool may print lines that start with "{" too; they are not records."""
    import json

    if not line.startswith(b"{" if isinstance(line, bytes) else "{"):
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("empty_run") is True or all(isinstance(record.get(k), str) for k in keys):
        return record  # a model's record, or the empty run that times the backend's overhead
    return None


def onnx_external_data(path):
    """The external-data files an ONNX model names (relative to its folder), to mount beside it."""
    if not path.lower().endswith(".onnx"):
        return []
    try:
        import onnx
        from onnx.external_data_helper import _get_all_tensors

        model = onnx.load(path, load_external_data=False)
    except Exception:  # not loadable: the harness reports it
        return []
    names = set()
    for tensor in _get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location and not os.path.isabs(location) and ".." not in location.split("/"):
                names.add(location)
    return sorted(n for n in names if os.path.isfile(os.path.join(os.path.dirname(path), n)))


def companion_files(path):
    """The files a model file needs beside it, by name relative to its folder: an ONNX model's
    external-data files, an OpenVINO IR's .bin weights."""
    if path.lower().endswith(".xml"):
        weights = os.path.splitext(os.path.basename(path))[0] + ".bin"
        return [weights] if os.path.isfile(os.path.join(os.path.dirname(path), weights)) else []
    return onnx_external_data(path)


def failure_record(path, runtime, status, error):
    """A row for a model whose sandbox died before the harness could report it."""
    from profiler.harness.record import model_name
    from profiler.harness.files import sha256_of

    try:
        sha = sha256_of(path)
    except OSError:
        sha = None
    return {"model": model_name(path), "path": path, "sha256": sha,
            "format": os.path.splitext(path)[1].lstrip(".").lower(), "runtime": runtime,
            "status": status, "error": error, "warnings": []}


class Backend:
    """Subclasses implement _run_batch; run() owns restarts and result decoration."""

    name = "base"
    cancelled = False

    def run(self, target, paths, on_result, runtime=None):
        """Profile paths (all of one runtime) and call on_result(record) once per model."""
        from profiler.harness.memory import read_through

        read_through(paths)  # model pages cached and charged outside the sandbox, cold cache or warm
        overhead = self.overhead(target, runtime or runtime_for(paths[0]))
        pending = list(paths)
        while pending and not self.cancelled:
            enforced, done = {}, []

            def emit(record):
                if self.cancelled:
                    return
                done.append(record)
                on_result(self._decorate(record, target, enforced, overhead))

            failure = self._run_batch(target, pending, runtime, emit, enforced)
            if len(done) >= len(pending) or self.cancelled:
                return
            status, error = failure or ("error", "the sandbox stopped without a result")
            in_flight = pending[len(done)]
            record = failure_record(in_flight, runtime or runtime_for(in_flight), status, error)
            on_result(self._decorate(record, target, enforced, overhead))
            pending = pending[len(done) + 1:]

    def overhead(self, target, runtime):
        """Time one empty sandbox run (start, interpreter, runtime import, teardown), once per runtime
        and target. It is reported, not subtracted: every latency figure is taken inside the sandbox,
        so this is the price of a profile, not a bias in it."""
        key = (runtime, repr(target.describe()))
        cache = self.__dict__.setdefault("_overheads", {})
        if key not in cache:
            self.prepare(runtime)  # a first-use image build is set-up, not the price of a run
            records = []
            start = time.perf_counter()
            failure = self._run_batch(target, [], runtime, records.append, {})
            wall_ms = round((time.perf_counter() - start) * 1000, 1)
            found = records[0] if records else {}
            if failure or not found or found.get("error"):
                error = found.get("error") or (failure[1] if failure else "no result")
                cache[key] = {"empty_run_ms": None, "error": error}
            else:
                cache[key] = {"empty_run_ms": wall_ms, "runtime_import_ms": found["import_ms"],
                              "runtime_version": found.get("runtime_version")}
        return cache[key]

    def prepare(self, runtime):
        """One-time set-up before the first run of a runtime (nothing for most backends)."""

    def close(self):
        """After the last batch (remove what the run left, e.g. an empty job folder)."""

    def cancel(self):
        """Stop every sandbox this backend is running (Ctrl-C in a parallel run, from the main thread);
        the threads running batches then return without further records."""
        self.cancelled = True
        self._stop_all()

    def _stop_all(self):
        """Kill whatever sandboxes are running now (each backend knows its own)."""

    def _decorate(self, record, target, enforced, overhead=None):
        record["backend"] = self.name
        record["executor_overhead"] = dict(overhead) if overhead else None
        record["target"] = target.describe()
        record["settings"] = target.settings()
        record["enforced"] = dict(enforced)
        record.setdefault("host", {})["tool_version"] = profiler.__version__
        if self.name == "docker":  # inside, the host name is the container's id: name the machine
            import platform

            record["host"]["hostname"] = platform.node()
        return record

    def _run_batch(self, target, paths, runtime, emit, enforced):
        """Run the harness on paths, emit each record and fill enforced.

        Returns None, or (status, error) for the model in flight when the sandbox died."""
        raise NotImplementedError


def host_versions():
    """This host's runtime package versions, to compare with a device's."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("onnxruntime", "ai-edge-litert", "tflite-runtime", "torch", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
