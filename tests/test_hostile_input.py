"""Hostile inputs, replayed: wrong types through the API, names that carry formulas, markup, escape
sequences or mathtext, secrets in env files, corrupt store rows, huge host values, outputs that
cannot be written. Each is one line from the project's own exception classes, never a traceback,
and nothing is written through unescaped."""

import json
import os
import shutil
import sqlite3
import tempfile

import pytest

from tests.conftest import ROOT, example, run_cli

import calibration  # noqa: E402
import profiler  # noqa: E402

OWN = (profiler.ProfileError, profiler.ConfigError, calibration.CalibrationError)
CAL = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "calib_ols.json")
ONNX = example("tiny_cnn.onnx")


def target():
    return profiler.Target.from_env(os.path.join(ROOT, "env.template"), backend="local", iterations=5, warmup=1)


FOLDER = tempfile.gettempdir()
CASES = {
    "profile(bytes)": lambda: profiler.profile(b"m.onnx", target()),
    "profile(None)": lambda: profiler.profile(None, target()),
    "profile([None])": lambda: profiler.profile([None], target()),
    "profile(123)": lambda: profiler.profile(123, target()),
    "profile(store=123)": lambda: profiler.profile(ONNX, target(), store=123),
    "profile(store={})": lambda: profiler.profile(ONNX, target(), store={}),
    "profile(calibration=123)": lambda: profiler.profile(ONNX, target(), store=None, calibration=123),
    "profile(calibration={})": lambda: profiler.profile(ONNX, target(), store=None, calibration={}),
    "profile(retries=-1)": lambda: profiler.profile(ONNX, target(), store=None, retries=-1),
    "profile(an unknown option)": lambda: profiler.profile(ONNX, target(), store=None, iteration=5),
    "profile(variants=5)": lambda: profiler.profile(ONNX, target(), store=None, variants=5),
    "Target.from_env({})": lambda: profiler.Target.from_env({}),
    "Target.from_env(iterations=10**30)": lambda: profiler.Target.from_env(iterations=10 ** 30),
    "Target.from_env(target_ci=2)": lambda: profiler.Target.from_env(target_ci=2),
    "fit(b'x')": lambda: calibration.fit(b"x"),
    "fit(123)": lambda: calibration.fit(123),
    "fit(host=123)": lambda: calibration.fit("d.csv", host=123),
    "fit(host=b'x')": lambda: calibration.fit("d.csv", host=b"x"),
    "fit(host={})": lambda: calibration.fit("d.csv", host={}),
    "fit(host=[{}])": lambda: calibration.fit("d.csv", host=[{}]),
    "fit(host=[1, 2])": lambda: calibration.fit("d.csv", host=[1, 2]),
    "fit(host=generator)": lambda: calibration.fit("d.csv", host=(x for x in [])),
    "fit(device_ram=-5)": lambda: calibration.fit("d.csv", device_ram=-5),
    "load(123)": lambda: calibration.load(123),
    "load(None)": lambda: calibration.load(None),
    "predict_model(bytes)": lambda: calibration.predict_model(b"x", CAL, target()),
    "predict_model(None)": lambda: calibration.predict_model(None, CAL, target()),
    "predict_model(cal=123)": lambda: calibration.predict_model(ONNX, 123, target()),
    "predict_model(cal=None)": lambda: calibration.predict_model(ONNX, None, target()),
    "predict_model(store=123)": lambda: calibration.predict_model(ONNX, CAL, target(), store=123),
    "cal.predict(123)": lambda: calibration.load(CAL).predict(123),
    "cal.predict([1])": lambda: calibration.load(CAL).predict([1]),
    "cal.save(folder)": lambda: calibration.load(CAL).save(FOLDER),
    "cal.save(missing folder)": lambda: calibration.load(CAL).save(os.path.join(FOLDER, "no", "such", "c.json")),
    "cal.plot(file)": lambda: calibration.load(CAL).plot(CAL),
    "Store(folder)": lambda: profiler.Store(FOLDER),
    "Store(123)": lambda: profiler.Store(123),
}


@pytest.mark.parametrize("name", CASES)
def test_wrong_types_through_the_api_are_one_line_errors_of_the_projects_classes(name):
    with pytest.raises(OWN) as caught:
        CASES[name]()
    assert "\n" not in str(caught.value) and str(caught.value)


