"""A replayable bad-input suite: named cases and seeded mutations of valid inputs, run through the
commands as a user would. It counts tracebacks, clobbered inputs and leftovers, and wants zero of each."""

import contextlib
import hashlib
import io
import json
import os
import random
import stat

import pytest

from tests.conftest import example, run_cli

SEEDS = range(3)
MUTATIONS_PER_SEED = 60


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def host_json(folder, values):
    """A `profile --json` export of the shape the commands read (one record per model)."""
    records = [{"model": f"m{i}", "sha256": None, "runtime": "onnx", "status": "ok", "threads": 1,
                "latency_ms": {"median": v}, "peak_memory_mb": 20.0 + i} for i, v in enumerate(values)]
    path = folder / "host.json"
    path.write_text(json.dumps(records))
    return path


DEVICE_CSV = "model,threads,latency_ms,peak_memory_mb\n" + "".join(
    f"m{i},1,{3.1 * (i + 1) + 0.4 * (i % 3):.3f},{40 + 2 * i}\n" for i in range(8))


def calibrate_in_process(*argv):
    """(exit code, stderr, escaped exception): the command's main() as the console script runs it."""
    from calibration.cli import main

    err, out = io.StringIO(), io.StringIO()
    escaped = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            code = exc.code
        except BaseException as exc:  # a traceback for the user
            code, escaped = None, exc
    return code, err.getvalue(), escaped


def mutate(text, rng):
    """One small corruption of a CSV: a token replaced by a hostile value, a separator added or dropped."""
    lines = text.splitlines()
    row = rng.randrange(1, len(lines))
    cells = lines[row].split(",")
    kind = rng.randrange(4)
    if kind == 0:
        cells[rng.randrange(len(cells))] = rng.choice(["nan", "inf", "-inf", "-1", "0", "1e400", "", "x", "1,5",
                                                       "0.5", "-0", "１", "\x00", "9" * 400])
    elif kind == 1:
        at = rng.randrange(len(cells))
        cells[at] = cells[at].replace(".", ",", 1)  # a decimal comma
    elif kind == 2:
        cells.insert(rng.randrange(len(cells) + 1), rng.choice(["", "1", "a"]))
    else:
        cells = cells[:rng.randrange(len(cells))]
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", SEEDS)
def test_mutated_device_logs_never_give_a_traceback(tmp_path, seed):
    rng = random.Random(seed)
    host = host_json(tmp_path, [1.0 + 0.5 * i + 0.1 * (i % 2) for i in range(8)])
    host_digest = digest(host)
    tracebacks, accepted, refused = [], 0, 0
    for case in range(MUTATIONS_PER_SEED):
        device = tmp_path / f"device_{case}.csv"
        device.write_text(mutate(DEVICE_CSV, rng))
        before = digest(device)
        out = tmp_path / f"calib_{case}.json"
        code, err, escaped = calibrate_in_process(device, "--host", host, "--out", out, "--method", "ols")
        if escaped is not None:
            tracebacks.append((device.read_text(), repr(escaped)))
            continue
        assert digest(device) == before and digest(host) == host_digest  # inputs never clobbered
        if code == 0:
            accepted += 1
            assert json.loads(out.read_text())["fits"]  # what was accepted is a complete calibration
        else:
            refused += 1
            assert code == 2 and err.count("\n") == 1 and err.startswith("calibrate: error: "), err
            assert not out.exists()  # nothing half-written
    assert tracebacks == [], tracebacks[:3]
    assert refused > 0 and accepted > 0, (accepted, refused)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def bad_csv(tmp_path, text, name="device.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("text, message", [
    ("model,threads,latency_ms\na,1,0\nb,1,2\nc,1,3\n", "must be greater than 0"),
    ("model,threads,latency_ms\na,1,-4\nb,1,2\nc,1,3\n", "must be greater than 0"),
    ("model,threads,latency_ms\na,nan,1\nb,1,2\nc,1,3\n", "not a finite number"),
    ("model,threads,latency_ms\na,inf,1\nb,1,2\nc,1,3\n", "not a finite number"),
    ("model,threads,latency_ms\na,0,1\nb,1,2\nc,1,3\n", "not a thread count"),
    ("model,threads,latency_ms\na,1.5,1\nb,1,2\nc,1,3\n", "not a thread count"),
    ("model,threads,latency_ms\na,1,1,5\nb,1,2\nc,1,3\n", "decimal comma"),
    ("model,threads,latency_ms\na,1," + "9" * 140_000 + "\nb,1,2\n", "not readable as CSV"),
])
def test_wrong_device_data_names_file_and_line(tmp_path, text, message):
    host = host_json(tmp_path, [1.0, 2.0, 3.0])
    device = bad_csv(tmp_path, text)
    code, err, escaped = calibrate_in_process(device, "--host", host)
    assert escaped is None and code == 2, (err, escaped)
    assert message in err and str(device) in err and err.count("\n") == 1, err


