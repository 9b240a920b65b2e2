"""The Docker sandbox, on a real engine: caps, lock-down, failure rows and cleanup."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from profiler.config import load_target
from tests.conftest import ROOT, run_cli, same_peak_alone_and_under_pressure, same_peak_cold_and_warm

pytestmark = pytest.mark.docker
ENV = os.path.join(ROOT, "env.template")

PROBE = r'''
import json, os, socket
out = {"uid": os.getuid()}
try:
    open("/written-by-model", "w")
    out["root_writable"] = True
except OSError:
    out["root_writable"] = False
try:
    socket.create_connection(("10.255.255.1", 53), timeout=2)
    out["network"] = True
except OSError as exc:
    out["network"] = False
out["interfaces"] = sorted(os.listdir("/sys/class/net"))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
out["cpus_allowed"] = status["Cpus_allowed_list"].strip()
out["cap_eff"] = status["CapEff"].strip()
out["no_new_privs"] = status["NoNewPrivs"].strip()
for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    if os.path.exists(path):
        out["memory_limit"] = int(open(path).read())
try:
    open("/models/0/tiny_cnn.onnx", "ab")
    out["model_writable"] = True
except OSError:
    out["model_writable"] = False
print(json.dumps(out))
'''


def labelled():
    from profiler.sandbox.docker import leftover_containers

    return leftover_containers()


def test_sandbox_holds_from_inside(docker_backend, models):
    target = load_target(None, {"CPUS": "1", "CPU_SET": "1", "MEMORY": "300m"}, host_cores=[0, 1])
    code, output = docker_backend.probe(target, "onnx", PROBE, paths=[models["onnx"]])
    facts = json.loads(output.strip().splitlines()[-1])
    assert code == 0
    assert facts["network"] is False and facts["interfaces"] == ["lo"]
    assert facts["root_writable"] is False and facts["model_writable"] is False
    assert facts["uid"] != 0
    assert facts["cpus_allowed"] == "1"
    assert facts["memory_limit"] == 300 * 1024 * 1024
    assert int(facts["cap_eff"], 16) == 0 and facts["no_new_privs"] == "1"
    assert labelled() == []


def docker_profile(tmp_path, *args):
    out = tmp_path / "results.json"
    done = run_cli("profile", "--env", ENV, "--backend", "docker", "--no-store", "--json", out, "--quiet", *args)
    return done, (json.loads(out.read_text()) if out.exists() else None)


def test_three_runtimes_in_containers(docker_backend, models, tmp_path):
    done, records = docker_profile(tmp_path, models["onnx"], models["tflite"], models["onnx"], "--iterations", 20,
                                   "--memory", "512m")
    assert done.returncode == 0, done.stderr
    assert [(r["runtime"], r["status"], r["backend"]) for r in records] == [
        ("onnx", "ok", "docker"), ("onnx", "ok", "docker"), ("tflite", "ok", "docker")]
    for r in records:
        assert r["path"] in (models["onnx"], models["tflite"])
        assert r["enforced"] == {"cpus": True, "memory": True, "sandboxed": True, "how": r["enforced"]["how"]}
        assert r["cgroup"]["limit_mb"] == 512 and len(r["cpus_seen"]) == 1
        assert r["peak_memory_mb"] > r["idle_memory_mb"] > 0
        assert r["cgroup"]["anon_mb"] > 0 and r["cgroup"]["throttling"] is not None
        stats = r["latency_ms"]
        assert stats["min"] <= stats["median"] <= stats["p99"] <= stats["max"]
    assert labelled() == []


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "experiments", "examples", "tiny_cnn.pt")), reason="no model")
def test_torchscript_in_a_container(docker_backend, models, tmp_path):
    pytest.importorskip("torch")
    done, (record,) = docker_profile(tmp_path, models["torch"], "--iterations", 10, "--retries", 0)  # the run, once
    assert record["status"] == "ok", record["error"]
    assert labelled() == []


def test_fractional_cpus_use_a_quota(docker_backend, models, tmp_path):
    done, (record,) = docker_profile(tmp_path, models["onnx"], "--cpus", "1.5", "--iterations", 10)
    assert record["status"] == "ok" and len(record["cpus_seen"]) == 2
    assert "nano_cpus 1.5" in record["enforced"]["how"]


def test_oom_error_and_timeout_are_rows_and_leave_nothing(docker_backend, models, tmp_path):
    done, records = docker_profile(tmp_path, models["big"], models["corrupt"], models["onnx"], "--memory", "200m",
                                   "--iterations", 5)
    assert [r["status"] for r in records] == ["oom", "error", "ok"], done.stderr
    assert "Traceback" not in done.stderr
    # The error names the user's file, not where it is mounted in the container.
    assert records[1]["path"] == os.path.abspath(models["corrupt"]) and records[1]["path"] in records[1]["error"]
    assert labelled() == []
    done, records = docker_profile(tmp_path, models["slow"], models["onnx"], "--timeout", "2", "--iterations", 100000)
    assert [r["status"] for r in records] == ["timeout", "timeout"]
    assert labelled() == []


def wait_for_a_container(limit_s=120):
    deadline = time.monotonic() + limit_s
    while not labelled() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert labelled(), "the container never started"


def test_ctrl_c_removes_the_container(docker_backend, models, tmp_path):
    command = [sys.executable, "-m", "profiler.cli", "--env", ENV, "--backend", "docker", "--no-store",
               "--iterations", "1000000", "--timeout", "300", models["slow"]]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_a_container()
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:  # a failed assertion must not leave the run going
            child.send_signal(signal.SIGINT)
            child.communicate(timeout=60)
    assert child.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    assert labelled() == []


def test_a_killed_profile_leaves_a_container_that_the_next_run_removes(docker_backend, models, tmp_path):
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "profiler.cli", "--env", ENV, "--backend", "docker", "--no-store", "--json", str(out),
               "--iterations", "1000000", "--timeout", "300", models["slow"]]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_a_container()
    finally:
        child.kill()
        child.wait()
    assert len(labelled()) == 1  # kill -9 leaves the container running its batch
    assert not out.exists()  # and no half-written JSON
    done = run_cli("profile", "--env", ENV, "--backend", "docker", "--no-store", "--iterations", 5, models["onnx"])
    assert done.returncode == 0, done.stderr
    assert "docker: removed 1 container(s) left by an edge-profiler process that no longer runs" in done.stderr
    assert labelled() == []


def test_listing_leftovers_survives_containers_removed_meanwhile(docker_backend):
    """Listing labelled containers while another process creates and removes them is not an error."""
    import threading

    from profiler.sandbox.docker import LABEL, OFFLINE_BASE, client

    stop = threading.Event()
    churned = []

    def churn():
        engine = client()
        while not stop.is_set():
            made = engine.containers.create(OFFLINE_BASE, "true", labels={LABEL: "test-churn"})
            made.remove(force=True)
            churned.append(made.id)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(churned) < 40 and time.monotonic() < deadline:
            labelled()
    finally:
        stop.set()
        thread.join()
    assert len(churned) >= 10
    assert labelled() == []


def test_containers_of_a_dead_process_are_swept(docker_backend):
    """A profile process that was SIGKILLed leaves its container; the next backend removes it, running or not."""
    from profiler.sandbox import LABEL, OWNER
    from profiler.sandbox.docker import OFFLINE_BASE, DockerBackend, client, owner, remove

    gone = subprocess.Popen(["true"])
    gone.wait()
    engine = client()
    orphan = engine.containers.run(OFFLINE_BASE, ["sleep", "300"], detach=True,
                                   labels={LABEL: "run", OWNER: owner(gone.pid)})
    mine = engine.containers.create(OFFLINE_BASE, "true", labels={LABEL: "run", OWNER: owner()})
    other_host = engine.containers.create(OFFLINE_BASE, "true",
                                          labels={LABEL: "run", OWNER: f"another-host:{gone.pid}"})
    notices = []
    try:
        DockerBackend(notice=notices.append)
        left = {c.id for c in labelled()}
    finally:
        for container in (orphan, mine, other_host):
            remove(container)
    assert orphan.id not in left and {mine.id, other_host.id} <= left
    assert notices == ["docker: removed 1 container(s) left by an edge-profiler process that no longer runs"]


def test_backends_agree_on_a_model(docker_backend, models, tmp_path):
    """Same harness, same runtime build, same inputs and card on both backends.

    Latency agreement is a timing figure and is measured by `make bench` (d), not asserted here."""
    done, (docker_record,) = docker_profile(tmp_path, models["slow"], "--iterations", 30)
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--no-store", "--quiet", "--json",
                    tmp_path / "l.json", models["slow"], "--iterations", 30)
    assert done.returncode == 0, done.stderr
    local_record = json.loads((tmp_path / "l.json").read_text())[0]
    same = ("status", "runtime", "runtime_version", "sha256", "model_card", "input_shapes", "iterations", "warmup",
            "threads", "memory_source", "seed")
    assert {k: docker_record[k] for k in same} == {k: local_record[k] for k in same}
    # the same cap: as many cores, each run on the ones it chose (which free core each took depends on
    # what else the host was running at that moment)
    for record in (docker_record, local_record):
        assert record["cpus_seen"] == record["cores"]["used"] and len(record["cpus_seen"]) == 1
    assert (docker_record["backend"], local_record["backend"]) == ("docker", "local")
    assert docker_record["cgroup"]["limit_mb"] == local_record["cgroup"]["limit_mb"] == 1024


def test_no_engine_auto_falls_back_and_docker_fails(models, tmp_path):
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock")
    out = tmp_path / "r.json"
    done = run_cli("profile", "--env", ENV, "--no-store", "--iterations", 3, "--quiet", "--json", out, models["onnx"],
                   env=env)
    assert done.returncode == 0
    # Even with --quiet: a run that is not sandboxed is never silent, and its row says so.
    assert ("WARNING: no Docker engine answers at unix:///nonexistent/docker.sock; profiling with the local backend, "
            "which caps CPU and memory but is no security boundary") in done.stderr
    (record,) = json.loads(out.read_text())
    assert record["enforced"]["sandboxed"] is False and record["enforced"]["how"].startswith("not sandboxed")
    # A model that carries code is not run unsandboxed unless chosen.
    done = run_cli("profile", "--env", ENV, "--no-store", "--iterations", 3, models["torch"], env=env)
    assert done.returncode == 2 and "carry code that would run unsandboxed" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "--backend local" in done.stderr
    done = run_cli("profile", "--env", ENV, "--no-store", "--iterations", 3, "--backend", "local", models["torch"],
                   env=env)
    assert done.returncode == 0, done.stderr
    done = run_cli("profile", "--env", ENV, "--backend", "docker", "--no-store", models["onnx"], env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == ("profile: error: BACKEND=docker: no Docker engine answers at "
                                   "unix:///nonexistent/docker.sock")


def test_a_cold_page_cache_does_not_move_the_peak(docker_backend, models, tmp_path, cold_page_cache):
    same_peak_cold_and_warm(lambda: docker_profile(tmp_path, models["slow"], "--iterations", 5)[1][0])


def test_the_empty_run_is_reported(docker_backend, models, tmp_path):
    done = run_cli("profile", "--env", ENV, "--backend", "docker", "--no-store", models["onnx"], "--iterations", 5)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^Overhead: an empty docker run with onnx takes \d+ ms \(\d+ ms of it importing the runtime\); "
                     r"no figure above includes it$", done.stdout, re.M), done.stdout


def test_the_first_use_overhead_is_a_run_not_the_image_build(docker_backend, models, tmp_path):
    tag = docker_backend.image_for("tflite")
    docker_backend.client.images.remove(tag, force=True)  # the next profile builds it again
    figures, notices = [], []
    for attempt in ("first", "second"):
        out = tmp_path / f"{attempt}.json"
        done = run_cli("profile", "--env", ENV, "--backend", "docker", "--no-store", "--json", out, models["tflite"],
                       "--iterations", 3)
        assert done.returncode == 0, done.stderr
        figures.append(json.loads(out.read_text())[0]["executor_overhead"]["empty_run_ms"])
        notices.append([line for line in done.stderr.splitlines() if "cannot be pulled" in line or "building" in line])
    # Built first, then timed: the build (tens of seconds) is in neither figure.
    assert figures[0] < 3 * figures[1] + 1000, figures
    # What the image is built on is said when it is built, not on every run.
    assert notices[0] and not notices[1], notices


def test_an_outdated_image_is_pruned_when_its_runtime_is_rebuilt(docker_backend, models, tmp_path):
    current = docker_backend.image_for("onnx")
    repository = current.split(":")[0]
    outdated = f"{repository}:000000000000"
    docker_backend.client.images.get(current).tag(repository, "000000000000")  # as a previous harness version left it
    docker_backend.client.images.remove(current)  # the tag only; the next profile builds it again
    done = run_cli("profile", "--env", ENV, "--backend", "docker", "--no-store", models["onnx"], "--iterations", 3)
    assert done.returncode == 0, done.stderr
    tags = [t for image in docker_backend.client.images.list(name=repository) for t in image.tags]
    assert current in tags and outdated not in tags, tags
    assert f"removed the outdated image {outdated}" in done.stderr


def test_an_onnx_model_with_external_data_runs_in_a_container(docker_backend, tmp_path):
    import onnx

    from experiments.examples.models import cnn_onnx

    path = tmp_path / "external.onnx"
    model = onnx.load(cnn_onnx(tmp_path / "inline.onnx", extra_weights_mb=8))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="external.weights", size_threshold=1024)
    assert (tmp_path / "external.weights").stat().st_size > 8_000_000
    # onnx writes the weights owner-only; the container runs as nobody, so it gets a readable copy
    assert not (tmp_path / "external.weights").stat().st_mode & 0o004
    path.chmod(0o600)  # the graph itself owner-only too
    done, (record,) = docker_profile(tmp_path, path, "--iterations", 3)
    assert record["status"] == "ok", record.get("error")
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # the user's files are left as they were
    import glob
    import tempfile

    assert not glob.glob(os.path.join(tempfile.gettempdir(), "edge-profiler-stage-*"))  # the copies are gone


def test_the_peak_does_not_move_with_the_batch_or_the_page_cache_in_a_container(docker_backend, models, tmp_path):
    same_peak_alone_and_under_pressure(lambda *args: docker_profile(tmp_path, *args), models, tmp_path)


def test_jobs_2_gives_two_containers_disjoint_cores_read_back_from_inside(docker_backend, tmp_path):
    from experiments.examples.models import cnn_onnx

    paths = [str(cnn_onnx(tmp_path / f"j{i}.onnx", seed=i, channels=(8 + i, 16))) for i in range(4)]
    out = tmp_path / "r.json"
    done = run_cli("profile", "--env", ENV, "--backend", "docker", "--no-store", "--cpus", 1, "--jobs", 2,
                   "--iterations", 200, "--retries", 0, "--json", out, *paths)  # one pass: the placement itself
    assert done.returncode == 0, done.stderr
    records = json.loads(out.read_text())
    assert set(tuple(r["seen_inside"]["cpus_allowed"]) for r in records) == {(0,), (1,)}
    assert all(r["enforced"]["sandboxed"] for r in records)
    assert labelled() == []


def test_ctrl_c_in_a_parallel_run_removes_every_container(docker_backend, models, tmp_path):
    command = [sys.executable, "-m", "profiler.cli", "--env", ENV, "--backend", "docker", "--no-store", "--cpus",
               "1", "--jobs", "2", "--iterations", "1000000", "--timeout", "300", models["slow"], models["dynamic"]]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(labelled()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(labelled()) == 2, "two containers should be running"
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            child.communicate(timeout=60)
    assert child.returncode == 130 and "Traceback" not in stderr
    assert labelled() == []


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_the_sandbox_image_holds_numpy_and_the_runtime_only(docker_backend, runtime):
    """pandas, matplotlib and the rest of the host side never enter the image."""
    names = ["numpy", "profiler.harness", "pandas", "matplotlib", "sklearn", "dotenv", "docker", "submitit",
             "calibration", "profiler.api"]
    probe = f"import importlib.util as u, json; print(json.dumps({{n: u.find_spec(n) is not None for n in {names}}}))"
    output = docker_backend.client.containers.run(docker_backend.image_for(runtime), ["-c", probe], remove=True,
                                                  entrypoint=["/opt/venv/bin/python"], network_disabled=True)
    found = json.loads(output.decode().strip().splitlines()[-1])
    assert found == {name: name in ("numpy", "profiler.harness") for name in names}, found