def test_names_are_escaped_for_terminal_markdown_csv_and_figures(tmp_path):
    names = ["=cmd|' -C calc'!A0", "+1", "@SUM(A1)", "a\nb", "<svg onload=alert(1)>`x`*y*", "t\x1b]0;t\x07\x1b[2J",
             "a$\\foo$b"]
    paths = []
    for i, name in enumerate(names):
        path = tmp_path / f"{name}.onnx"
        shutil.copy(ONNX, path)
        paths.append(path)
    out = {k: tmp_path / f"out.{k}" for k in ("csv", "markdown", "html")}
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--warmup", 1, "--retries", 0,
                   "--csv", out["csv"], "--markdown", out["markdown"], "--html", out["html"], "--plot",
                   tmp_path / "figures", *paths)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    for text in (done.stdout, done.stderr, out["markdown"].read_text(), out["html"].read_text(), out["csv"].read_text()):
        assert "\x1b" not in text and "\x07" not in text
    table = [line for line in done.stdout.splitlines() if line.startswith(("=cmd", "a\\nb"))]
    assert len(table) == 2  # a newline in a name stays inside its row
    import csv

    rows = list(csv.DictReader(open(out["csv"], newline="")))
    assert len(rows) == len(names)
    assert all(not v.startswith(("=", "+", "-", "@")) for row in rows for v in row.values() if v)
    assert {row["model"] for row in rows} >= {"'=cmd|' -C calc'!A0", "'+1", "'@SUM(A1)"}
    markdown = out["markdown"].read_text().splitlines()
    import re

    pipes = lambda line: len(re.findall(r"(?<!\\)\|", line))  # noqa: E731  the cell borders
    body = markdown[2:2 + len(names)]
    assert len(body) == len(names) and all(pipes(line) == pipes(markdown[0]) for line in body), body
    assert not any("<svg" in line or "`x`" in line for line in markdown)
    assert not any(re.search(r"(?<!\\)\$", line) for line in markdown)  # no $…$ for GitHub to render as math
    page = out["html"].read_text()
    assert "<svg onload" not in page and "&lt;svg onload=alert(1)&gt;" in page
    assert os.path.isfile(tmp_path / "figures" / "latency_distribution.svg")
    cards = run_cli("profile", "--card-only", "--csv", tmp_path / "cards.csv", paths[0], paths[1])
    assert cards.returncode == 0, cards.stderr
    assert [row["model"] for row in csv.DictReader(open(tmp_path / "cards.csv"))] == ["'=cmd|' -C calc'!A0", "'+1"]


def test_profile_csv_names_read_back_as_given_by_calibrate(tmp_path):
    from calibration.hostdata import load_host

    path = tmp_path / "=m.onnx"
    shutil.copy(ONNX, path)
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--csv", tmp_path / "h.csv", path)
    assert done.returncode == 0, done.stderr
    assert [r["model"] for r in load_host(str(tmp_path / "h.csv"))] == ["=m"]


def test_env_files_never_expand_environment_variables(tmp_path):
    env = tmp_path / "d.env"
    env.write_text("DEVICE_NAME=${FAKE_SECRET}\nSSH_PYTHON='$FAKE_SECRET'\n")
    done = run_cli("profile", "--env", env, "--backend", "local", "--no-store", "--iterations", 5,
                   "--json", tmp_path / "r.json", ONNX, env=dict(os.environ, FAKE_SECRET="hunter2"))
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in open(tmp_path / "r.json").read() + done.stdout + done.stderr
    assert json.load(open(tmp_path / "r.json"))[0]["target"]["name"] == "${FAKE_SECRET}"


@pytest.mark.parametrize("args, message", [
    (["--on", "dev", "--backend", "local"], "BACKEND=local asks for this host"),
    (["--env", "/dev/stdin"], "not a regular file"),
    (["--iterations", "1e23"], "ITERATIONS=1e23"),
    (["--iterations", "100000000000"], "must be at most"),
    (["--html", "/dev/full"], "/dev/full: could not write"),
    (["--plot", "/proc/x"], "/proc/x: could not write"),
])
def test_settings_and_outputs_that_cannot_work_are_one_line(tmp_path, args, message):
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, *args, ONNX, timeout=120)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0], done.stderr  # one line, last


def test_an_env_file_naming_a_device_measures_there():
    t = profiler.Target.from_env(os.path.join(ROOT, "env.template"), ssh_host="dev")
    assert t.backend == "ssh"
    from profiler.cli import build_parser, joined

    opts = build_parser().parse_args(joined(["--slurm-args", "--qos=normal", "m.onnx"]))
    assert opts.SLURM_ARGS == "--qos=normal"


