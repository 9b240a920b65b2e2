"""The profile pipeline: target -> backend -> records -> store and exports -> report."""

import os
import sys
from collections import OrderedDict

from profiler import export, report, sweep
from profiler.config import ConfigError, load_target
from profiler.harness import check_writable, clobbered_input, printable
from profiler.runtimes import ModelError, runtime_for
from profiler.sandbox import SandboxError, physical_first_cores, select_backend
from profiler.store import Store, StoreError


class PipelineError(Exception):
    """Anything that stops the run before a model is measured; one line."""


def _out(lines):
    for line in lines:
        print(line)


def check_models(paths, runtime):
    """Fail before any sandbox starts: every file must exist and have a known runtime."""
    groups = OrderedDict()
    for path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise PipelineError(f"{printable(path)}: the file name is not UTF-8 text; rename the file (the runtimes and "
                                "the Docker API take UTF-8 names only)") from None
        if os.path.isdir(path):
            raise PipelineError(f"{path}: is a folder, not a model file")
        if os.path.islink(path) and not os.path.exists(path):
            raise PipelineError(f"{path}: a symbolic link that leads nowhere (dangling, or a loop)")
        if os.path.exists(path) and not os.path.isfile(path):
            raise PipelineError(f"{path}: not a regular file (a FIFO, socket or device cannot be a model)")
        if not os.path.isfile(path):
            raise PipelineError(f"{path}: model file not found")
        if os.path.getsize(path) == 0:
            raise PipelineError(f"{path}: is empty (0 bytes), not a model")
        if not os.access(path, os.R_OK):
            raise PipelineError(f"{path}: model file is not readable")
        try:
            groups.setdefault(runtime_for(path, runtime), []).append(os.path.abspath(path))
        except ModelError as exc:
            raise PipelineError(str(exc)) from None
    return groups