def test_a_spreadsheet_csv_with_a_bom_is_read(tmp_path):
    host = host_json(tmp_path, [1.0, 2.0, 3.5, 4.0])
    device = bad_csv(tmp_path, "model,threads,latency_ms\nm0,1,3.1\nm1,1,6.0\nm2,1,10.4\nm3,1,12.2\n",
                     encoding="utf-8-sig")
    code, err, escaped = calibrate_in_process(device, "--host", host, "--method", "ols")
    assert escaped is None and code == 0, err


def test_degenerate_references_are_refused(tmp_path):
    host = host_json(tmp_path, [2.0, 2.0, 2.0, 2.0])
    device = bad_csv(tmp_path, "model,threads,latency_ms\nm0,1,3\nm1,1,4\nm2,1,5\nm3,1,6\n")
    code, err, escaped = calibrate_in_process(device, "--host", host, "--out", tmp_path / "c.json")
    assert escaped is None and code == 2 and "the same host value" in err, err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("content, message", [
    ("[1, 2, 3]", "not a harness record"), ('[{"status": "ok", "model": "a"}]', "lacks model or latency_ms"),
    ('{"status": "ok", "model": "a", "threads": 0, "latency_ms": {"median": 1}}', "not a thread count")])
def test_harness_json_that_is_not_records(tmp_path, content, message):
    host = host_json(tmp_path, [1.0, 2.0, 3.0])
    device = tmp_path / "device.json"
    device.write_text(content)
    code, err, escaped = calibrate_in_process(device, "--host", host)
    assert escaped is None and code == 2 and message in err, err


def test_benchmark_model_log_cut_mid_line(tmp_path):
    from tests.conftest import SHARED

    log = os.path.join(SHARED, "reference", "device-logs", "tflite_benchmark_model_recent.log")
    if not os.path.exists(log):
        pytest.skip("../shared/reference is absent")
    text = open(log).read()
    cut = text.index("count=", text.rindex("count=")) + 12  # inside the timed runs' line
    device = tmp_path / "cut.log"
    device.write_text(text[:cut])
    code, err, escaped = calibrate_in_process(device, "--host", host_json(tmp_path, [1.0, 2.0]))
    assert escaped is None and code == 2 and "cut short" in err, err


def test_a_host_csv_that_is_not_utf8(tmp_path):
    device = bad_csv(tmp_path, DEVICE_CSV)
    host = tmp_path / "host.csv"
    host.write_bytes(b"model,threads,latency_median_ms,status\n\xff\xfe,1,2,ok\n")
    code, err, escaped = calibrate_in_process(device, "--host", host)
    assert escaped is None and code == 2 and "not UTF-8" in err, err