def test_corrupt_store_rows_are_skipped_and_the_others_kept(tmp_path):
    store = tmp_path / "s.db"
    first = profiler.profile([ONNX], target(), store=store, retries=0)
    db = sqlite3.connect(store)
    for i, bad in enumerate(["{bad", "[1,2]", '{"result_version": 99, "model": "x"}']):
        db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (f"bad{i}", "s", "m", "t", "onnx", "1", "ok", 1, "9999", bad))
    db.commit()
    db.close()
    opened = profiler.Store(str(store))
    kept = opened.records()
    assert [r["sha256"] for r in kept] == [first[0]["sha256"]] and len(opened.skipped) == 3
    opened.close()
    done = run_cli("profile", "--backend", "local", "--store", store, "--iterations", 5, ONNX)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    fit = run_cli("calibrate", "--store", store, "--device-target", "nothing")
    assert fit.returncode != 0 and "Traceback" not in fit.stderr and fit.stderr.count("\n") == 1, fit.stderr


def test_a_huge_host_value_is_refused_before_the_fit(tmp_path):
    from tests.test_bad_input import DEVICE_CSV, host_json

    device = tmp_path / "d.csv"
    device.write_text(DEVICE_CSV)
    host = host_json(tmp_path, [1e308] + [1.0 + i for i in range(7)])
    done = run_cli("calibrate", device, "--host", host, "--out", tmp_path / "c.json")
    assert done.returncode != 0 and "record 1 (m0)" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not os.path.exists(tmp_path / "c.json")


def test_a_fifo_output_without_a_reader_is_one_line(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    done = run_cli("profile", "--backend", "local", "--no-store", "--iterations", 5, "--csv", fifo, ONNX,
                   timeout=120)
    assert done.returncode != 0 and "no process reads" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("backend, how", [("local", "SIGINT"), ("local", "SIGTERM"), ("docker", "SIGINT")])
def test_an_interrupted_run_leaves_the_store_and_every_export_with_the_same_rows(request, models, tmp_path, backend,
                                                                                 how):
    import csv
    import signal
    import subprocess
    import sys
    import time

    from profiler.store import Store

    if backend == "docker":
        request.getfixturevalue("docker_backend")
    out = {kind: tmp_path / f"r.{kind}" for kind in ("json", "csv", "md")}
    db = tmp_path / "profiles.db"
    child = subprocess.Popen([sys.executable, "-m", "profiler.cli", "--backend", backend, "--store", str(db),
                              # each model is timed for 2 s on any host: the slow one is in flight when
                              # the first is written, whatever the host's speed
                              "--retries", "0", "--iterations", "20", "--target-ci", "0.0001", "--time-budget", "2",
                              "--json", str(out["json"]), "--csv",
                              str(out["csv"]), "--markdown", str(out["md"]), models["onnx"], models["slow"]],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the first model is in; the slow one is in flight
            if out["json"].exists() and json.loads(out["json"].read_text() or "[]"):
                break
            time.sleep(0.02)
        child.send_signal(getattr(signal, how))
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == (130 if how == "SIGINT" else 143) and "Traceback" not in stderr, stderr
    in_json = [r["model"] for r in json.loads(out["json"].read_text())]
    with open(out["csv"], newline="") as f:
        in_csv = [row["model"] for row in csv.DictReader(f)]
    in_markdown = [line.split("|")[1].strip() for line in out["md"].read_text().splitlines()[2:] if line.startswith("|")]
    store = Store(str(db))
    in_store = [r["model"] for r in store.records()]
    store.close()
    assert in_json == in_csv == in_markdown == in_store == ["tiny_cnn"], (in_json, in_csv, in_markdown, in_store)


def _edited(data, path, value):
    """data with the field at path (keys and indices) set to value, or deleted when value is DELETE."""
    import copy

    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


DELETE = object()
AUTO = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "calib_auto.json")
EDITS = {  # (file, field path, value): the hand edits and older shapes that crashed `calibrate predict`
    "interval {}": (CAL, ["fits", 0, "interval"], {}),
    "interval partial": (CAL, ["fits", 0, "interval"], {"space": "linear", "s": 0.5}),
    "interval string": (CAL, ["fits", 0, "interval"], "wide"),
    "references string": (CAL, ["fits", 0, "references"], "m1,m2"),
    "reference without device": (CAL, ["fits", 0, "references", 0, "device"], DELETE),
    "mix string": (CAL, ["fits", 0, "mix"], "conv"),
    "mix string values": (CAL, ["fits", 0, "mix", "conv_kxk"], "most"),
    "precision list": (CAL, ["fits", 0, "precision"], ["fp32"]),
    "features relabelled relative": (AUTO, ["fits", 1, "model", "kind"], "relative"),
    "negated feature coefficients": (AUTO, ["fits", 1, "model", "coef"], "NEGATE"),
    "coefficient 0": (CAL, ["fits", 1, "model", "coef"], [0.0]),
    "version string": (CAL, ["version"], "1"),
    "threads string": (CAL, ["fits", 0, "threads"], "1"),
}


@pytest.mark.parametrize("name", EDITS)
def test_a_hand_edited_calibration_is_one_line_naming_its_field(tmp_path, name):
    source, path, value = EDITS[name]
    data = json.load(open(source))
    if value == "NEGATE":
        value = [-c for c in data["fits"][1]["model"]["coef"]]
    edited = tmp_path / "calib.json"
    edited.write_text(json.dumps(_edited(data, path, value)))
    host = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "host.json")
    done = run_cli("calibrate", "predict", "--calibration", edited, "--host", host)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1
    field = ".".join(str(p) for p in path[2:] if not isinstance(p, int)) if path[0] == "fits" else path[0]
    assert field.split(".")[0] in done.stderr or "version" in done.stderr, done.stderr
    with pytest.raises(calibration.CalibrationError):
        calibration.Calibration(_edited(data, path, value))


