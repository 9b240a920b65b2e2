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
import sys
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
        return _profile_models(self, models, **options)

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


def _profile_models(session, models, *, runtime=None, remeasure=False, calibration=None, force=False, progress=False,
                    notice=None, warn=None, on_result=None, retries=None, variants=None, reference=None):
    from profiler.harness.files import utf8_names

    target = session.target
    if variants is not None and not (isinstance(variants, str) or (
            isinstance(variants, (list, tuple)) and all(isinstance(v, str) for v in variants))):
        raise ProfileError(f"variants: expected a text such as 'int8,fp16' or a list of kinds, not "
                           f"{type(variants).__name__}")
    if on_result is not None and not callable(on_result):
        raise ProfileError(f"on_result: expected a function of one record, not {type(on_result).__name__}")
    if isinstance(models, (str, os.PathLike)) and not isinstance(models, bytes):
        models = [models]
    elif isinstance(models, (bytes, dict)) or not hasattr(models, "__iter__"):
        raise ProfileError(f"models: expected a model path or a list of them, not {type(models).__name__}")
    groups = check_models(list(models), runtime)
    with utf8_names([p for paths in groups.values() for p in paths]) as names:
        if any(given != used for given, used in names.items()):
            groups = OrderedDict((rt, [names[p] for p in paths]) for rt, paths in groups.items())
        shown = {used: printable(given) for given, used in names.items() if given != used}
        results = _profile(groups, target, runtime, session, remeasure, calibration, force, progress, notice, warn,
                           on_result, retries, variants, reference, shown)
    if getattr(results, "store_error", None):
        raise ProfileError(results.store_error, results)
    return results


def as_given(record, shown):
    """The record of a file reached through a UTF-8 link (shown: {link: name as given, its bytes
    shown as \\xNN}) named as given; any other record as it is."""
    return dict(record, path=shown[record["path"]]) if record.get("path") in (shown or {}) else record


def _profile(groups, target, runtime, session, remeasure, calibration, force, progress, notice, warn, on_result,
             retries, variants, reference, shown):
    from profiler import report, stability
    from profiler.sandbox import SandboxError

    results = Results(target=target)
    notice = notice or results.notices.append
    warn = warn or results.warnings.append
    variant_of, unmade = _add_variants(groups, variants, target, warn) if variants is not None else ({}, [])
    references = {path: v["_source"] for path, v in variant_of.items()}
    if reference is not None:
        found = check_models([reference], runtime)
        (reference,) = [p for paths in found.values() for p in paths]
        reference = next((used for used, given in shown.items() if given == printable(reference)), reference)
        if not any(reference in paths for paths in groups.values()):
            raise ProfileError(f"reference {reference}: is not one of the models profiled (give it as a model too)")
        if not target.data:
            raise ProfileError("reference: the agreement with a reference is measured on --data FILE.npz; give one")
        references.update({p: reference for paths in groups.values() for p in paths
                           if p != reference and p not in references})
    for warning in target.warnings:
        notice(f"warning: {warning}")
    predictor = None
    if calibration is not None:
        predictor = predictor_for(calibration, target, force, warn)
        if predictor.needs_op_profile() and not target.op_profile_runs:
            target = results.target = replace(target, op_profile_runs=20)  # the caller's Target stays as given
            notice("notice: the calibration uses per-operator times; profiling with --op-profile 20")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ProfileError(f"retries={retries!r}: a whole number of at least 0")
    store = session.store()
    backend = session.backend(target, list(groups), notice, warn)
    try:
        _measure(backend, target, groups, store, remeasure, predictor, progress, notice, warn, on_result,
                 results, stability.REMEASURE if retries is None else retries, references, shown)
    except SandboxError as exc:  # what was measured is in the store already
        raise ProfileError(str(exc)) from None
    for record in unmade:
        results.append(record)
        if on_result is not None:
            on_result(record)
    for i, record in enumerate(results):
        results[i] = as_given(record, shown)
    for record in results:
        if record.get("path") in variant_of:
            record["variant"] = {k: v for k, v in variant_of[record["path"]].items() if k != "_source"}
    results.warnings += report.cap_warnings(results)
    if predictor is not None:
        results.warnings += predictor.mix_advice(results)
    for record in results:
        results.warnings += [f"WARNING: {w}" for w in record.get("warnings") or []]
    return results


