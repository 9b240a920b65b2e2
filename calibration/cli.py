"""`calibrate`: fit device ≈ a·host + b from device logs and host profiles; `calibrate predict`; `calibrate suggest`."""

import argparse
import os
import sys

from calibration.errors import CalibrationError
from profiler.cli import Parser
from profiler.harness.runtimes import RUNTIMES
from profiler.escape import printable_text

EPILOG = """examples:
  calibrate pi5.csv --host host.json --out calib.json --plot figures/ --html calibration.html
  calibrate mobilenet.log squeezenet.log resnet.log --store profiles.db --out calib.json
  calibrate perf.txt --format ort_perf_test --model resnet18 --threads 2 --host host.json
  calibrate jtop.csv --model resnet18 --threads 4 --device-ram 4g --host host.json
  calibrate resnet18.txt mobilenet.txt squeezenet.txt --host host.json  # benchmark_app output, one per model
  calibrate predict --calibration calib.json --host new_models.json

Device inputs: a CSV with model, threads and metric columns whose suffix gives the unit
(_us _ms _s _kb _mb _mib _bytes), the harness's own --csv/--json output, LiteRT/TFLite
benchmark_model logs, onnxruntime_perf_test output, TensorRT trtexec output (a GPU row), OpenVINO
benchmark_app output (run with
-hint none -nstreams 1 -nthreads N -nireq 1 -api sync, as profile measures) or a jetson-stats
(jtop) CSV.

Exit status (as in `profile`): 0 on success; 1 when `calibrate predict` predicted nothing (a
runtime or thread-count mismatch; --force applies the fit anyway); 2 for bad input, with a
one-line error; 130 on Ctrl-C."""


def fit_parser():
    from calibration.importers import FORMATS

    parser = Parser(
        prog="calibrate", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Learn device ≈ a·host + b from a few models measured on the real device and on this host.")
    parser.add_argument("device", nargs="*", metavar="DEVICE_LOG", help="device measurements (see below)")
    parser.add_argument("--device-target", metavar="NAME",
                        help="take the device rows from the store: what `profile --on HOST` measured natively for "
                             "the target named NAME (DEVICE_NAME); host rows of that target pair with them by sha256")
    parser.add_argument("--host", metavar="FILE", help="host results from `profile --json` or `--csv` (default: the store)")
    parser.add_argument("--store", metavar="PATH", default="profiles.db", help="SQLite store of host results (default ./profiles.db)")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="device log format (default: detected)")
    parser.add_argument("--model", help="model name, for logs that do not name it (onnxruntime_perf_test, jtop)")
    parser.add_argument("--threads", type=int, help="thread count, for logs or CSVs that do not give it")
    parser.add_argument("--device-ram", metavar="SIZE", help="the device's RAM, e.g. 4g (jtop RAM is a fraction of it)")
    parser.add_argument("--start", metavar="TIME", help="jtop logs: first timestamp of the run, e.g. '2026-11-20 10:20:01'")
    parser.add_argument("--end", metavar="TIME", help="jtop logs: last timestamp of the run")
    parser.add_argument("--runtime", choices=RUNTIMES, help="use only host profiles of this runtime")
    parser.add_argument("--method", choices=["auto", "ols", "robust", "loglinear", "relative", "features"],
                        default="auto",
                        help="auto (default: the lowest leave-one-out error of ols, loglinear, relative and "
                             "features), ols (a·host + b), robust (Huber), loglinear (log space), relative "
                             "(r·host + model-card corrections, fitted on relative error, for references from "
                             "several architecture families) or features (per-operator-class and model-card "
                             "features, squared error)")
    parser.add_argument("--prior", default="auto", metavar="auto|none|FILE",
                        help="prior shape of the relative model's corrections, learned on public phone data: "
                             "auto (default: the shipped one for the references' runtime, if any), none, or a "
                             "prior JSON (experiments/mmb_phones/run.py --write-priors)")
    parser.add_argument("--skip-unsteady", action="store_true",
                        help="leave out references whose host figure is flagged unstable or disturbed (they are "
                             "named in a warning either way)")
    parser.add_argument("--force", action="store_true",
                        help="keep a fit on fewer than 3 references, which no leave-one-out error or interval can "
                             "check (refused without it)")
    parser.add_argument("--metric", action="append", help="fit only this device metric (repeatable)")
    parser.add_argument("--device-name", default="device", help="label for the figures")
    parser.add_argument("--out", metavar="FILE", help="write the calibration JSON here")
    parser.add_argument("--plot", metavar="DIR", help="write predicted-vs-measured figures (PNG + SVG) here")
    parser.add_argument("--html", metavar="FILE", help="write one self-contained HTML report of the fit (opens offline)")
    return parser