@pytest.mark.parametrize("edit", ["fits", "host_range", "coef", "kind"])
def test_an_edited_calibration_is_refused_before_any_measurement(tmp_path, edit):
    host = host_json(tmp_path, [1.0 + i for i in range(6)])
    device = bad_csv(tmp_path, "model,threads,latency_ms\n" + "".join(f"m{i},1,{3 * (i + 1) + 0.1 * i}\n"
                                                                      for i in range(6)))
    calib = tmp_path / "calib.json"
    code, err, _ = calibrate_in_process(device, "--host", host, "--out", calib, "--method", "ols")
    assert code == 0, err
    data = json.loads(calib.read_text())
    if edit == "fits":
        del data["fits"]
    elif edit == "host_range":
        del data["fits"][0]["host_range"]
    elif edit == "coef":
        data["fits"][0]["model"]["coef"] = ["x"]
    else:
        data["fits"][0]["model"]["kind"] = "magic"
    calib.write_text(json.dumps(data))
    code, err, escaped = calibrate_in_process("predict", "--calibration", calib, "--host", host)
    assert escaped is None and code == 2 and "not a usable calibration" in err, err
    # profile --calibration refuses it before measuring (no sandbox is started: it fails in well under a run)
    done = run_cli("profile", "--backend", "local", "--no-store", "--calibration", calib, example("tiny_cnn.onnx"),
                   timeout=60)
    assert done.returncode == 2 and "not a usable calibration" in done.stderr and "Traceback" not in done.stderr