def test_a_negative_intercept_never_writes_a_negative_prediction(tmp_path):
    data = json.load(open(CAL))
    for fit in data["fits"]:
        fit["model"]["intercept"] = -1e3
    cal = calibration.Calibration(data)
    host = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "host.json")
    frame = cal.predict(host)
    assert (frame["predicted_latency_ms"] > 0).all() and frame["bounded"].all()


STORE_EDITS = {
    "latency string": ("latency_ms", "x"),
    "card list": ("model_card", [1]),
    "target string": ("target", "x"),
    "peak string": ("peak_memory_mb", "x"),
    "median NaN": ("latency_ms", {"median": float("nan"), "iqr": 0.0, "min": 1.0, "max": 1.0, "p99": 1.0}),
    "median negative": ("latency_ms", {"median": -3.0, "iqr": 0.0, "min": 1.0, "max": 1.0, "p99": 1.0}),
}


@pytest.mark.parametrize("name", STORE_EDITS)
def test_a_store_row_of_the_wrong_type_is_skipped_and_measured_again(tmp_path, name):
    key, value = STORE_EDITS[name]
    store = tmp_path / "s.db"
    profiler.profile([ONNX], target(), store=store, retries=0)
    db = sqlite3.connect(store)
    (row_key, text), = db.execute("SELECT key, record FROM results").fetchall()
    db.execute("UPDATE results SET record = ? WHERE key = ?", (json.dumps(dict(json.loads(text), **{key: value})),
                                                                row_key))
    db.commit()
    db.close()
    done = run_cli("profile", "--env", "env.template", "--backend", "local", "--store", store, "--iterations", 5,
                   "--warmup", 1, ONNX)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "unreadable row(s) of the store skipped" in done.stderr and key in done.stderr
    assert "from the store" not in done.stderr and "nan" not in done.stdout and "-3.000" not in done.stdout
    predicted = run_cli("calibrate", "predict", "--calibration", CAL, "--store", store)
    assert "Traceback" not in predicted.stderr and predicted.returncode in (0, 1), predicted.stderr


@pytest.mark.parametrize("field,value", [("model_card", [1]), ("model_card", {"macs_by_class": "conv"}),
                                         ("sha256", [1]), ("latency_ms", {"median": "x"}), ("threads", "x")])