def check_output(path, option):
    """Fail before measuring anything if a result file could not be written."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise PipelineError(f"{option} {path}: folder {folder} does not exist")
    try:
        check_writable(path)
    except OSError as exc:
        raise PipelineError(f"{option} {path}: {exc.strerror}") from None


def profile(opts, notice):
    overrides = {key: getattr(opts, key, None) for key in
                 ("DEVICE_NAME", "BACKEND", "CPUS", "CPU_SET", "MEMORY", "SWAP", "THREADS", "WARMUP",
                  "ITERATIONS", "BATCH", "TIMEOUT_S", "INPUT_SHAPES", "SEED", "BASE_IMAGE", "DEVICE_RAM",
                  "OP_PROFILE", "JOBS", "SLURM_PARTITION", "SLURM_ACCOUNT", "SLURM_ARGS", "SLURM_FOLDER",
                  "SSH_HOST", "SSH_PYTHON", "SSH_CONFIG")}
    if overrides.get("SSH_HOST") and not overrides.get("BACKEND"):
        overrides["BACKEND"] = "ssh"  # --on user@host
    try:
        target = load_target(opts.env, overrides, host_cores=physical_first_cores())
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    for warning in target.warnings:
        notice(f"warning: {warning}")
    groups = check_models(opts.models, opts.runtime)
    outputs = {f"--{option}": getattr(opts, option, None) for option in ("json", "csv", "markdown")}
    inputs = {"the env file": opts.env, "the calibration file": getattr(opts, "calibration", None),
              "the results store": None if opts.no_store else opts.store}
    inputs.update({f"the model file {path}": path for path in opts.models})
    clash = clobbered_input(outputs, inputs)
    if clash:
        raise PipelineError(clash)
    for option, path in outputs.items():
        check_output(path, option)

    if opts.card_only:
        from profiler.analysis import model_card

        cards = []
        for paths in groups.values():
            for path in paths:
                try:
                    card = model_card(path, target)
                except Exception as exc:  # a card of a bad file is a one-line error, never a traceback
                    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                    raise PipelineError(text if text.startswith(path) else f"{path}: no model card ({text})") from None
                _out(report.card_lines(path, card))
                cards.append({"model": os.path.splitext(os.path.basename(path))[0], "path": path,
                              "status": "ok", "model_card": card})
                if opts.json:
                    export.write_json(opts.json, cards)
                if opts.csv:
                    export.write_card_csv(opts.csv, cards)
        return None

    calibration = None
    if opts.calibration:
        from calibration.core import CalibrationError, Predictor, load

        try:
            calibration = Predictor(load(opts.calibration), force=opts.force, warn=notice,
                                    device_ram_mb=target.device_ram_mb)
        except CalibrationError as exc:
            raise PipelineError(str(exc)) from None
        if calibration.needs_op_profile() and not target.op_profile_runs:
            target.op_profile_runs = 20
            notice("notice: the calibration uses per-operator times; profiling with --op-profile 20")

    store = None
    if not opts.no_store:
        try:
            store = Store(opts.store)
        except StoreError as exc:
            raise PipelineError(str(exc)) from None
    try:
        backend = select_backend(target, notice=notice, runtimes=list(groups))
    except SandboxError as exc:
        raise PipelineError(str(exc)) from None

    records, store_errors = [], []
    total = sum(len(p) for p in groups.values())
    if store is not None and not getattr(opts, "remeasure", False):
        try:
            stored, groups = sweep.from_store(store, backend, target, groups)
        except SandboxError as exc:
            raise PipelineError(str(exc)) from None
        if stored:
            notice(f"{len(stored)} of {total} from the store (measured before for this target; --remeasure "
                   "measures them again)")
            for record in stored:
                if calibration is not None:
                    calibration.annotate(record)
                records.append(record)
    progress = _progress(sum(len(p) for p in groups.values()), opts.quiet)

    def on_result(record):
        add_card(record, target)
        if calibration is not None:
            calibration.annotate(record)
        records.append(record)
        # Exported after every model, so an interrupted run keeps what it measured.
        try:
            if opts.json:
                export.write_json(opts.json, records)
            if opts.csv:
                export.write_csv(opts.csv, records)
            if opts.markdown:
                export.write_markdown(opts.markdown, records)
        except OSError as exc:  # e.g. the disk filled up; the sandbox is removed on the way out
            raise PipelineError(f"{exc.filename}: {exc.strerror}") from None
        if store is not None and not store_errors:
            try:
                store.save(record)
            except StoreError as exc:  # the measurement and the exports stand; the store is reported once
                store_errors.append(str(exc))
        progress.update(1)
        progress.set_postfix_str(f"{record['model']}: {record['status']}")

    try:
        sweep.run_all(backend, target, groups, on_result)
    except SandboxError as exc:
        raise PipelineError(str(exc)) from None
    finally:
        progress.close()
        backend.close()
        if store is not None:
            store.close()

    _out(report.results_table(records))
    ranked = report.ranking(records)
    if ranked:
        print()
        _out(ranked)
    overhead = report.overhead_lines(records)
    if overhead and not opts.quiet:
        print()
        _out(overhead)
    for line in report.cap_warnings(records):
        print(line, file=sys.stderr)
    if calibration is not None:
        for line in calibration.mix_advice(records):
            print(line, file=sys.stderr)
    for record in records:
        for warning in record.get("warnings") or []:
            print(f"WARNING: {warning}", file=sys.stderr)
        if record["status"] == "error":
            print(f"profile: error: {record['error']}", file=sys.stderr)
        elif record["status"] in ("oom", "timeout"):
            print(f"profile: {record['model']}: {record['status']}: {record['error']}", file=sys.stderr)
    if store_errors:
        saved = [option for option in ("json", "csv", "markdown") if getattr(opts, option, None)]
        raise PipelineError(store_errors[0] + (f"; the results are in --{', --'.join(saved)}" if saved
                                               else "; the results above were not saved"))
    return records


def add_card(record, target):
    if record.get("status") != "ok":
        return
    try:
        from profiler.analysis import model_card

        record["model_card"] = model_card(record["path"], target, shapes=record.get("input_shapes"))
    except Exception as exc:  # a card is extra information; it never fails a measurement
        record["model_card"] = {"error": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}


def _progress(total, quiet):
    from tqdm import tqdm

    return tqdm(total=total, unit="model", desc="profiling", file=sys.stderr,
                disable=True if quiet or total < 2 else None, leave=False)
