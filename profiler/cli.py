"""`profile`: measure models under a target device's caps. Parses, then runs the pipeline."""

import argparse
import os
import sys

from profiler.config import SETTINGS
from profiler.harness.supervisor import non_negative_int
from profiler.harness.runtimes import RUNTIMES


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is what --help is for)."""

    def error(self, message):
        from profiler.escape import printable_text

        self.exit(2, f"{self.prog}: error: {printable_text(message)} (see {self.prog} --help)\n")


def _front_limit(name):
    """An argparse type for one front filter (--budget-ms, --min-accuracy), checked as the API checks it."""
    def parse(text):
        from profiler.report import front_limit_problem

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        problem = front_limit_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def store_wait(text):
    import math

    value = float(text)
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"seconds between 0 and 3600, got {text}")
    return value

EPILOG = """examples:
  profile --env env.template model.tflite other.onnx net.pt --json results.json
  profile --env env.template --cpus 2 --memory 1g --iterations 500 model.onnx
  profile --env env.template --calibration calib.json a.tflite b.tflite   # predict and rank
  profile --env env.template --html report.html --plot figures/ *.onnx    # a report to share
  profile --env env.template --cpus 1 --jobs 2 zoo/*.onnx       # two sandboxes at once, one core each
  profile --env env.template --backend slurm --jobs 64 --slurm-partition cpu nb201/*.onnx
  profile --env pi5.env --on pi@raspberrypi refs/*.onnx         # natively on the device, into the store

Every timed run's wait for a core is read (/proc schedstat): runs that waited are left out of the
figures when enough others remain, and a record whose figures are still shaky is flagged (unstable,
disturbed), measured again (--retries) and never served from the store as if it were steady.

Settings come from the env file (see env.template); an option overrides the key it names
(--cpus CPUS overrides CPUS).
Results are saved in the SQLite store (./profiles.db) that `calibrate` reads.

Exit status (the same rule in `calibrate`): 0 when every model has a result (ok, oom and
timeout are results: what the model does under the caps) and, with --calibration, at least one
prediction; 1 when a model is an error row, or --calibration predicted nothing (a runtime or
thread-count mismatch); 2 for bad input, with a one-line error; 130 on Ctrl-C, 143 on SIGTERM."""

# The command-line overrides: every setting that has an option (one list, profiler.config.SETTINGS).
OVERRIDES = [(option, key, text) for key, option, text in SETTINGS if option]


def build_parser():
    parser = Parser(
        prog="profile", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Run each model in a sandbox capped to the target device's CPUs and memory, "
                    "with the runtime the device uses, and report latency, load time and peak memory.")
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".tflite, .onnx, .pt/.pth (TorchScript) or .pt2")
    parser.add_argument("--env", metavar="FILE", help="target device settings (python-dotenv format)")
    parser.add_argument("--runtime", choices=RUNTIMES, help="override the runtime chosen by extension")
    for option, key, text in OVERRIDES:
        parser.add_argument(option, dest=key, metavar=key, help=text)
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the results as a JSON list")
    out.add_argument("--csv", metavar="FILE", help="write the results as CSV")
    out.add_argument("--markdown", metavar="FILE", help="write the results table and ranking as markdown")
    out.add_argument("--html", metavar="FILE", help="write one self-contained HTML report (sortable table, ranking, "
                                                   "figures, target and caps) that opens offline")
    out.add_argument("--plot", metavar="DIR", help="write the figures (PNG + SVG) here: the latency distribution and, with "
                     "--data, accuracy against latency with the front")
    out.add_argument("--store", metavar="PATH", default="profiles.db", help="SQLite results store (default ./profiles.db)")
    out.add_argument("--no-store", action="store_true", help="do not save results in the store")
    out.add_argument("--store-wait", type=store_wait, default=10.0, metavar="S",
                     help="how long a save waits for a store another run is writing before it gives up "
                          "(default 10 s; the results still reach --json/--csv)")
    out.add_argument("--calibration", metavar="FILE", help="calibration JSON from `calibrate`: predict device figures and rank")
    out.add_argument("--force", action="store_true", help="use a calibration made for another runtime or thread count")
    out.add_argument("--remeasure", action="store_true",
                     help="measure again models the store already holds for this target (default: reuse them)")
    out.add_argument("--variants", metavar="LIST",
                     help="also profile variants of each model: int8 (static, calibrated on --data, or dynamic "
                          "without it), int8-dynamic, int8-static, fp16; tflite (the device's format, from ONNX or "
                          "TorchScript through onnx2tf, from a torch.export .pt2 through litert-torch, checked "
                          "against the source) and tflite-int8, "
                          "tflite-fp16, ... (variants of that TFLite file); a TorchScript file is exported to ONNX "
                          "first (variant onnx); made with torch's, onnxruntime's, onnx2tf's and ai-edge-quantizer's "
                          "own tools into a cache folder (the variants extra; `make convert-packages` for tflite)")
    out.add_argument("--reference", metavar="MODEL",
                     help="one of the models: with --data, every other model's outputs are compared with its "
                          "outputs (share with the same top class, max and mean absolute difference); a variant "
                          "is compared with its original without this")
    out.add_argument("--budget-ms", type=_front_limit("budget_ms"), metavar="MS",
                     help="the accuracy front keeps models at most this slow (predicted device ms with "
                          "--calibration, else host ms)")
    out.add_argument("--min-accuracy", type=_front_limit("min_accuracy"), metavar="SCORE",
                     help="the accuracy front keeps models at least this accurate (top-1 as a fraction, e.g. 0.95)")
    out.add_argument("--retries", type=non_negative_int, default=None, metavar="N",
                     help="measure a model whose figures are unstable or disturbed again, at most N times, and "
                          "keep the steadiest (default 2; 0: never)")
    out.add_argument("--card-only", action="store_true", help="print each model's static card and run nothing")
    out.add_argument("--quiet", action="store_true", help="no progress bar or notices")
    return parser


def fail(message, code=2):
    from profiler.escape import printable_text

    print(f"profile: error: {printable_text(message)}", file=sys.stderr)
    return code


DASH_VALUES = ("--slurm-args",)  # options whose value itself starts with "--"


def joined(argv):
    """`--slurm-args '--qos=low'` as `--slurm-args=--qos=low`, which argparse would otherwise refuse."""
    out, items = [], list(argv)
    while items:
        item = items.pop(0)
        if item in DASH_VALUES and items:
            item = f"{item}={items.pop(0)}"
        out.append(item)
    return out


def main(argv=None):
    opts = build_parser().parse_args(joined(sys.argv[1:] if argv is None else argv))
    from profiler.interrupts import Terminated, install

    install()
    try:
        return run(opts)
    except KeyboardInterrupt as exc:
        print("profile: interrupted; sandboxes removed", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # e.g. `profile --card-only … | head -1`: the reader has what it wanted
        try:
            sys.stdout = open(os.devnull, "w")  # nothing more reaches the closed pipe, not even at exit
        except OSError:
            pass
        return 141


def run(opts):
    from profiler.pipeline import PipelineError, profile

    from profiler.escape import printable_text

    notice = (lambda m: None) if opts.quiet else (lambda m: print(printable_text(m), file=sys.stderr))
    try:
        records = profile(opts, notice, load_calibration)
    except PipelineError as exc:
        return fail(str(exc))
    if records is None:
        return 0
    return exit_status(records, predicted=bool(getattr(opts, "calibration", None)))


def load_calibration(path):
    """--calibration FILE as the object `profile` predicts with. The commands are the one layer that
    imports both packages: `profiler`'s library modules never reach `calibration`."""
    from calibration import CalibrationError, load
    from profiler.pipeline import PipelineError

    try:
        return load(path)
    except CalibrationError as exc:
        raise PipelineError(str(exc)) from None


def exit_status(records, predicted=False):
    """0: every model has a result (ok, oom, timeout) and, when predictions were asked for, at least
    one has one; 1 otherwise (an error row, or nothing predicted)."""
    if not records or not all(r.get("status") in ("ok", "oom", "timeout") for r in records):
        return 1
    if predicted and not any(r.get("prediction") for r in records):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
