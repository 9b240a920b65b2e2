import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
EXAMPLES = os.path.join(ROOT, "experiments", "examples")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def example(name):
    return os.path.join(EXAMPLES, name)


def run_cli(program, *args, timeout=600, **kwargs):
    """Run `profile` or `calibrate` as a user would: a separate process, output captured."""
    module = {"profile": "profiler.cli", "calibrate": "calibration.cli"}[program]
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=kwargs.pop("cwd", ROOT), **kwargs)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Models made by the project's own builders, beside the committed examples."""
    from experiments.examples.models import cnn_onnx, cnn_torchscript

    folder = tmp_path_factory.mktemp("models")
    made = {
        "onnx": example("tiny_cnn.onnx"),
        "tflite": example("tiny_cnn.tflite"),
        "torch": example("tiny_cnn.pt"),
        "dynamic": cnn_onnx(folder / "dynamic.onnx", dynamic_batch=True),
        "dynamic_hw": cnn_onnx(folder / "dynamic_hw.onnx", dynamic_batch=True, dynamic_hw=True),
        "big": cnn_onnx(folder / "big_weights.onnx", extra_weights_mb=256),
        "slow": cnn_onnx(folder / "slow.onnx", size=128, channels=(64, 128, 128)),
        "slow_torch": cnn_torchscript(folder / "slow.pt", size=128, channels=(64, 128, 128)),
    }
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(open(example("tiny_cnn.onnx"), "rb").read()[:2000])
    made["corrupt"] = corrupt
    return {k: str(v) for k, v in made.items()}


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The digits CNN (ONNX, TFLite with TensorFlow, TorchScript, a torch.export program) trained once by
    the project's own code on scikit-learn's handwritten digits, and the held-out images as the --data file."""
    from experiments.examples.digits import build

    return build(str(tmp_path_factory.mktemp("digits")), torchscript=True, exported=True)


def store_served(db, total):
    """What a re-run says of the store: "N of total from the store" for the N stored records that are
    not flagged unstable or disturbed (those are measured again, never served); None when N is 0."""
    from profiler.stability import shaky
    from profiler.store import Store

    store = Store(str(db))
    steady = sum(not shaky(r) for r in store.records())
    store.close()
    return f"{steady} of {total} from the store" if steady else None


def docker_engine_problem():
    from profiler.sandbox.docker import engine_problem

    return engine_problem()


@pytest.fixture(scope="session")
def docker_backend():
    """A real Docker engine; skipped without one, unless REQUIRE_DOCKER=1 makes that a failure."""
    problem = docker_engine_problem()
    if problem:
        if os.environ.get("REQUIRE_DOCKER") == "1":
            pytest.fail(f"REQUIRE_DOCKER=1 but {problem}")
        pytest.skip(f"Docker tests skipped: {problem}")
    from profiler.sandbox.docker import DockerBackend

    return DockerBackend(notice=lambda m: None)


def _ssh_header():
    from tests import sshdevice

    problem = sshdevice.problem()
    return "sshd available" if problem is None else "SKIPPING SSH device tests: " + problem


def slurm_problem():
    import shutil

    if shutil.which("sinfo") is None:
        return "no Slurm on this machine (sinfo is not on PATH)"
    done = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or not done.stdout.strip():
        return f"Slurm does not answer ({(done.stderr.strip() or 'no nodes').splitlines()[-1]})"
    if not any(state.startswith(("idle", "mixed", "allocated")) for state in done.stdout.split()):
        return f"no Slurm node is up (states: {' '.join(done.stdout.split())})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real Slurm cluster (containers/start-slurm.sh makes one here); skipped without one, unless
    REQUIRE_SLURM=1 makes that a failure."""
    problem = slurm_problem()
    if problem:
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(f"REQUIRE_SLURM=1 but {problem}")
        pytest.skip(f"Slurm tests skipped: {problem}")


@pytest.fixture(scope="session")
def ssh_device():
    """A real sshd on 127.0.0.1 with a device account behind it (tests/sshdevice.py); skipped without
    openssh-server, unless REQUIRE_SSH=1 makes that a failure."""
    from tests import sshdevice

    problem = sshdevice.problem()
    if problem:
        if os.environ.get("REQUIRE_SSH") == "1":
            pytest.fail(f"REQUIRE_SSH=1 but {problem}")
        pytest.skip(f"SSH device tests skipped: {problem}")
    device = sshdevice.Device()
    yield device
    device.stop()


