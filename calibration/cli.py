"""`calibrate`: fit device ≈ a·host + b from device logs and host profiles; `calibrate predict`."""

import argparse
import os
import sys

EPILOG = """examples:
  calibrate pi5.csv --host host.json --out calib.json --plot figures/ --html calibration.html
  calibrate mobilenet.log squeezenet.log resnet.log --store profiles.db --out calib.json
  calibrate perf.txt --format ort_perf_test --model resnet18 --threads 2 --host host.json
  calibrate jtop.csv --model resnet18 --threads 4 --device-ram 4g --host host.json
  calibrate predict --calibration calib.json --host new_models.json

Device inputs: a CSV with model, threads and metric columns whose suffix gives the unit
(_us _ms _s _kb _mb _mib _bytes), the harness's own --csv/--json output, LiteRT/TFLite
benchmark_model logs, onnxruntime_perf_test output or a jetson-stats (jtop) CSV."""


def fit_parser():
    from calibration.importers import FORMATS

    parser = argparse.ArgumentParser(
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
    parser.add_argument("--runtime", choices=["onnx", "tflite", "torch"], help="use only host profiles of this runtime")
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
    parser.add_argument("--metric", action="append", help="fit only this device metric (repeatable)")
    parser.add_argument("--device-name", default="device", help="label for the figures")
    parser.add_argument("--out", metavar="FILE", help="write the calibration JSON here")
    parser.add_argument("--plot", metavar="DIR", help="write predicted-vs-measured figures (PNG + SVG) here")
    parser.add_argument("--html", metavar="FILE", help="write one self-contained HTML report of the fit (opens offline)")
    return parser


def predict_parser():
    parser = argparse.ArgumentParser(prog="calibrate predict",
                                     description="Predict device latency and memory for host results and rank them.")
    parser.add_argument("--calibration", required=True, metavar="FILE", help="calibration JSON from `calibrate --out`")
    parser.add_argument("--host", metavar="FILE", help="host results (`profile --json`/`--csv`; default: the store)")
    parser.add_argument("--store", metavar="PATH", default="profiles.db", help="SQLite store (default ./profiles.db)")
    parser.add_argument("--device-ram", metavar="SIZE", help="mark models whose predicted peak memory exceeds this")
    parser.add_argument("--force", action="store_true", help="predict even for another runtime or thread count")
    parser.add_argument("--json", metavar="FILE", help="write the annotated results here")
    return parser


def fail(message):
    print(f"calibrate: error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    from calibration.core import CalibrationError
    from calibration.importers import DeviceLogError
    from profiler.config import ConfigError

    try:
        if argv[:1] == ["predict"]:
            return predict(predict_parser().parse_args(argv[1:]))
        return fit(fit_parser().parse_args(argv))
    except (CalibrationError, DeviceLogError, ConfigError) as exc:
        return fail(str(exc))
    except OSError as exc:  # an output that cannot be written
        return fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        return 130


def fit(opts):
    from calibration import api, core, report
    from profiler.files import check_writable, clobbered_input

    inputs = {f"the device log {path}": path for path in opts.device}
    inputs.update({"the host results": opts.host, "the results store": None if opts.host else opts.store,
                   "the prior file": opts.prior if opts.prior not in ("auto", "none") else None})
    clash = clobbered_input({"--out": opts.out, "--html": opts.html}, inputs)
    if clash:
        raise core.CalibrationError(clash)
    for path in (opts.out, opts.html):
        if path:
            check_writable(path)  # before any work, so a bad path costs nothing
    if opts.plot and os.path.exists(opts.plot) and not os.path.isdir(opts.plot):
        raise core.CalibrationError(f"--plot {opts.plot}: is a file, not a folder")
    calibration = api.fit(opts.device or None, opts.host, method=opts.method, store=opts.store, runtime=opts.runtime,
                          metrics=opts.metric, fmt=opts.format, model=opts.model, threads=opts.threads,
                          device_ram=opts.device_ram, start=opts.start, end=opts.end, prior=opts.prior,
                          device_target=opts.device_target, skip_unsteady=opts.skip_unsteady)
    for line in report.fit_table(calibration.data):
        print(line)
    for line in calibration.warnings:
        print(line, file=sys.stderr)
    if opts.out:
        calibration.save(opts.out)
        print(f"saved {opts.out}")
    if opts.plot:
        for path in calibration.plot(opts.plot, opts.device_name):
            print(f"figure {path} (+ .svg)")
    if opts.html:
        from profiler.html_report import calibration_report

        calibration_report(opts.html, calibration.data, opts.device_name)
        print(f"report {opts.html}")
    return 0


def predict(opts):
    from calibration import api, core, report
    from profiler.export import write_json
    from profiler.files import check_writable, clobbered_input

    clash = clobbered_input({"--json": opts.json}, {"the calibration file": opts.calibration,
                                                     "the host results": opts.host,
                                                     "the results store": None if opts.host else opts.store})
    if clash:
        raise core.CalibrationError(clash)
    if opts.json:
        check_writable(opts.json)
    calibration = api.load(opts.calibration)
    records = calibration.annotate(core.load_host(opts.host, opts.store), force=opts.force, device_ram=opts.device_ram)
    for line in calibration.warnings:
        print(line, file=sys.stderr)
    for line in report.predictions(records):
        print(line)
    if opts.json:
        write_json(opts.json, records)
    return 0 if any(r.get("prediction") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