def _add_variants(groups, variants, target, warn):
    """Adds each model's variants to its runtime's group. Returns ({variant path: its `variant`
    object}, [error records of the variants that could not be made]): one model whose converter
    fails costs its own variant rows, never the run."""
    from profiler.harness.record import model_name
    from profiler.harness.runtimes import parse_input_shapes, runtime_for
    from profiler.variants import VariantError, calibration_samples, conversion_check, make, parse

    try:
        names = parse(variants if isinstance(variants, str) else ",".join(map(str, variants)))
    except VariantError as exc:
        raise ProfileError(str(exc)) from None
    shapes = parse_input_shapes(target.input_shapes) if target.input_shapes else None
    found, skipped, failed, calibrated = {}, [], [], None
    for runtime, paths in list(groups.items()):
        for path in list(paths):
            for name in names:
                try:
                    made = make(path, [name], target.data, skipped=skipped, shapes=shapes)
                except VariantError as exc:
                    failed.append({"model": f"{model_name(path)}.{name}", "path": path, "runtime": runtime,
                                   "status": "error", "error": str(exc), "flags": [],
                                   "variant": {"of": model_name(path), "kind": name}})
                    continue
                for kind, out, sha in made:
                    if out in found:  # int8 without data is int8-dynamic: asked for twice, made once
                        continue
                    groups.setdefault(runtime_for(out), []).append(out)  # a TorchScript file's are ONNX
                    found[out] = {"of": model_name(path), "kind": kind, "source_sha256": sha, "_source": path}
                    check = conversion_check(out)
                    if check is not None:  # a change of format, checked against its source when made
                        found[out]["conversion"] = check
                    if kind.endswith("int8-static"):
                        calibrated = calibrated or calibration_samples(target.data)  # the same data for all
                        found[out]["calibration"] = dict(calibrated)
                        if calibrated["scored"]:
                            warn(f"warning: {model_name(out)}: int8-static was calibrated on the first "
                                 f"{calibrated['samples']} samples of x_data, which are scored too; "
                                 "add an x_calibration array to the data file to keep them apart")
    for line in skipped:
        warn(f"warning: {line}")
    return found, failed


def _measure(backend, target, groups, store, remeasure, predictor, progress, notice, warn, on_result, results,
             retries, references=None, shown=None):
    from profiler import cores, sweep

    outputs = {}  # path -> the evaluation's outputs, for the agreement of a model with its reference
    total = sum(len(p) for p in groups.values())
    if store is not None and not remeasure:
        stored, groups, shaky = sweep.from_store(store, backend, target, groups)
        if stored:
            notice(f"{len(stored)} of {total} from the store (measured before for this target; --remeasure "
                   "measures them again)")
            for record in stored:
                if predictor is not None:
                    predictor.annotate(record)
                results.append(keep_outputs(record, outputs))
        if shaky:
            notice(f"{shaky} stored record(s) were unstable or disturbed; measuring them again")
        if store.skipped:
            notice(f"warning: {len(store.skipped)} unreadable row(s) of the store skipped ({store.skipped[0]}); "
                   "their models are measured again")
    if not groups:
        return
    choice = cores.for_target(target)  # free cores, claimed until this run ends
    if choice is not None:
        for line in choice.warnings:
            warn(line)
        target = replace(target, assigned_cores=choice.cores)
    try:
        _run(backend, target, groups, store, predictor, progress, notice, on_result, results, retries, choice,
             outputs, references, shown)
    finally:
        if choice is not None:
            choice.release()


