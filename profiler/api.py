"""The Python API of `profile`: for notebooks and search loops. It never prints and never exits:
problems are `ProfileError` (or `ConfigError`) with the command's one-line message, and notices go
to a callback or onto the results.

>>> import profiler
>>> target = profiler.Target.from_env("env.template", backend="local", cpus=1, iterations=20, warmup=2)
>>> results = profiler.profile(["experiments/examples/tiny_cnn.onnx"], target, store=None)
>>> results
<Results: 1 model(s) on raspberry-pi-5: 1 ok>
>>> [(r["model"], r["runtime"], r["status"]) for r in results]
[('tiny_cnn', 'onnx', 'ok')]
>>> df = results.to_pandas()
>>> list(df.columns[:4]), bool(df.loc[0, "latency_ms.median"] > 0)
(['model', 'runtime', 'status', 'latency_ms.median'], True)
>>> profiler.profile(["no_such_model.onnx"], target)
Traceback (most recent call last):
...
profiler.errors.ProfileError: no_such_model.onnx: model file not found
"""

import os
from collections import OrderedDict
from dataclasses import replace

from profiler.config import ConfigError, TargetDevice
from profiler.errors import ProfileError
from profiler.harness.files import printable
from profiler.results import Results


def check_models(paths, runtime=None):
    """Fail before any sandbox starts: every file must exist and have a known runtime.
    Returns {runtime: [absolute paths]} in the order given."""
    from profiler.harness.runtimes import ModelError, runtime_for

    groups = OrderedDict()
    for path in paths:
        if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
            raise ProfileError(f"models: each model is a file path (str or os.PathLike), not {type(path).__name__}")
        path = os.fspath(path)
        if os.path.isdir(path):
            raise ProfileError(f"{path}: is a folder, not a model file")
        if os.path.islink(path) and not os.path.exists(path):
            raise ProfileError(f"{path}: a symbolic link that leads nowhere (dangling, or a loop)")
        if os.path.exists(path) and not os.path.isfile(path):
            raise ProfileError(f"{path}: not a regular file (a FIFO, socket or device cannot be a model)")
        if not os.path.isfile(path):
            raise ProfileError(f"{path}: model file not found")
        if not os.access(path, os.R_OK):
            raise ProfileError(f"{path}: model file is not readable")
        try:
            groups.setdefault(runtime_for(path, runtime), []).append(os.path.abspath(path))
        except ModelError as exc:
            raise ProfileError(str(exc)) from None
    if not groups:
        raise ProfileError("no model files given")
    return groups


def as_target(target):
    """A Target from a Target, an env file path or None (the defaults)."""
    if isinstance(target, TargetDevice):
        return target
    if target is None or isinstance(target, (str, os.PathLike)):
        try:
            return TargetDevice.from_env(os.fspath(target) if target is not None else None)
        except ConfigError as exc:
            raise ProfileError(str(exc)) from None
    raise ProfileError(f"target: expected profiler.Target or an env file path, not {type(target).__name__}")


def open_store(store):
    """(Store or None, whether this call opened it) from a path, a Store or None."""
    from profiler.store import Store, StoreError

    if store is None or isinstance(store, Store):
        return store, False
    if not isinstance(store, (str, os.PathLike)) or isinstance(store, bytes):
        raise ProfileError(f"store: expected a path, a profiler.Store or None, not {type(store).__name__}")
    try:
        return Store(os.fspath(store)), True
    except StoreError as exc:
        raise ProfileError(str(exc)) from None


def predictor_for(calibration, target, force, warn):
    """The predictor `profile` annotates records with. `calibration` is an object that makes one for
    this target (`predictor(force=, warn=, device_ram_mb=)`, as `calibration.Calibration` does) or
    a predictor itself (`annotate(record)`). `profiler` never imports `calibration`: the commands
    load a calibration file and pass the object."""
    make = getattr(calibration, "predictor", None)
    if callable(make):
        return make(force=force, warn=warn, device_ram_mb=target.device_ram_mb)
    if callable(getattr(calibration, "annotate", None)):
        return calibration
    raise ProfileError(f"calibration: expected a calibration.Calibration (calibration.load(path)) or an object "
                       f"with annotate(record), not {type(calibration).__name__}")