def predict_parser():
    parser = Parser(prog="calibrate predict",
                                     description="Predict device latency and memory for host results and rank them.")
    parser.add_argument("--calibration", required=True, metavar="FILE", help="calibration JSON from `calibrate --out`")
    parser.add_argument("--host", metavar="FILE", help="host results (`profile --json`/`--csv`; default: the store)")
    parser.add_argument("--store", metavar="PATH", default="profiles.db", help="SQLite store (default ./profiles.db)")
    parser.add_argument("--device-ram", metavar="SIZE", help="mark models whose predicted peak memory exceeds this")
    parser.add_argument("--force", action="store_true", help="predict even for another runtime or thread count")
    parser.add_argument("--device-threads", type=int, metavar="N",
                        help="the device thread count to predict, when the calibration maps the host profiles' "
                             "thread count to several")
    parser.add_argument("--json", metavar="FILE", help="write the annotated results here")
    return parser


SUGGEST_EPILOG = """examples:
  calibrate suggest --host candidates.json -k 10 > to_measure.txt
  profile --on pi5 --env env.template $(cat to_measure.txt)
  calibrate suggest --env env.template models/*.tflite -k 8 --json suggested.json
  calibrate suggest --host candidates.json --have measured.txt      # the one to measure next

The paths go to stdout, one per line; why each was chosen goes to stderr. The choice reads the
candidates' host profiles only (host latency, MACs, nodes, activation bytes, operator mix): the
first is the most typical candidate, each next one covers the candidates least like those before,
and the set spans the host latency range and every operator class the candidates lean on."""


def suggest_parser():
    parser = Parser(
        prog="calibrate suggest", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SUGGEST_EPILOG,
        description="Choose which candidate models to measure on the device as calibration references.")
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="candidate model files to profile on this host first (with --env); without them the "
                             "candidates are the host results of --host or the store")
    parser.add_argument("--env", metavar="FILE", help="target env file for profiling MODEL files (default: env.template "
                        "defaults)")
    parser.add_argument("--host", metavar="FILE", help="the candidates' host results (`profile --json`/`--csv`)")
    parser.add_argument("--store", metavar="PATH", default="profiles.db", help="SQLite store (default ./profiles.db)")
    parser.add_argument("--runtime", choices=RUNTIMES, help="only candidates of this runtime")
    parser.add_argument("--precision", metavar="NAME",
                        help="only candidates of this precision (fp32, fp16, 'int8 dynamic', 'int8 static'); "
                             "candidates that mix runtimes or precisions are refused, since each is fitted apart")
    parser.add_argument("-k", type=int, metavar="N",
                        help="how many references to suggest (default 10, or 1 more with --have)")
    parser.add_argument("--have", metavar="FILE",
                        help="references already measured: a device log or CSV, or one model name or path per line")
    parser.add_argument("--json", metavar="FILE", help="also write the suggestions with their reasons here")
    return parser