def test_outputs_never_clobber_inputs_or_special_files(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(open(example("tiny_cnn.onnx"), "rb").read())
    env = tmp_path / "device.env"
    env.write_text("CPUS=1\nITERATIONS=3\nWARMUP=0\n")
    before = {p: digest(p) for p in (model, env)}
    for args in (["--json", model, model], ["--csv", env, "--env", env, model], ["--json", tmp_path / "x.json",
                                                                                 "--csv", tmp_path / "x.json", model]):
        done = run_cli("profile", "--backend", "local", "--no-store", *args, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
    assert {p: digest(p) for p in (model, env)} == before
    device = bad_csv(tmp_path, DEVICE_CSV)
    device_digest = digest(device)
    code, err, _ = calibrate_in_process(device, "--host", host_json(tmp_path, [1.0 + i for i in range(8)]),
                                        "--out", device)
    assert code == 2 and "an input of this run" in err and digest(device) == device_digest
    # A FIFO output is written through, not replaced by a regular file.
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    import subprocess
    import sys

    from tests.conftest import ROOT

    child = subprocess.Popen([sys.executable, "-m", "profiler.cli", "--backend", "local", "--no-store", "--env", env,
                              "--json", fifo, model], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(fifo) as reader:
        received = reader.read()
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    assert json.loads(received)[0]["status"] == "ok"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("make, message", [
    (lambda d: os.mkfifo(d / "pipe.onnx"), "not a regular file"),
    (lambda d: (os.symlink(d / "b.onnx", d / "a.onnx"), os.symlink(d / "a.onnx", d / "b.onnx")), "leads nowhere")])
def test_models_that_are_not_files_are_named_as_such(tmp_path, make, message):
    make(tmp_path)
    model = next(p for p in sorted(tmp_path.iterdir()))
    done = run_cli("profile", "--backend", "local", "--no-store", model, timeout=60)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_an_empty_model_file_is_one_error_row_and_the_others_run(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    out = tmp_path / "r.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--json", out, empty,
                   example("tiny_cnn.onnx"), timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    records = json.loads(out.read_text())
    assert [r["status"] for r in records] == ["error", "ok"]
    assert records[0]["error"] == "empty.onnx: is empty (0 bytes), not a model"
    cards = tmp_path / "cards.json"
    done = run_cli("profile", "--card-only", "--json", cards, empty, example("tiny_cnn.onnx"), timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert [c["status"] for c in json.loads(cards.read_text())] == ["error", "ok"]
    assert "empty: error:" in done.stderr and "is empty (0 bytes)" in done.stderr
    assert "tiny_cnn" in done.stdout


def test_a_torch_export_file_that_is_not_one_is_one_line_for_its_card(tmp_path):
    pytest.importorskip("torch")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip archive")
    done = run_cli("profile", "--card-only", junk, example("tiny_cnn.onnx"), timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [f"junk: error: {junk}: no model card (File is not a zip file)"]
    assert "tiny_cnn" in done.stdout


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_a_model_file_name_that_is_not_utf8_is_measured_and_named_with_its_bytes_shown(request, tmp_path, backend):
    import glob
    import shutil
    import tempfile

    from profiler.store import Store

    if backend == "docker":
        request.getfixturevalue("docker_backend")
    name = os.fsdecode(str(tmp_path).encode() + b"/caf\xe9.onnx")  # Latin-1 bytes: not UTF-8 text
    shutil.copy(example("tiny_cnn.onnx"), name)
    done = run_cli("profile", "--backend", backend, "--store", tmp_path / "s.db", "--iterations", 5, "--retries", 0,
                   "--json", tmp_path / "r.json", name, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    (record,) = json.loads((tmp_path / "r.json").read_text())
    assert record["status"] == "ok" and record["model"] == "caf\\xe9"
    assert record["path"] == str(tmp_path) + "/caf\\xe9.onnx" and "caf\\xe9" in done.stdout
    (stored,) = Store(str(tmp_path / "s.db")).records()
    assert stored["path"] == record["path"] and stored["sha256"] == record["sha256"]
    assert not glob.glob(os.path.join(tempfile.gettempdir(), "edge-profiler-names-*"))  # the links are gone
    cards = run_cli("profile", "--card-only", name, example("tiny_cnn.tflite"), timeout=120)
    assert cards.returncode == 0 and "caf\\xe9.onnx" in cards.stdout and "MACs" in cards.stdout, cards.stderr


def test_card_only_honours_json_and_csv(tmp_path):
    import csv

    done = run_cli("profile", "--card-only", "--json", tmp_path / "cards.json", "--csv", tmp_path / "cards.csv",
                   example("tiny_cnn.onnx"), example("tiny_cnn.tflite"), timeout=120)
    assert done.returncode == 0, done.stderr
    cards = json.loads((tmp_path / "cards.json").read_text())
    assert [c["model_card"]["macs"] for c in cards] == [c["model_card"]["macs"] for c in cards[:1]] * 2 != [0, 0]
    rows = list(csv.DictReader(open(tmp_path / "cards.csv")))
    assert [int(r["macs"]) for r in rows] == [c["model_card"]["macs"] for c in cards]


def test_a_docker_host_that_is_not_an_address_is_one_line(tmp_path):
    env = dict(os.environ, DOCKER_HOST="http://[::1")
    done = run_cli("profile", "--backend", "docker", "--no-store", example("tiny_cnn.onnx"), env=env, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == ("profile: error: BACKEND=docker: DOCKER_HOST=http://[::1: not a Docker address "
                                   "(Invalid IPv6 URL)")


def test_report_outputs_are_checked_before_anything_runs(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(open(example("tiny_cnn.onnx"), "rb").read())
    before = digest(model)
    missing = tmp_path / "no" / "report.html"
    cases = [(["--html", missing, model], f"profile: error: --html {missing}: folder {missing.parent} does not exist"),
             (["--html", model, model], "an input of this run"),
             (["--plot", model, model], f"profile: error: --plot {model}: is a file, not a folder")]
    for args, message in cases:
        done = run_cli("profile", "--backend", "local", "--no-store", *args, timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert done.stdout == ""  # refused before any model ran: no table
    assert digest(model) == before and not missing.parent.exists()
    device = bad_csv(tmp_path, DEVICE_CSV)
    host = host_json(tmp_path, [1.0 + i for i in range(8)])
    code, err, escaped = calibrate_in_process(device, "--host", host, "--html", missing)
    assert escaped is None and code == 2 and err.count("\n") == 1 and str(missing) in err, err
    code, err, _ = calibrate_in_process(device, "--host", host, "--html", device)
    assert code == 2 and "an input of this run" in err