def pytest_report_header(config):
    problem = docker_engine_problem()
    slurm = slurm_problem()
    return [f"docker: {'engine available' if problem is None else 'SKIPPING Docker tests: ' + problem}",
            f"slurm: {'cluster available' if slurm is None else 'SKIPPING Slurm tests: ' + slurm}",
            f"ssh: {_ssh_header()}",
            f"shared data: {'present' if os.path.isdir(SHARED) else 'absent (dataset tests skip)'}"]


@pytest.fixture
def cold_page_cache():
    """Empty the host's page cache (root only), as after a reboot or on a busy machine."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError as exc:
        pytest.skip(f"cannot drop the page cache here ({exc.strerror})")


def same_peak_cold_and_warm(profile):
    """profile() -> one record. Run it on a cold page cache, then warm: the cgroup peak must not
    count the runtime's libraries or the model file just because this sandbox read them first
    (without the empty run and the host read-through, cold was 145 MiB against 48 MiB warm)."""
    cold, warm = profile(), profile()
    assert cold["status"] == warm["status"] == "ok"
    assert cold["memory_source"] == warm["memory_source"] == "vmhwm"
    assert abs(cold["peak_memory_mb"] - warm["peak_memory_mb"]) < 8, (cold["peak_memory_mb"], warm["peak_memory_mb"])
    assert abs(cold["idle_memory_mb"] - warm["idle_memory_mb"]) < 8, (cold["idle_memory_mb"], warm["idle_memory_mb"])
    for record in (cold, warm):
        assert record["executor_overhead"]["empty_run_ms"] > record["executor_overhead"]["runtime_import_ms"] > 0


def same_peak_alone_and_under_pressure(run_profile, models, tmp_path, small="slow"):
    """run_profile(*args) -> (completed process, records). The `small` model's peak alone on a quiet
    host, and at the end of a batch after larger models while another process drops the page cache
    every 0.5 s, must agree within 3% (the cgroup's charged peak moved by +26% to +58% here; a
    TorchScript model's high-water mark by -9% to +4% under glibc's dynamic threshold), and so must
    its anonymous part."""
    import threading
    import time

    from experiments.examples.models import cnn_onnx

    small, large = models[small], [models["big"], str(cnn_onnx(tmp_path / "medium.onnx", extra_weights_mb=96))]

    def profile(paths):
        done, records = run_profile(*paths, "--memory", "8g", "--iterations", 20, "--retries", 0)  # the peak, once
        assert done.returncode == 0, done.stderr
        return records

    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1")
    except OSError as exc:
        pytest.skip(f"cannot drop the page cache here ({exc.strerror})")
    (alone,) = profile([small])
    stop = threading.Event()

    def dropper():
        while not stop.is_set():
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("1")
            time.sleep(0.5)

    thread = threading.Thread(target=dropper)
    thread.start()
    try:
        batch = profile([*large, small])
    finally:
        stop.set()
        thread.join()
    last = batch[-1]
    assert alone["status"] == last["status"] == "ok"
    assert abs(last["peak_memory_mb"] / alone["peak_memory_mb"] - 1) < 0.03, (alone["peak_memory_mb"],
                                                                               last["peak_memory_mb"])
    assert abs(last["idle_memory_mb"] - alone["idle_memory_mb"]) < 3, (alone["idle_memory_mb"], last["idle_memory_mb"])
    for record in (alone, last):  # the split is read at the peak's end: it cannot exceed the peak
        memory = record["memory"]
        assert memory["basis"] == "load_and_first_runs" and memory["allocator"] == "glibc", memory
        assert 0 < memory["anon_mb"] and 0 < memory["file_mb"], memory
        assert memory["anon_mb"] + memory["file_mb"] <= record["peak_memory_mb"] + 0.1, memory
        assert memory["whole_run_peak_mb"] >= record["peak_memory_mb"], memory
    assert abs(last["memory"]["anon_mb"] / alone["memory"]["anon_mb"] - 1) < 0.03, (alone["memory"], last["memory"])
    return alone, last