def test_suggest_and_predict_refuse_host_records_of_the_wrong_type(tmp_path, field, value):
    records = profiler.profile([ONNX, example("tiny_cnn.tflite")], target(), store=None, retries=0)
    host = tmp_path / "host.json"
    host.write_text(json.dumps([dict(records[0], **{field: value}), records[1]]))
    for args in (["suggest", "--host", host, "-k", "1"], ["predict", "--calibration", CAL, "--host", host]):
        done = run_cli("calibrate", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr and field in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1
    with pytest.raises(calibration.CalibrationError, match=field):
        calibration.load(CAL).predict([dict(records[0], **{field: value})])


def test_fifos_are_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    host = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "host.json")
    device = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "pi5_device.csv")
    for program, args in (("calibrate", [fifo, "--host", host]), ("calibrate", [device, "--host", fifo]),
                          ("calibrate", ["predict", "--calibration", fifo, "--host", host]),
                          ("profile", ["--backend", "local", "--no-store", "--calibration", fifo, ONNX]),
                          ("calibrate", ["suggest", "--host", host, "--have", fifo])):
        done = run_cli(program, *args, timeout=60)
        assert done.returncode == 2 and "not a regular file" in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1


MORE_API_CASES = {
    "profile(variants=5)": lambda: profiler.profile(ONNX, target(), store=None, variants=5),
    "profile(on_result=5)": lambda: profiler.profile(ONNX, target(), store=None, on_result=5),
    "fit(metrics=5)": lambda: calibration.fit(
        os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "pi5_device.csv"),
        host=os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "host.json"), metrics=5),
    "fit(store=5)": lambda: calibration.fit("d.csv", store=5),
    "load(folder)": lambda: calibration.load(FOLDER),
    "Calibration({}).predict": lambda: calibration.Calibration({}).predict([]),
    "repr(Calibration({}))": lambda: repr(calibration.Calibration({})),
    "Calibration(None).summary()": lambda: calibration.Calibration(None).summary(),
    "suggest(have=5)": lambda: calibration.suggest(
        os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "host.json"), have=5),
    "cal.predict(median 'x')": lambda: calibration.load(CAL).predict(
        [{"model": "m", "latency_ms": {"median": "x"}}]),
    "cal.predict(median NaN)": lambda: calibration.load(CAL).predict(
        [{"model": "m", "latency_ms": {"median": float("nan")}}]),
    "cal.predict(threads 'x')": lambda: calibration.load(CAL).predict(
        [{"model": "m", "threads": "x", "latency_ms": {"median": 1.0}}]),
    "cal.predict(model_card [1])": lambda: calibration.load(CAL).predict(
        [{"model": "m", "model_card": [1], "latency_ms": {"median": 1.0}}]),
}


@pytest.mark.parametrize("name", MORE_API_CASES)
def test_more_wrong_types_through_the_api_are_one_line_errors(name):
    with pytest.raises(OWN) as caught:
        MORE_API_CASES[name]()
    assert "\n" not in str(caught.value) and str(caught.value)


def test_an_npz_member_that_is_not_an_array_is_bad_data_before_it_is_read(digits, tmp_path):
    # a zip bomb: a small file whose extra member inflates far past the cap; np.load would hand it
    # over as bytes, read whole
    import zipfile

    import numpy as np

    arrays = np.load(digits["data"])
    bomb = tmp_path / "bomb.npz"
    np.savez(bomb, x_data=arrays["x_data"][:20], y_data=arrays["y_data"][:20])
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("junk", "w", force_zip64=True) as member:
            zeros = bytes(1 << 24)
            for _ in range(25):  # 400 MiB uncompressed, well under 1 MiB on disk
                member.write(zeros)
    assert bomb.stat().st_size < 2 * 2 ** 20
    done = run_cli("profile", "--backend", "local", "--memory", "300m", "--no-store", "--iterations", 5,
                   "--retries", 0, "--data", bomb, "--json", tmp_path / "r.json", digits["onnx"])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (record,) = json.load(open(tmp_path / "r.json"))
    assert record["status"] == "error" and "'junk' is not a .npy array (400 MiB uncompressed)" in record["error"]


def test_calibrate_predict_json_is_standard_json(tmp_path):
    host = os.path.join(ROOT, "experiments", "nb201_pi5", "calibrate_example", "host.json")
    records = json.load(open(host))
    records[0]["cgroup"] = {"peak_mb": float("nan"), "throttling": float("inf")}  # figures a host could not read
    edited = tmp_path / "host.json"
    edited.write_text(json.dumps(records))
    out = tmp_path / "predicted.json"
    done = run_cli("calibrate", "predict", "--calibration", CAL, "--host", edited, "--json", out)
    assert done.returncode == 0, done.stderr

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    written = json.loads(out.read_text(), parse_constant=refuse)
    assert written[0]["cgroup"] == {"peak_mb": None, "throttling": None}