class Profiler:
    """A profiling session: one target, with its sandboxes and the results store kept open between
    calls, for notebooks and search loops (the empty-run timing of a backend is paid once, a model the
    store holds costs a hash and a lookup). Close it with `close()` or a `with` block.

    >>> import profiler
    >>> target = profiler.Target.from_env("env.template", backend="local", cpus=1, iterations=20, warmup=2)
    >>> with profiler.Profiler(target, store=None) as session:
    ...     first = session.profile("experiments/examples/tiny_cnn.onnx")
    ...     second = session.profile("experiments/examples/tiny_cnn.tflite")
    >>> [r["status"] for r in first + second]
    ['ok', 'ok']
    """

    def __init__(self, target=None, *, store="profiles.db"):
        self.target = as_target(target)
        self._store_given, self._store, self._owns_store, self._opened = store, None, False, False
        self._backends = {}  # one per target set-up and runtimes
        self.closed = False

    def store(self):
        """The results store (None for none), opened on first use."""
        if not self._opened:
            self._store, self._owns_store = open_store(self._store_given)
            self._opened = True
        return self._store

    def backend(self, target, runtimes, notice, warn):
        from profiler.sandbox import SandboxError, select_backend

        key = repr({k: v for k, v in target.as_dict().items() if k != "assigned_cores"}) + repr(sorted(runtimes))
        if key not in self._backends:
            try:
                self._backends[key] = select_backend(target, notice=notice, runtimes=runtimes, warn=warn)
            except SandboxError as exc:
                raise ProfileError(str(exc)) from None
        return self._backends[key]

    def profile(self, models, **options):
        """`profiler.profile(models, target, store=..., **options)` with this session's target and store."""
        if self.closed:
            raise ProfileError("this Profiler is closed; make a new one")
        twice = sorted(set(options) & {"target", "store"})
        if twice:
            raise ProfileError(f"{twice[0]}: a Profiler's target and store are given when it is made")
        from profiler.batch import Request

        return _profile_models(self, models, Request.from_options(options))

    def close(self):
        while self._backends:
            self._backends.popitem()[1].close()
        if self._owns_store and self._store is not None:
            self._store.close()
        self._store, self._owns_store, self.closed = None, False, True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def profile(models, target=None, *, store="profiles.db", **options):
    """Profile model files under the target's caps, as `profile` does, and return `Results`.

    models: file paths (.tflite, .onnx, .pt/.pth, .pt2); target: a `Target`, an env file path or None.
    store: the SQLite results store (a path, a `Store`, or None for no store); models it already holds
    for this target come from it unless remeasure. calibration: a `calibration.Calibration`, its JSON
    path or dict, to add predicted device figures (`prediction`) to every record. progress: show a
    progress bar on stderr. notice(text)/warn(text): callbacks for remarks and warnings (default: kept
    on the results). on_result(record): called as each model finishes (for exports that must survive a
    crash). Search loops keep the backend and store open with a `Profiler` session instead.
    variants: e.g. "int8,fp16": each model's variants are made and profiled beside it. reference: one of
    the models; with target data, every other model's `accuracy.agreement` says how closely its outputs
    follow the reference's (a variant's reference is its original by default).
    Other options: runtime, remeasure, force, retries (see `profile --help`).
    """
    with Profiler(target, store=store) as session:
        return session.profile(models, **options)


def _profile_models(session, models, request):
    from profiler.harness.files import utf8_names

    if isinstance(models, (str, os.PathLike)) and not isinstance(models, bytes):
        models = [models]
    elif isinstance(models, (bytes, dict)) or not hasattr(models, "__iter__"):
        raise ProfileError(f"models: expected a model path or a list of them, not {type(models).__name__}")
    groups = check_models(list(models), request.runtime)
    with utf8_names([p for paths in groups.values() for p in paths]) as names:
        if any(given != used for given, used in names.items()):
            groups = OrderedDict((rt, [names[p] for p in paths]) for rt, paths in groups.items())
        shown = {used: printable(given) for given, used in names.items() if given != used}
        results = _profile(session, groups, request, shown)
    if getattr(results, "store_error", None):
        raise ProfileError(results.store_error, results)
    return results


def reference_map(groups, request, variant_of, shown, target):
    """{model path: the path it is compared with}: a variant's original, and request.reference for
    every other model (checked: one of the models, with data to compare on)."""
    references = {path: v["_source"] for path, v in variant_of.items()}
    reference = request.reference
    if reference is None:
        return references
    found = check_models([reference], request.runtime)
    (reference,) = [p for paths in found.values() for p in paths]
    reference = next((used for used, given in shown.items() if given == printable(reference)), reference)
    if not any(reference in paths for paths in groups.values()):
        raise ProfileError(f"reference {reference}: is not one of the models profiled (give it as a model too)")
    if not target.data:
        raise ProfileError("reference: the agreement with a reference is measured on --data FILE.npz; give one")
    references.update({p: reference for paths in groups.values() for p in paths if p != reference and p not in references})
    return references


def _profile(session, groups, request, shown):
    from profiler import report
    from profiler.batch import Batch, add_variants, as_given
    from profiler.sandbox import SandboxError

    target = session.target
    results = Results(target=target)
    request = replace(request, notice=request.notice or results.notices.append,
                      warn=request.warn or results.warnings.append)
    variant_of, unmade = add_variants(groups, request.variants, target, request.warn) \
        if request.variants is not None else ({}, [])
    references = reference_map(groups, request, variant_of, shown, target)
    for warning in target.warnings:
        request.notice(f"warning: {warning}")
    predictor = None
    if request.calibration is not None:
        predictor = predictor_for(request.calibration, target, request.force, request.warn)
        if predictor.needs_op_profile() and not target.op_profile_runs:
            target = results.target = replace(target, op_profile_runs=20)  # the caller's Target stays as given
            request.notice("notice: the calibration uses per-operator times; profiling with --op-profile 20")
    store = session.store()
    backend = session.backend(target, list(groups), request.notice, request.warn)
    batch = Batch(backend, target, store, results, request, predictor, references, shown)
    try:
        batch.measure(groups)
    except SandboxError as exc:  # what was measured is in the store already
        raise ProfileError(str(exc)) from None
    for record in unmade:
        results.append(record)
        if request.on_result is not None:
            request.on_result(record)
    for i, record in enumerate(results):
        results[i] = as_given(record, shown)
        if results[i].get("path") in variant_of:
            results[i]["variant"] = {k: v for k, v in variant_of[results[i]["path"]].items() if k != "_source"}
    results.warnings += report.cap_warnings(results)
    if predictor is not None:
        results.warnings += predictor.mix_advice(results)
    for record in results:
        results.warnings += [f"WARNING: {w}" for w in record.get("warnings") or []]
    return results