def have_names(path):
    """Model names from a device log/CSV, or the non-comment lines of a plain list."""
    from calibration.importers import DeviceLogError, detect, load

    if os.path.exists(path) and not os.path.isfile(path):
        raise DeviceLogError(f"--have {path}: not a regular file")
    try:
        detect(path)
    except DeviceLogError:
        try:
            with open(path, encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError) as exc:
            raise DeviceLogError(f"--have {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    return [row.model for row in load(path)]


def fail(message):
    print(f"calibrate: error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from calibration.importers import DeviceLogError
    from profiler.api import ProfileError
    from profiler.config import ConfigError

    try:
        if argv[:1] == ["predict"]:
            return predict(predict_parser().parse_args(argv[1:]))
        if argv[:1] == ["suggest"]:
            return suggest(suggest_parser().parse_args(argv[1:]))
        return fit(fit_parser().parse_args(argv))
    except (CalibrationError, DeviceLogError, ConfigError, ProfileError) as exc:
        return fail(str(exc))
    except OSError as exc:  # an output that cannot be written
        return fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        return 130


def fit(opts):
    from calibration import api, report
    from profiler.harness.files import check_writable, clobbered_input

    inputs = {f"the device log {path}": path for path in opts.device}
    inputs.update({"the host results": opts.host, "the results store": None if opts.host else opts.store,
                   "the prior file": opts.prior if opts.prior not in ("auto", "none") else None})
    clash = clobbered_input({"--out": opts.out, "--html": opts.html}, inputs)
    if clash:
        raise CalibrationError(clash)
    for path in (opts.out, opts.html):
        if path:
            check_writable(path)  # before any work, so a bad path costs nothing
    if opts.plot and os.path.exists(opts.plot) and not os.path.isdir(opts.plot):
        raise CalibrationError(f"--plot {opts.plot}: is a file, not a folder")
    calibration = api.fit(opts.device or None, opts.host, method=opts.method, store=opts.store, runtime=opts.runtime,
                          metrics=opts.metric, fmt=opts.format, model=opts.model, threads=opts.threads,
                          device_ram=opts.device_ram, start=opts.start, end=opts.end, prior=opts.prior,
                          device_target=opts.device_target, skip_unsteady=opts.skip_unsteady, force=opts.force)
    for line in report.fit_table(calibration):
        print(printable_text(line))
    for line in calibration.warnings:
        print(printable_text(line), file=sys.stderr)
    if opts.out:
        calibration.save(opts.out)
        print(f"saved {opts.out}")
    if opts.plot:
        for path in calibration.plot(opts.plot, opts.device_name):
            print(f"figure {path} (+ .svg)")
    if opts.html:
        from calibration.html import calibration_report

        calibration_report(opts.html, calibration, opts.device_name)
        print(f"report {opts.html}")
    return 0


def predict(opts):
    from calibration import api, report
    from calibration.hostdata import load_host
    from profiler.export import write_json
    from profiler.harness.files import check_writable, clobbered_input

    clash = clobbered_input({"--json": opts.json}, {"the calibration file": opts.calibration,
                                                     "the host results": opts.host,
                                                     "the results store": None if opts.host else opts.store})
    if clash:
        raise CalibrationError(clash)
    if opts.json:
        check_writable(opts.json)
    calibration = api.load(opts.calibration)
    records = calibration.annotate(load_host(opts.host, opts.store), force=opts.force, device_ram=opts.device_ram,
                                   device_threads=opts.device_threads)
    for line in calibration.warnings:
        print(printable_text(line), file=sys.stderr)
    for line in report.predictions(records):
        print(printable_text(line))
    if opts.json:
        write_json(opts.json, records)
    from profiler.cli import exit_status

    return exit_status(records, predicted=True)


def suggest(opts):
    from calibration.references import suggest as choose
    from profiler.export import write_json
    from profiler.harness.files import check_writable, clobbered_input

    clash = clobbered_input({"--json": opts.json}, {"the host results": opts.host, "the --have list": opts.have,
                                                     "the results store": opts.store})
    if clash:
        raise CalibrationError(clash)
    if opts.json:
        check_writable(opts.json)
    if opts.k is not None and opts.k < 1:
        raise CalibrationError(f"-k {opts.k}: suggest at least 1 reference")
    if opts.models and opts.host:
        raise CalibrationError("give candidate MODEL files or --host results, not both")
    have = have_names(opts.have) if opts.have else []
    host = opts.host
    if opts.models:
        import profiler

        print(f"profiling {len(opts.models)} candidate(s) on this host", file=sys.stderr)
        target = profiler.Target.from_env(opts.env)
        results = profiler.profile(opts.models, target, store=opts.store, runtime=opts.runtime, progress=True)
        for line in results.warnings:
            print(printable_text(line), file=sys.stderr)
        host = list(results)
    picks = choose(host, k=opts.k, have=have, runtime=opts.runtime, store=opts.store, precision=opts.precision)
    new = [p for p in picks if not p["measured"]]
    if not new:
        print(f"all {len(picks)} candidates are already measured references; none left to add", file=sys.stderr)
        return 0
    print(f"{len(new)} reference(s) to measure on the device, in this order"
          + (f" (after the {len(picks) - len(new)} already measured)" if have else "") + ":", file=sys.stderr)
    for number, pick in enumerate(new, start=1):
        print(printable_text(f"  {number}. {pick['model']}: {pick['reason']}"), file=sys.stderr)
    for pick in new:
        print(printable_text(pick["path"] or pick["model"]))
    if opts.json:
        write_json(opts.json, picks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
