"""`profile --on HOST`: the harness natively on a device over real SSH (sshd on 127.0.0.1, a device
account with its own Python), device rows in the store, calibrate pairing them, and failures."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli

ENV = os.path.join(ROOT, "env.template")


def on_device(device, tmp_path, *args, host="edge-device", python=None):
    out = tmp_path / "device.json"
    done = run_cli("profile", "--env", ENV, "--on", host, "--ssh-config", device.config,
                   "--ssh-python", python or device.python, "--json", out, *args, timeout=300)
    return done, (json.loads(out.read_text()) if out.exists() else None)


def test_a_model_measured_over_ssh_is_a_native_device_row_in_the_store(ssh_device, models, tmp_path):
    from profiler.store import Store

    db = tmp_path / "profiles.db"
    report = tmp_path / "report.html"
    done, (record,) = on_device(ssh_device, tmp_path, models["onnx"], "--store", db, "--iterations", 20,
                                "--html", report)
    assert done.returncode == 0, done.stderr
    assert "<dd>none: measured natively on edge-device</dd>" in report.read_text()  # not "caps enforced: NO"
    assert record["status"] == "ok" and record["backend"] == "ssh"
    assert record["native_device"] == {"ssh_host": "edge-device"}
    assert record["host"]["python"] == subprocess.run(["/usr/bin/python3", "-c", "import platform; "
                                                       "print(platform.python_version())"],
                                                      capture_output=True, text=True).stdout.strip()
    assert record["enforced"]["cpus"] is False and "nothing capped" in record["enforced"]["how"]
    (stored,) = Store(str(db)).records()
    assert stored["backend"] == "ssh" and stored["sha256"] == record["sha256"]
    assert ssh_device.folders() == [] and ssh_device.processes() == []
    assert "not enforced" not in done.stderr  # native: nothing is meant to be capped


def test_calibrate_pairs_device_and_host_rows_by_sha256(ssh_device, tmp_path):
    from experiments.examples.models import cnn_onnx

    host_paths = [str(cnn_onnx(tmp_path / f"host_{i}.onnx", seed=i, size=48, channels=(8 * (i + 1), 16 * (i + 1))))
                  for i in range(4)]
    device_dir = tmp_path / "on_device"
    device_dir.mkdir()
    device_paths = []
    for i, path in enumerate(host_paths):  # the same files under other names
        device_paths.append(str(device_dir / f"ref{i}.onnx"))
        shutil.copy(path, device_paths[-1])
    db = tmp_path / "profiles.db"
    done, _ = on_device(ssh_device, tmp_path, *device_paths, "--store", db, "--iterations", 30,
                        "--device-name", "edge-board")
    assert done.returncode == 0, done.stderr
    done = run_cli("profile", "--env", ENV, "--backend", "local", "--store", db, "--iterations", 30,
                   "--device-name", "edge-board", *host_paths)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "calib.json"
    done = run_cli("calibrate", "--device-target", "edge-board", "--store", db, "--method", "ols", "--out", out)
    assert done.returncode == 0, done.stderr
    assert out.exists()
    assert re.search(r"latency_ms\s+1\s+ols\s+4\s", done.stdout), done.stdout  # all four paired by content
    done = run_cli("calibrate", "--device-target", "no-such-board", "--store", db)
    assert done.returncode == 2
    assert "no device measurements for target 'no-such-board' (device targets here: edge-board)" in done.stderr


@pytest.mark.parametrize("host, message", [
    ("edge-unknown", "edge-unknown: the device's host key is not known, so it cannot be verified"),
    ("edge-badkey", "edge-badkey: key-based login failed"),
    ("edge-refused", "edge-refused: cannot connect (ssh: connect to host 127.0.0.1 port"),
    ("edge-blackhole", "edge-blackhole: cannot connect (ssh: connect to host 192.0.2.1 port 22:"),
])
def test_connection_failures_are_one_line(ssh_device, models, tmp_path, host, message):
    done, _ = on_device(ssh_device, tmp_path, models["onnx"], "--no-store", host=host)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_device_without_the_runtime_names_the_pip_install(ssh_device, models, tmp_path):
    done, records = on_device(ssh_device, tmp_path, models["onnx"], "--no-store", python=ssh_device.bare_python)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert [r["status"] for r in records] == ["error"]
    assert records[0]["error"] == (f"edge-device: onnxruntime missing on the device; run there: "
                                   f"{ssh_device.bare_python} -m pip install onnxruntime")


def test_models_whose_runtime_the_device_has_run_and_the_others_are_rows(ssh_device, models, tmp_path):
    # the device has onnxruntime and no LiteRT
    done, records = on_device(ssh_device, tmp_path, models["onnx"], models["tflite"], "--no-store",
                              "--iterations", 5)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    rows = {r["runtime"]: r for r in records}
    assert rows["onnx"]["status"] == "ok" and rows["onnx"]["native_device"]
    assert rows["tflite"]["status"] == "error" and rows["tflite"]["error"].endswith(
        f"-m pip install ai-edge-litert")


def test_stray_lines_that_look_like_json_on_the_device_are_not_records(ssh_device, models, tmp_path):
    done, records = on_device(ssh_device, tmp_path, models["onnx"], "--no-store", "--iterations", 5,
                              python=ssh_device.noisy_python)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [r["status"] for r in records] == ["ok"] and records[0]["model"] == "tiny_cnn"


def test_running_out_of_memory_on_the_device_is_an_oom_row(ssh_device, models, tmp_path):
    done, records = on_device(ssh_device, tmp_path, models["big"], models["onnx"], "--no-store", "--iterations", 5,
                              python=ssh_device.capped_python)
    assert [r["status"] for r in records] == ["oom", "ok"], done.stderr
    assert "Traceback" not in done.stderr
    assert ssh_device.folders() == []


def test_a_timeout_on_the_device_is_a_row_and_the_rest_run(ssh_device, models, tmp_path):
    done, records = on_device(ssh_device, tmp_path, models["slow"], models["onnx"], "--no-store", "--timeout", 2,
                              "--iterations", 100000)
    assert [r["status"] for r in records] == ["timeout", "timeout"], done.stderr
    assert ssh_device.processes() == [] and ssh_device.folders() == []


def test_ctrl_c_leaves_no_harness_and_no_folder_on_the_device(ssh_device, models, tmp_path):
    command = [sys.executable, "-m", "profiler.cli", "--env", ENV, "--on", "edge-device", "--ssh-config",
               ssh_device.config, "--ssh-python", ssh_device.python, "--no-store", "--iterations", "1000000",
               models["slow"]]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ssh_device.harness_running() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not ssh_device.harness_running():
            ended = child.poll() is not None
            pytest.fail("the harness never started on the device"
                        + (f"; the command ended with {child.returncode}: {child.communicate()[1][-2000:]}" if ended
                           else "; the command was still running"))
        time.sleep(1)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130 and "Traceback" not in stderr
    assert ssh_device.processes() == []
    assert ssh_device.folders() == []


def test_the_next_run_stops_and_removes_what_a_killed_run_left_on_both_sides(ssh_device, models, tmp_path):
    import glob
    import tempfile

    command = [sys.executable, "-m", "profiler.cli", "--env", ENV, "--on", "edge-device", "--ssh-config",
               ssh_device.config, "--ssh-python", ssh_device.python, "--no-store", "--iterations", "1000000",
               models["slow"]]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ssh_device.harness_running() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ssh_device.harness_running(), "the harness never started on the device"
    finally:
        child.kill()  # SIGKILL: no cleanup of its own can run
        child.wait()
    controls = glob.glob(os.path.join(tempfile.gettempdir(), f"edge-profiler-ssh-{child.pid}-*"))
    assert controls, "the killed run had no local control folder"
    assert ssh_device.folders(), "the killed run left no device folder"
    done, records = on_device(ssh_device, tmp_path, models["onnx"], "--no-store", "--iterations", 5)
    assert done.returncode == 0 and [r["status"] for r in records] == ["ok"], done.stderr
    assert "stopped and removed what 1 killed run(s) of this host left on the device" in done.stderr, done.stderr
    assert ssh_device.processes() == [] and ssh_device.folders() == []
    assert not any(os.path.exists(path) for path in controls)
    masters = subprocess.run(["pgrep", "-f", f"edge-profiler-ssh-{child.pid}-"], capture_output=True, text=True)
    assert masters.stdout.split() == [], "the killed run's ControlMaster still runs"


def test_accuracy_is_evaluated_on_the_device_and_a_symlinked_model_is_sent_as_its_file(ssh_device, digits, tmp_path):
    made = digits
    link = tmp_path / "linked.onnx"
    os.symlink(os.path.relpath(made["onnx"], tmp_path), link)  # a relative link: the device gets the file
    done, (record,) = on_device(ssh_device, tmp_path, link, "--no-store", "--iterations", 10, "--data", made["data"],
                                "--device-ram", "4g")
    assert done.returncode == 0, done.stderr
    # device figures are named as such, never as the host's
    assert "Accuracy against device median latency" in done.stdout and "device peak" in done.stdout
    assert "host" not in done.stdout.split("Accuracy against")[1]
    assert record["status"] == "ok" and record["backend"] == "ssh"
    import numpy as np
    import onnxruntime as ort

    arrays = np.load(made["data"])
    session = ort.InferenceSession(made["onnx"], providers=["CPUExecutionProvider"])
    predicted = np.array([session.run(None, {"input": row[None]})[0][0].argmax() for row in arrays["x_data"]])
    assert round(record["accuracy"]["metrics"]["top1"] * len(predicted)) == int(np.sum(predicted == arrays["y_data"]))
    assert ssh_device.folders() == [] and ssh_device.processes() == []


def test_the_hand_started_device_prints_what_to_run_and_stops_on_a_signal_in_the_background(ssh_device):
    def started():
        # as `python -m tests.sshdevice &` from a script: SIGINT ignored, as shells do for background jobs
        child = subprocess.Popen([sys.executable, "-m", "tests.sshdevice"], cwd=ROOT, stderr=subprocess.PIPE,
                                 text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        lines = [child.stderr.readline() for _ in range(3)]
        port = int(re.search(r"127\.0\.0\.1:(\d+)", lines[0]).group(1))
        return child, "".join(lines), port

    def listening(port):
        import socket

        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    child, text, port = started()
    assert "--ssh-python " in text and "--ssh-config " in text and "--on edge-device" in text
    assert listening(port)
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=30) != 0
    deadline = time.monotonic() + 10
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listening(port)  # its sshd stopped with it
    child, text, port = started()
    child.kill()  # even a SIGKILL, which no handler sees, takes its sshd along
    child.wait(timeout=30)
    shutil.rmtree(os.path.dirname(re.search(r"--ssh-config (\S+)", text).group(1)))  # what no handler could remove
    deadline = time.monotonic() + 10
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listening(port)


def test_an_execution_provider_the_device_lacks_is_one_line(ssh_device, models, tmp_path):
    done, records = on_device(ssh_device, tmp_path, models["onnx"], "--no-store", "--iterations", 5,
                              "--execution-providers", "CUDAExecutionProvider,CPUExecutionProvider")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (record,) = records
    assert record["status"] == "error" and "\n" not in record["error"]
    assert record["error"].startswith("EXECUTION_PROVIDERS: CUDAExecutionProvider not available in this "
                                      "onnxruntime build")
    done, (ok,) = on_device(ssh_device, tmp_path, models["onnx"], "--no-store", "--iterations", 5,
                            "--execution-providers", "CPUExecutionProvider")
    assert ok["status"] == "ok" and ok["runtime_setup"] == {"providers": ["CPUExecutionProvider"]}
    # deployment: copying the harness and the model onto the device, beside the load and first inference
    assert ok["deployment"]["copy_ms"] > 0 and ok["deployment"]["bytes"] > os.path.getsize(models["onnx"])
    assert ok["load_ms"] > 0 and ok["first_inference_ms"] > 0
