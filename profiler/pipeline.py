"""The profile pipeline: target -> backend -> records -> store and exports -> report."""

import os
import sys

from profiler import export, report
from profiler.api import ProfileError, check_models
from profiler.api import profile as profile_models
from profiler.config import SETTINGS, ConfigError, TargetDevice
from profiler.escape import printable_text
from profiler.harness.files import check_writable, clobbered_input, is_special, printable


PipelineError = ProfileError  # the command's name for the API's one-line error


def _out(lines):
    for line in lines:
        print(printable_text(line))


def _err(line):
    print(printable_text(line), file=sys.stderr)


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


OVERRIDE_KEYS = tuple(key for key, option, _ in SETTINGS if option)  # the settings `profile` has options for


def profile(opts, notice, load_calibration=None):
    """`profile`: check the options and outputs, run the API's profile with exports after every model, print.
    load_calibration(path): the command layer's loader of --calibration FILE (a PipelineError of one line
    when the file is not a calibration); `profiler` itself never imports the calibration package."""
    settings = {key.lower(): getattr(opts, key, None) for key in OVERRIDE_KEYS}
    try:
        target = TargetDevice.from_env(opts.env, **settings)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    groups = check_models(opts.models, opts.runtime)
    check_outputs(opts)

    if opts.card_only:
        for warning in target.warnings:
            notice(f"warning: {warning}")
        return card_only(opts, target, groups)

    exports = Exports(opts)
    calibration = None
    if opts.calibration:
        if load_calibration is None:
            raise PipelineError("--calibration: this command cannot read calibration files")
        calibration = load_calibration(opts.calibration)
    store = None if opts.no_store else store_for(opts)
    try:
        records = profile_models(opts.models, target, runtime=opts.runtime, store=store,
                                 remeasure=getattr(opts, "remeasure", False), calibration=calibration,
                                 force=opts.force, progress=not opts.quiet, notice=notice, retries=opts.retries,
                                 variants=getattr(opts, "variants", None), reference=getattr(opts, "reference", None),
                                 warn=_err, on_result=exports.add)
        store_error = None
    except ProfileError as exc:
        if exc.results is None:
            raise
        records, store_error = exc.results, str(exc)
    finally:
        if store is not None:
            store.close()
    exports.write(records, final=True)  # the store's records too, in the order given

    print_results(opts, records, target)
    try:
        figures = write_figures(opts, records, calibration)
    except OSError as exc:  # a full disk, a read-only or virtual folder: one line, the rest is saved
        raise PipelineError(f"{exc.filename or opts.html or opts.plot}: could not write ({exc.strerror or exc})") \
            from None
    if store_error:
        saved = [option for option in ("json", "csv", "markdown", "html") if getattr(opts, option, None)]
        raise PipelineError(store_error + (f"; the results are in --{', --'.join(saved)}" if saved
                                           else "; the results above were not saved"))
    for path in figures:
        notice(f"wrote {path}")
    return records


class Exports:
    """The --json/--csv/--markdown files, written after every model so that an interrupted run keeps what
    it measured; a FIFO or a device is written once, at the end (its reader takes one document)."""

    def __init__(self, opts):
        self.opts = opts
        self.so_far = {}  # (runtime, path) -> record: a model measured again replaces its row
        if opts.csv:
            import pandas  # noqa: F401  imported now, so writing the CSV after each model is quick

    def add(self, record):
        self.so_far[(record.get("runtime"), record.get("path"))] = record
        self.write(list(self.so_far.values()))

    def write(self, records, final=False):
        try:
            for option, write in (("json", export.write_json), ("csv", export.write_csv),
                                  ("markdown", export.write_markdown)):
                path = getattr(self.opts, option, None)
                if path and (final or not is_special(path)):
                    write(path, records)
        except OSError as exc:  # e.g. the disk filled up; the sandbox is removed on the way out
            raise PipelineError(f"{exc.filename}: {exc.strerror}") from None


def check_outputs(opts):
    """Every output writable and none of them an input of this run (the env file, the calibration, the
    store, a model), before anything is measured."""
    outputs = {f"--{option}": getattr(opts, option, None) for option in ("json", "csv", "markdown", "html")}
    inputs = {"the env file": opts.env, "the calibration file": getattr(opts, "calibration", None),
              "the results store": None if opts.no_store else opts.store}
    inputs.update({f"the model file {path}": path for path in opts.models})
    clash = clobbered_input(outputs, inputs)
    if clash:
        raise PipelineError(clash)
    for option, path in outputs.items():
        check_output(path, option)
    if getattr(opts, "plot", None) and os.path.exists(opts.plot) and not os.path.isdir(opts.plot):
        raise PipelineError(f"--plot {opts.plot}: is a file, not a folder")


def store_for(opts):
    """The results store --store names, opened for this command."""
    from profiler.store import Store, StoreError

    try:
        return Store(opts.store, wait_s=getattr(opts, "store_wait", None) or 10.0)
    except StoreError as exc:
        raise PipelineError(str(exc)) from None


def print_results(opts, records, target):
    """The table, the ranking, the front and the overhead on stdout; warnings and failed rows on stderr."""
    _out(report.results_table(records))
    sections = [report.ranking(records),
                report.front_lines(records, getattr(opts, "budget_ms", None), getattr(opts, "min_accuracy", None),
                                   target.device_ram_mb),
                None if opts.quiet else report.overhead_lines(records)]
    for lines in sections:
        if lines:
            print()
            _out(lines)
    for line in records.warnings:
        _err(line)
    for record in records:
        if record["status"] == "error":
            _err(f"profile: error: {record['error']}")
        elif record["status"] in ("oom", "timeout"):
            _err(f"profile: {record['model']}: {record['status']}: {record['error']}")


def write_figures(opts, records, calibration=None):
    """--plot: the latency distribution and accuracy-front figures; --html: the report with them inline.
    Returns the written paths."""
    written = []
    if getattr(opts, "plot", None):
        from profiler.figures import accuracy_front, latency_distribution

        for path in (latency_distribution(records, opts.plot),
                     accuracy_front(records, opts.plot, budget_ms=getattr(opts, "budget_ms", None),
                                    min_accuracy=getattr(opts, "min_accuracy", None))):
            if path:
                written.append(path)
    if getattr(opts, "html", None):
        from profiler.html_report import profile_report

        profile_report(opts.html, records, calibration=calibration, budget_ms=getattr(opts, "budget_ms", None),
                       min_accuracy=getattr(opts, "min_accuracy", None))
        written.append(opts.html)
    return written


def card_only(opts, target, groups):
    from profiler.analysis import model_card
    from profiler.harness.files import utf8_names

    with utf8_names([p for paths in groups.values() for p in paths]) as names:
        return _cards(opts, target, groups, names, model_card)


def _cards(opts, target, groups, names, model_card):
    cards = []
    for paths in groups.values():
        for given in paths:
            path = printable(given)  # a name that is not UTF-8 text, its bytes shown as \xNN
            name = os.path.splitext(os.path.basename(path))[0]
            try:
                card = model_card(names[given], target)
            except Exception as exc:  # a bad file is one error row; the other cards are still made
                text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                text = text if text.startswith(path) else f"{path}: no model card ({text})"
                _err(f"{name}: error: {text}")
                cards.append({"model": name, "path": path, "status": "error", "error": text, "model_card": {}})
            else:
                _out(report.card_lines(path, card))
                cards.append({"model": name, "path": path, "status": "ok", "model_card": card})
            if opts.json:
                export.write_json(opts.json, cards)
            if opts.csv:
                export.write_card_csv(opts.csv, cards)
    return cards
