"""BACKEND=slurm on a real Slurm cluster (single node here): caps read back from inside the step,
oom and timeout rows, disjoint cores, Ctrl-C and resuming a killed sweep."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli, store_served

pytestmark = pytest.mark.usefixtures("slurm_cluster")
ENV = os.path.join(ROOT, "env.template")


def our_jobs():
    done = subprocess.run(["squeue", "--me", "--noheader", "--format=%i|%j|%T"], capture_output=True, text=True)
    return [line for line in done.stdout.splitlines() if "|edge-profiler-" in line]


def squeue_all():
    """Every job in the queue, whoever submitted it."""
    done = subprocess.run(["squeue", "--noheader", "--format=%i|%j|%T"], capture_output=True, text=True)
    return done.stdout.splitlines()


def profile(tmp_path, *args, timeout=600):
    out = tmp_path / "results.json"
    done = run_cli("profile", "--env", ENV, "--backend", "slurm", "--slurm-folder", tmp_path / "jobs", "--json", out,
                   *args, timeout=timeout)
    return done, (json.loads(out.read_text()) if out.exists() else None)


def test_the_caps_are_read_back_from_inside_the_step(models, tmp_path):
    done, (record,) = profile(tmp_path, models["onnx"], "--cpus", 1, "--memory", "300m", "--iterations", 5,
                              "--no-store")
    assert done.returncode == 0, done.stderr
    assert record["backend"] == "slurm" and record["status"] == "ok"
    assert len(record["seen_inside"]["cpus_allowed"]) == 1
    assert record["seen_inside"]["memory_limit_mb"] == 300
    assert record["enforced"]["cpus"] is True and record["enforced"]["memory"] is True
    assert record["enforced"]["sandboxed"] is False
    assert "cpuset " in record["enforced"]["how"] and "memory cgroup 300 MiB" in record["enforced"]["how"]
    assert not our_jobs()
    assert not os.path.exists(tmp_path / "jobs")  # the job files are removed, and the empty folder


def test_over_the_cap_is_oom_past_the_limit_is_timeout_and_the_rest_run(models, tmp_path):
    done, records = profile(tmp_path, models["big"], models["onnx"], "--memory", "200m", "--iterations", 5,
                            "--no-store")
    assert [r["status"] for r in records] == ["oom", "ok"], done.stderr
    assert "Traceback" not in done.stderr
    done, records = profile(tmp_path, models["slow"], models["onnx"], "--timeout", 2, "--iterations", 100000,
                            "--no-store")
    assert [r["status"] for r in records] == ["timeout", "timeout"], done.stderr
    assert records[0]["backend"] == "slurm"


def test_two_concurrent_steps_get_disjoint_cores(models, tmp_path):
    from experiments.examples.models import cnn_onnx

    paths = [str(cnn_onnx(tmp_path / f"m{i}.onnx", seed=i, channels=(8 + i, 16))) for i in range(4)]
    # One node, two cores: disjoint cores for the two steps means they ran side by side. A job of an
    # earlier test still on the node would hold a core and run the two one after the other.
    deadline = time.monotonic() + 120
    while squeue_all() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not squeue_all(), "the node should be idle before the two steps start"
    done, records = profile(tmp_path, *paths, "--cpus", 1, "--jobs", 2, "--iterations", 10000, "--no-store",
                            "--retries", 0)  # one pass: a re-measurement would be a third step
    assert done.returncode == 0, done.stderr
    by_job = {}
    for r in records:
        by_job.setdefault(r["enforced"]["job"], set()).update(r["seen_inside"]["cpus_allowed"])
    assert len(by_job) == 2
    first, second = by_job.values()
    assert len(first) == len(second) == 1 and not first & second
    assert not our_jobs()


def test_ctrl_c_leaves_no_job_in_the_queue(models, tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-m", "profiler.cli", "--env", ENV, "--backend", "slurm", "--slurm-folder",
         str(tmp_path / "jobs"), "--no-store", "--jobs", "2", "--iterations", "100000", models["slow"],
         models["dynamic"]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len([j for j in our_jobs() if j.endswith("|RUNNING")]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(our_jobs()) == 2, "both steps should be running"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert our_jobs() == []
    assert not os.path.exists(tmp_path / "jobs")


def test_a_killed_sweep_run_again_profiles_only_what_is_missing(models, tmp_path):
    from experiments.examples.models import cnn_onnx
    from profiler.store import Store

    paths = [str(cnn_onnx(tmp_path / f"r{i}.onnx", seed=i, channels=(8, 8 + i))) for i in range(3)]
    paths.append(models["slow"])
    db = tmp_path / "profiles.db"
    # Every model is timed for 1 s on any host (an interval no run reaches, within a time budget): the
    # slow one is still in flight when the other three are stored, whatever the host's speed.
    args = [sys.executable, "-m", "profiler.cli", "--env", ENV, "--backend", "slurm", "--slurm-folder",
            str(tmp_path / "jobs"), "--store", str(db), "--iterations", "20", "--target-ci", "0.0001",
            "--time-budget", "1", "--retries", "0"]  # one pass each: a stored shaky record is the rerun's job
    child = subprocess.Popen([*args, *paths], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the three small models are stored; the slow one is in flight
        if os.path.exists(db) and len(Store(str(db)).records()) == 3:
            break
        time.sleep(0.2)
    child.kill()  # kill -9: no clean-up of its own
    child.wait()
    assert len(Store(str(db)).records()) == 3
    served = store_served(db, 3)
    done = run_cli("profile", *args[3:], paths[0], paths[1], paths[2], timeout=300)
    assert done.returncode == 0, done.stderr
    assert "slurm: cancelled 1 job(s) left by a profile that no longer runs" in done.stderr
    assert (served in done.stderr) if served else ("from the store (" not in done.stderr), done.stderr
    assert ("were unstable or disturbed; measuring them again" in done.stderr) == (served != "3 of 3 from the store")
    # the killed run's job files went with its job: the folder holds nothing, so it is gone
    assert not os.path.exists(tmp_path / "jobs"), os.listdir(tmp_path / "jobs")
    served = store_served(db, 4)  # the same settings (they are part of the key): only the slow one runs
    done = run_cli("profile", *args[3:], *paths, "--timeout", "30", timeout=300)
    assert done.returncode == 0, done.stderr
    assert (served in done.stderr) if served else ("from the store (" not in done.stderr), done.stderr
    assert not our_jobs()


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "JOBS=0: must be at least 1"),
    (["--slurm-partition", "nosuchpartition"], "--partition=nosuchpartition: allocation failure: Invalid partition name specified"),
    (["--memory", "900g"], "BACKEND=slurm: the cluster refuses a job with --cpus-per-task=1, --mem=921600M"),
    (["--slurm-args", "qos"], "SLURM_ARGS: qos: write each option as --name=value"),
])
def test_bad_slurm_input_is_one_line_and_nothing_is_submitted(models, tmp_path, args, message):
    done, _ = profile(tmp_path, models["onnx"], "--no-store", *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not our_jobs()
    assert not os.path.exists(tmp_path / "jobs") or not os.listdir(tmp_path / "jobs")  # no script or pickle left


def test_a_nested_slurm_folder_is_removed_to_where_it_began_and_a_percent_is_refused(models, tmp_path):
    nested = tmp_path / "a" / "b" / "jobs"
    done = run_cli("profile", "--env", ENV, "--backend", "slurm", "--slurm-folder", nested, "--no-store",
                   "--iterations", 5, models["onnx"], timeout=600)
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(tmp_path / "a")
    done = run_cli("profile", "--env", ENV, "--backend", "slurm", "--slurm-folder", tmp_path / "x%u", "--no-store",
                   models["onnx"], timeout=120)
    assert done.returncode == 2 and "Slurm expands % in job file names" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not os.path.exists(tmp_path / "x%u")


def test_no_slurm_on_the_machine_is_one_line(models, tmp_path):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # python, but no sbatch
    done = run_cli("profile", "--env", ENV, "--backend", "slurm", "--no-store", models["onnx"], env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == "profile: error: BACKEND=slurm: no Slurm on this machine (sbatch and squeue " \
                                  "are not on PATH)"
