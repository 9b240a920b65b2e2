"""`profile` end to end with the local backend: real runtimes, real cgroups, real processes."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_cli, same_peak_alone_and_under_pressure, same_peak_cold_and_warm, store_served

ENV = os.path.join(ROOT, "env.template")


def profile_json(tmp_path, *args):
    out = tmp_path / "results.json"
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--no-store", "--json", out, *args)
    records = json.loads(out.read_text()) if out.exists() else None
    return done, records


def test_three_runtimes_in_one_command(models, tmp_path):
    done, records = profile_json(tmp_path, models["onnx"], models["tflite"], models["torch"], "--iterations", 30)
    assert done.returncode == 0, done.stderr
    assert [(r["runtime"], r["status"]) for r in records] == [("onnx", "ok"), ("tflite", "ok"), ("torch", "ok")]
    for r in records:
        stats = r["latency_ms"]
        assert stats["min"] <= stats["median"] <= stats["p99"] <= stats["max"]
        assert r["peak_memory_mb"] > r["idle_memory_mb"]
        assert r["backend"] == "local" and r["target"]["cpus"] == 1
        assert set(r["latency_ms"]) == {"mean", "median", "std", "min", "max", "p90", "p95", "p99", "iqr",
                                        "ci_low", "ci_high", "ci_rel"}
        assert stats["ci_low"] <= stats["median"] <= stats["ci_high"]
        assert r["disturbance"]["of"] == r["iterations_run"] == 30 and r["disturbance"]["source"] == "schedstat"
    assert "tiny_cnn" in done.stdout and "median ± IQR" in done.stdout


@pytest.mark.parametrize("cpus", [1, 2])
def test_affinity_is_cpus_cores_read_back_from_the_child(models, tmp_path, cpus):
    done, (record,) = profile_json(tmp_path, models["onnx"], "--cpus", cpus, "--iterations", 5)
    assert record["status"] == "ok"
    assert len(record["cpus_seen"]) == cpus
    assert record["enforced"]["cpus"] is True and record["threads"] == cpus


def test_memory_cap_is_a_cgroup_and_oom_is_a_result(models, tmp_path):
    done, records = profile_json(tmp_path, models["big"], models["onnx"], "--memory", "200m", "--iterations", 5)
    assert [r["status"] for r in records] == ["oom", "ok"], done.stderr
    assert "Traceback" not in done.stderr
    assert records[1]["enforced"]["memory"] is True
    assert records[1]["cgroup"]["limit_mb"] == 200
    assert records[1]["memory_source"] == "vmhwm" and records[1]["cgroup"]["peak_mb"] > 0
    assert not [d for d in os.listdir("/sys/fs/cgroup/memory") if d.startswith("edge-profiler-")]


def test_timeout_is_a_result_and_the_rest_still_run(models, tmp_path):
    done, records = profile_json(tmp_path, models["slow"], models["onnx"], "--timeout", 2, "--iterations", 100000)
    assert [r["status"] for r in records] == ["timeout", "timeout"]
    done, records = profile_json(tmp_path, models["slow"], models["onnx"], "--timeout", 60, "--iterations", 3)
    assert [r["status"] for r in records] == ["ok", "ok"]


def test_store_keeps_every_result(models, tmp_path):
    from profiler.store import Store

    db = tmp_path / "profiles.db"
    for _ in range(2):
        done = run_cli("profile", "--env", ENV, "--backend", "local", "--store", db, models["onnx"], "--iterations", 5)
        assert done.returncode == 0
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--store", db, models["onnx"], "--iterations", 5,
                   "--threads", 2, "--cpus", 2)
    assert done.returncode == 0, done.stderr
    records = Store(str(db)).records()
    assert len(records) == 2  # same model and target replaces; another target adds
    assert {r["target"]["threads"] for r in records} == {1, 2}


def test_a_failed_rerun_keeps_the_good_measurement(models, tmp_path):
    from profiler.store import Store

    db = tmp_path / "profiles.db"
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--store", db, models["slow"], "--iterations", 3)
    assert done.returncode == 0, done.stderr
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--store", db, models["slow"], "--timeout", 2,
                   "--iterations", 100000, "--remeasure")
    store = Store(str(db))
    assert [r["status"] for r in store.records()] == ["ok"]  # still there for calibrate
    assert [r["status"] for r in store.records("timeout")] == ["timeout"]  # and the failure beside it
    assert "Traceback" not in done.stderr


def test_csv_and_markdown_export(models, tmp_path):
    import csv

    out, table = tmp_path / "r.csv", tmp_path / "r.md"
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--no-store", "--csv", out, "--markdown", table,
                   models["onnx"], models["tflite"], "--iterations", 5)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(out)))
    assert [r["runtime"] for r in rows] == ["onnx", "tflite"]
    assert float(rows[0]["latency_median_ms"]) > 0 and rows[0]["enforced_memory"] == "True"
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| model | runtime | status |") and lines[1].startswith("|---|")
    body = [line.split(" | ") for line in lines[2:4]]
    assert [(cells[1], cells[2]) for cells in body] == [("onnx", "ok"), ("tflite", "ok")]
    assert {line.count(" | ") for line in (lines[2], lines[3])} == {lines[0].count(" | ")}
    assert lines[5] == "Ranking by median latency on this host:" and "× slower: tiny_cnn" in lines[8]


BAD = [
    (["missing.onnx"], "missing.onnx: model file not found"),
    (["experiments"], "experiments: is a folder, not a model file"),
    (["env.template"], "env.template: unknown model extension '.template' (known: .onnx, .pt, .pt2, .pth, .tflite, .xml)"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_paths_are_one_line_errors(tmp_path, args, message):
    out = tmp_path / "r.json"
    done = run_cli("profile", "--backend", "local", "--no-store", "--json", out, *args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"profile: error: {message}"]
    assert not out.exists()


@pytest.mark.parametrize("kind, extra, message", [
    ("corrupt", [], "not a loadable ONNX model"),
    ("dynamic_hw", [], "has dynamic dimensions"),
    ("onnx", ["--input-shapes", "pixels:1x3x64x64"], "names input 'pixels'"),
])
def test_bad_models_are_one_line_errors(models, tmp_path, kind, extra, message):
    done, records = profile_json(tmp_path, models[kind], *extra)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("profile: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in done.stderr
    assert [r["status"] for r in records] == ["error"]


def test_unreadable_env_file(tmp_path, models):
    done = run_cli("profile", "--env", tmp_path / "nope.env", models["onnx"])
    assert done.returncode == 2 and done.stderr.strip() == f"profile: error: {tmp_path / 'nope.env'}: env file not found"
    bad = tmp_path / "bad.env"
    bad.write_bytes(b"\xff\xfe CPUS=1")
    done = run_cli("profile", "--env", bad, models["onnx"])
    assert done.returncode == 2 and "cannot read env file" in done.stderr and "Traceback" not in done.stderr


def test_invalid_setting_on_the_command_line(models):
    done = run_cli("profile", "--cpus", "0", models["onnx"])
    assert done.returncode == 2 and done.stderr.strip() == "profile: error: CPUS=0: must be greater than 0"


def test_unwritable_output_fails_before_profiling(models, tmp_path):
    done = run_cli("profile", "--backend", "local", "--no-store", "--json", tmp_path / "missing" / "r.json", models["onnx"])
    assert done.returncode == 2
    assert done.stderr.strip() == f"profile: error: --json {tmp_path / 'missing' / 'r.json'}: folder " \
                                  f"{tmp_path / 'missing'} does not exist"
    for option in ("--json", "--csv", "--markdown"):
        done = run_cli("profile", "--backend", "local", "--no-store", option, tmp_path, models["onnx"])
        assert done.returncode == 2
        assert done.stderr.strip() == f"profile: error: {option} {tmp_path}: is a folder, not a file"
    assert list(tmp_path.iterdir()) == []


def test_a_cold_page_cache_does_not_move_the_peak(models, tmp_path, cold_page_cache):
    same_peak_cold_and_warm(lambda: profile_json(tmp_path, models["slow"], "--iterations", 5)[1][0])


# Every cgroup mount made read-only in a private mount namespace: the cap cannot be created.
READ_ONLY_CGROUPS = 'for m in $(findmnt -rn -o TARGET -t cgroup,cgroup2); do mount -o remount,bind,ro "$m"; done; exec "$@"'


@pytest.mark.skipif(os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("findmnt")),
                    reason="needs root, unshare and findmnt to hide the cgroup filesystems")
def test_a_memory_cap_that_cannot_be_applied_is_reported_not_assumed(models, tmp_path):
    out = tmp_path / "r.json"
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY_CGROUPS, "sh",
               sys.executable, "-m", "profiler.cli", "--backend", "local", "--no-store", "--memory", "512m",
               "--iterations", "5", "--json", str(out), models["onnx"]]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(out.read_text())
    assert record["status"] == "ok" and record["target"]["memory_mb"] == 512
    assert record["enforced"]["memory"] is False and record["enforced"]["cpus"] is True
    assert "cannot create a cgroup" in record["enforced"]["how"] and "Read-only file system" in record["enforced"]["how"]
    assert record["memory_source"] == "vmhwm"  # no cgroup to read a peak from
    assert "512MiB(not enforced)" in done.stdout
    assert f"WARNING: MEMORY not enforced by the local backend: {record['enforced']['how']}" in done.stderr.splitlines()


def test_sigterm_cleans_up_and_exits_143(models, tmp_path):
    import signal
    import time

    child = subprocess.Popen([sys.executable, "-m", "profiler.cli", "--env", ENV, "--backend", "local", "--no-store",
                              models["slow"], "--iterations", "100000", "--timeout", "120"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # inside the measurement
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 143, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not [d for d in os.listdir("/sys/fs/cgroup/memory") if d.startswith("edge-profiler-")]


def test_a_closed_pipe_is_not_a_traceback(models):
    done = subprocess.run(f"{sys.executable} -m profiler.cli --card-only {models['onnx']} {models['tflite']} "
                          f"{models['torch']} | head -1", shell=True, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.count("\n") == 1
    assert done.stderr == "", done.stderr


def test_a_store_locked_after_the_start_loses_no_measurement(models, tmp_path):
    import sqlite3
    import time

    db, out = tmp_path / "profiles.db", tmp_path / "r.json"
    child = subprocess.Popen([sys.executable, "-m", "profiler.cli", "--env", ENV, "--backend", "local", "--store", db,
                              "--json", out, models["slow"], "--store-wait", "1",
                              # timed for 5 s on any host: an interval no run reaches, within a time budget
                              "--iterations", "20", "--target-ci", "0.0001", "--time-budget", "5",
                              "--retries", "0"],  # one pass: the lock, not re-measurement, is tested
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(100):  # the store is opened (and its table made) before any model runs
        if db.exists() and db.stat().st_size > 0:
            break
        time.sleep(0.1)
    time.sleep(1)
    holder = sqlite3.connect(db, timeout=30)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the store for longer than profile waits
    try:
        _, stderr = child.communicate(timeout=120)
    finally:
        holder.rollback()
        holder.close()
    assert child.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"profile: error: --store {db}: could not save slow"), stderr
    assert "the results are in --json" in stderr
    assert json.loads(out.read_text())[0]["status"] == "ok"  # the measurement and the export stand


def test_a_store_locked_at_the_start_says_so(models, tmp_path):
    import sqlite3

    db = tmp_path / "profiles.db"
    from profiler.store import Store

    Store(str(db)).close()
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        done = run_cli("profile", "--env", ENV, "--backend", "local", "--store", db, "--store-wait", "1", models["onnx"],
                       timeout=120)
    finally:
        holder.rollback()
        holder.close()
    assert done.returncode == 2
    assert done.stderr.strip() == f"profile: error: --store {db}: cannot use the results store (database is locked)"


def test_a_killed_profile_takes_its_harness_along_and_the_next_run_removes_its_cgroup(models, tmp_path):
    import signal
    import time

    def harnesses():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                command = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"profiler.harness" in command and models["slow"].encode() in command:
                found.append(int(pid))
        return found

    def cgroups_of(pid):
        return [d for d in os.listdir("/sys/fs/cgroup/memory") if d.startswith(f"edge-profiler-{pid}-")]

    child = subprocess.Popen([sys.executable, "-m", "profiler.cli", "--env", ENV, "--backend", "local", "--no-store",
                              "--memory", "512m", models["slow"], "--iterations", "100000", "--timeout", "300"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if harnesses() and cgroups_of(child.pid):
            break
        time.sleep(0.1)
    assert harnesses() and cgroups_of(child.pid), "the profile did not start measuring"
    child.send_signal(signal.SIGKILL)
    child.wait()
    for _ in range(50):  # the harness and its worker die with their parent, not at TIMEOUT_S
        if not harnesses():
            break
        time.sleep(0.1)
    assert harnesses() == []
    assert cgroups_of(child.pid)  # nothing removed it yet
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--no-store", models["onnx"], "--iterations", 3)
    assert done.returncode == 0, done.stderr
    assert "removed 1 cgroup(s) left by a profile that was killed" in done.stderr
    assert cgroups_of(child.pid) == []


@pytest.mark.parametrize("small", ["slow", "slow_torch"])
def test_the_peak_does_not_move_with_the_batch_or_the_page_cache(models, tmp_path, small):
    same_peak_alone_and_under_pressure(lambda *args: profile_json(tmp_path, *args), models, tmp_path, small)


def test_a_torchscript_peak_repeats_from_one_process_to_the_next(models, tmp_path):
    """glibc's dynamic threshold made this model peak at 204.8 or 212.7 MiB depending on the
    allocations the process made before the fork; the fixed thresholds make it one figure."""
    peaks = []
    for _ in range(3):
        done, (record,) = profile_json(tmp_path, models["slow_torch"], "--iterations", 5, "--warmup", 2, "--retries", 0)
        assert done.returncode == 0 and record["status"] == "ok", done.stderr
        peaks.append(record["peak_memory_mb"])
        assert record["memory"]["whole_run_peak_mb"] >= record["peak_memory_mb"]
    assert max(peaks) / min(peaks) - 1 < 0.01, peaks


def test_jobs_2_runs_two_sandboxes_on_disjoint_cores_read_back_from_inside(tmp_path):
    from experiments.examples.models import cnn_onnx

    paths = [str(cnn_onnx(tmp_path / f"j{i}.onnx", seed=i, channels=(8 + i, 16))) for i in range(6)]
    done, records = profile_json(tmp_path, *paths, "--cpus", 1, "--jobs", 2, "--iterations", 200,
                                 "--retries", 0)  # one pass: the placement itself
    assert done.returncode == 0, done.stderr
    assert sorted(r["model"] for r in records) == [f"j{i}" for i in range(6)]
    seen = [tuple(r["seen_inside"]["cpus_allowed"]) for r in records]
    assert set(seen) == {(0,), (1,)}  # one core each, both cores used, never both in one sandbox
    assert all(r["enforced"]["how"].count("sched_setaffinity to cores ") == 1 for r in records)


def test_jobs_beyond_the_cores_is_refused_before_anything_runs(models):
    cores = len(os.sched_getaffinity(0))
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--no-store", "--cpus", 1, "--jobs", cores + 1,
                   models["onnx"])
    assert done.returncode == 2
    assert done.stderr.strip() == (f"profile: error: JOBS={cores + 1}: {cores + 1} sandboxes of 1 core(s) need "
                                   f"{cores + 1} cores and this host has {cores} usable; use JOBS<={cores} (cores are "
                                   "never shared between sandboxes)")


def test_a_rerun_takes_what_the_store_has_and_measures_the_rest(tmp_path):
    from experiments.examples.models import cnn_onnx
    from profiler.store import Store

    paths = [str(cnn_onnx(tmp_path / f"s{i}.onnx", seed=i, channels=(8, 8 + i))) for i in range(3)]
    db = tmp_path / "profiles.db"
    base = ["profile", "--env", ENV, "--backend", "local", "--store", db, "--iterations", 5]
    assert run_cli(*base, paths[0]).returncode == 0
    first = Store(str(db)).records()[0]
    served = store_served(db, 3)  # a shaky stored record is measured again, never served
    done = run_cli(*base, *paths, "--json", tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    assert (served in done.stderr) if served else ("from the store (" not in done.stderr), done.stderr
    records = json.loads((tmp_path / "r.json").read_text())
    assert [r.get("from_store", False) for r in records] == [bool(served), False, False]
    if served:
        assert records[0]["started_at"] == first["started_at"]
    done = run_cli(*base, *paths, "--remeasure")
    assert "from the store" not in done.stderr and len(Store(str(db)).records()) == 3