def _run(backend, target, groups, store, predictor, progress, notice, on_result, results, retries, choice,
         outputs=None, references=None, shown=None):
    from profiler import stability, sweep
    from profiler.interrupts import undivided
    from profiler.store import StoreError

    bar = _progress(sum(len(p) for p in groups.values()), progress)
    outputs = {} if outputs is None else outputs

    def save(record):
        if store is not None and not getattr(results, "store_error", None):
            try:
                store.save(record)
            except StoreError as exc:  # the measurement stands; the store is reported once, at the end
                results.store_error = str(exc)

    def public(record):
        return as_given(record, shown)

    def finish(record, index=None):
        """Cores, card and prediction added, then the results (appended, or row `index` replaced: the
        same model measured again), the exports and the store gain the row together."""
        if choice is not None:
            record["cores"] = dict(choice.info)
        add_card(record, target)
        if predictor is not None:
            predictor.annotate(record)
        kept = keep_outputs(record, outputs)
        with undivided():
            if index is None:
                results.append(kept)
            else:
                results[index] = kept
            if on_result is not None:
                on_result(public(kept))  # the same model again: exports replace its row
            save(public(record))  # the store keeps the outputs, for the agreement of a later run's variants

    def one(record):
        finish(record)
        bar.update(1)
        bar.set_postfix_str(f"{record['model']}: {record['status']}")

    try:
        sweep.run_all(backend, target, groups, one)
    finally:
        bar.close()
    fresh = {i: r for i, r in enumerate(results) if not r.get("from_store")}
    if retries and any(stability.shaky(r) for r in fresh.values()) and not backend.cancelled:
        changed, made = stability.remeasure(fresh, lambda again, emit: sweep.run_all(backend, target, again, emit),
                                            retries)
        for i, record in changed.items():
            finish(record, i)
        notice(f"{made} unstable or disturbed measurement(s) taken again; the steadiest of each kept")
    if references:
        for record in add_agreement(results, outputs, references):
            if not record.get("from_store"):
                full = dict(record, accuracy=dict(record["accuracy"], outputs=outputs[record["path"]][1]))
                save(public(full))


def keep_outputs(record, outputs):
    """The record as results and exports show it, without the evaluation's raw outputs (kept in
    `outputs` by path, with their packed form, for the agreement with a reference)."""
    accuracy = record.get("accuracy")
    if not isinstance(accuracy, dict) or "outputs" not in accuracy:
        return record
    from profiler.harness.evaluate import unpack_outputs

    unpacked = unpack_outputs(accuracy["outputs"])
    if unpacked is not None and record.get("path"):
        outputs[record["path"]] = (unpacked, accuracy["outputs"])
    return dict(record, accuracy={k: v for k, v in accuracy.items() if k != "outputs"})


def add_agreement(results, outputs, references):
    """Each model with a reference (a variant's original, or the one given as reference) gains
    accuracy.agreement; returns the records that changed."""
    from profiler.harness.evaluate import agreement

    changed = []
    names = {r.get("path"): r.get("model") for r in results}
    for i, record in enumerate(results):
        reference = references.get(record.get("path"))
        if reference is None or reference == record.get("path") or not isinstance(record.get("accuracy"), dict):
            continue
        if record.get("path") not in outputs or reference not in outputs:
            continue
        if (record.get("accuracy") or {}).get("data_sha256") != _data_sha(results, reference):
            continue
        found = agreement(outputs[reference][0], outputs[record["path"]][0], names.get(reference))
        if found is not None:
            results[i] = dict(record, accuracy=dict(record["accuracy"], agreement=found))
            changed.append(results[i])
    return changed


def _data_sha(results, path):
    return next(((r.get("accuracy") or {}).get("data_sha256") for r in results if r.get("path") == path), None)


def add_card(record, target):
    if record.get("status") != "ok":
        return
    try:
        from profiler.analysis import model_card

        record["model_card"] = model_card(record["path"], target, shapes=record.get("input_shapes"))
        record["precision"] = record["model_card"].get("precision")
    except Exception as exc:  # a card is extra information; it never fails a measurement
        record["model_card"] = {"error": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}


def _progress(total, show):
    from tqdm import tqdm

    return tqdm(total=total, unit="model", desc="profiling", file=sys.stderr,
                disable=True if not show or total < 2 else None, leave=False)
