"""One `profile` call's measurements: the store's records first, then the sweep on claimed cores, each
record finished (cores, card, prediction) and kept in the results, the exports and the store together;
shaky measurements taken again; the agreement of each model with its reference last."""

import sys
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from profiler.errors import ProfileError


@dataclass(frozen=True)
class Request:
    """What a `profile` call asks for beyond its models and target (see `profiler.profile`)."""

    runtime: Optional[str] = None
    remeasure: bool = False
    calibration: Any = None
    force: bool = False
    progress: bool = False
    notice: Optional[Callable] = None
    warn: Optional[Callable] = None
    on_result: Optional[Callable] = None
    retries: Optional[int] = None
    variants: Any = None
    reference: Any = None

    @classmethod
    def from_options(cls, options):
        """A Request from `profile`'s keyword options; an unknown one is a ProfileError naming it."""
        from profiler.values import unknown_option

        problem = unknown_option(options, cls.__dataclass_fields__, "profile")
        if problem:
            raise ProfileError(problem)
        request = cls(**options)
        if request.variants is not None and not (isinstance(request.variants, str) or (
                isinstance(request.variants, (list, tuple)) and all(isinstance(v, str) for v in request.variants))):
            raise ProfileError(f"variants: expected a text such as 'int8,fp16' or a list of kinds, not "
                               f"{type(request.variants).__name__}")
        if request.on_result is not None and not callable(request.on_result):
            raise ProfileError(f"on_result: expected a function of one record, not {type(request.on_result).__name__}")
        retries = request.retries
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise ProfileError(f"retries={retries!r}: a whole number of at least 0")
        return request


class Batch:
    """The measurements of one request: `measure(groups)` fills `results` (and the store and the
    request's `on_result`). predictor: annotates each record with its predicted device figures;
    references: {model path: the path whose outputs it is compared with}; shown: {path used: the
    name as given} for files reached through a UTF-8 link."""

    def __init__(self, backend, target, store, results, request, predictor=None, references=None, shown=None):
        self.backend, self.target, self.store, self.results = backend, target, store, results
        self.request, self.predictor = request, predictor
        self.references, self.shown = references or {}, shown or {}
        self.outputs = {}  # path -> the evaluation's outputs, for the agreement of a model with its reference
        self.choice = None

    def measure(self, groups):
        """The store's records of these models (unless the request remeasures), then the rest measured."""
        from profiler import cores, stability, sweep

        store, notice = self.store, self.request.notice
        total = sum(len(p) for p in groups.values())
        if store is not None and not self.request.remeasure:
            stored, groups, shaky = sweep.from_store(store, self.backend, self.target, groups)
            if stored:
                notice(f"{len(stored)} of {total} from the store (measured before for this target; --remeasure "
                       "measures them again)")
                for record in stored:
                    if self.predictor is not None:
                        self.predictor.annotate(record)
                    self.results.append(keep_outputs(record, self.outputs))
            if shaky:
                notice(f"{shaky} stored record(s) were unstable or disturbed; measuring them again")
            if store.skipped:
                notice(f"warning: {len(store.skipped)} unreadable row(s) of the store skipped ({store.skipped[0]}); "
                       "their models are measured again")
        if not groups:
            return
        self.choice = cores.for_target(self.target)  # free cores, claimed until this run ends
        if self.choice is not None:
            for line in self.choice.warnings:
                self.request.warn(line)
            self.target = replace(self.target, assigned_cores=self.choice.cores)
        try:
            self.sweep(groups)
            self.remeasure_shaky(stability.REMEASURE if self.request.retries is None else self.request.retries)
            self.agree()
        finally:
            if self.choice is not None:
                self.choice.release()

    def sweep(self, groups):
        from profiler import sweep

        bar = progress_bar(sum(len(p) for p in groups.values()), self.request.progress)

        def one(record):
            self.finish(record)
            bar.update(1)
            bar.set_postfix_str(f"{record['model']}: {record['status']}")

        try:
            sweep.run_all(self.backend, self.target, groups, one)
        finally:
            bar.close()

    def remeasure_shaky(self, retries):
        """Unstable or disturbed fresh measurements taken again (up to `retries` times); the steadiest kept."""
        from profiler import stability, sweep

        fresh = {i: r for i, r in enumerate(self.results) if not r.get("from_store")}
        if not retries or not any(stability.shaky(r) for r in fresh.values()) or self.backend.cancelled:
            return
        changed, made = stability.remeasure(
            fresh, lambda again, emit: sweep.run_all(self.backend, self.target, again, emit), retries)
        for i, record in changed.items():
            self.finish(record, i)
        self.request.notice(f"{made} unstable or disturbed measurement(s) taken again; the steadiest of each kept")

    def agree(self):
        """accuracy.agreement with each model's reference, saved with the outputs it was computed from."""
        if not self.references:
            return
        for record in add_agreement(self.results, self.outputs, self.references):
            if not record.get("from_store"):
                full = dict(record, accuracy=dict(record["accuracy"], outputs=self.outputs[record["path"]][1]))
                self.save(as_given(full, self.shown))

    def finish(self, record, index=None):
        """Cores, card and prediction added, then the results (appended, or row `index` replaced: the
        same model measured again), the exports and the store gain the row together."""
        from profiler.interrupts import undivided

        if self.choice is not None:
            record["cores"] = dict(self.choice.info)
        add_card(record, self.target)
        if self.predictor is not None:
            self.predictor.annotate(record)
        kept = keep_outputs(record, self.outputs)
        with undivided():
            if index is None:
                self.results.append(kept)
            else:
                self.results[index] = kept
            if self.request.on_result is not None:
                self.request.on_result(as_given(kept, self.shown))  # the same model again: exports replace its row
            self.save(as_given(record, self.shown))  # the store keeps the outputs, for a later run's agreement

    def save(self, record):
        from profiler.store import StoreError

        if self.store is not None and not getattr(self.results, "store_error", None):
            try:
                self.store.save(record)
            except StoreError as exc:  # the measurement stands; the store is reported once, at the end
                self.results.store_error = str(exc)


def as_given(record, shown):
    """The record of a file reached through a UTF-8 link (shown: {link: name as given, its bytes
    shown as \\xNN}) named as given; any other record as it is."""
    return dict(record, path=shown[record["path"]]) if record.get("path") in (shown or {}) else record


def add_variants(groups, variants, target, warn):
    """Adds each model's variants to its runtime's group. Returns ({variant path: its `variant`
    object}, [error records of the variants that could not be made]): one model whose converter
    fails costs its own variant rows, never the run."""
    from profiler.harness.record import model_name
    from profiler.harness.runtimes import parse_input_shapes, runtime_for
    from profiler.conversions import conversion_check
    from profiler.variants import VariantError, calibration_samples, make, parse

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
        if (record.get("accuracy") or {}).get("data_sha256") != data_sha(results, reference):
            continue
        found = agreement(outputs[reference][0], outputs[record["path"]][0], names.get(reference))
        if found is not None:
            results[i] = dict(record, accuracy=dict(record["accuracy"], agreement=found))
            changed.append(results[i])
    return changed


def data_sha(results, path):
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


def progress_bar(total, show):
    from tqdm import tqdm

    return tqdm(total=total, unit="model", desc="profiling", file=sys.stderr,
                disable=True if not show or total < 2 else None, leave=False)
