"""SSH backend: the harness runs natively on a Linux device the user can `ssh` to.

The system OpenSSH client does the connecting, so the user's ~/.ssh/config (host aliases,
ProxyJump, ports, IdentityFile), ssh-agent and known_hosts all apply. BatchMode: keys only, never
a password prompt; host keys are always verified (an unknown host is an error saying how to
trust it). One master connection is shared by every command of a run (ControlMaster).

Each batch: the harness (profiler/__init__.py and the profiler/harness package) and the models are copied
into a private folder made by mktemp on the device, the harness runs there and streams its JSON
records back, and the folder is removed afterwards, on Ctrl-C too, with any harness still running.
Nothing is capped on the device: the measurement is native. CPU_SET pins it with taskset.
"""

import io
import os
import shlex
import socket
import subprocess
import tarfile
import time

from profiler.harness.files import pid_alive, private_folder, sweep_dead_folders
from profiler.harness.runtimes import runtime_for
from profiler.sandbox.base import (LABEL, Backend, SandboxError, companion_files, failure_record, harness_args,
                                   harness_files, harness_record)

CONTROL_PREFIX = f"{LABEL}-ssh-"  # + pid + "-…": the local folder of one run's ssh control socket

RUNTIME_PACKAGES = {"onnx": ("onnxruntime", "onnxruntime"), "tflite": ("ai_edge_litert", "ai-edge-litert"),
                    "torch": ("torch", "torch"), "openvino": ("openvino", "openvino")}
PREFLIGHT = r'''
import json, platform, sys
out = {"python": platform.python_version(), "machine": platform.machine(), "missing": [], "versions": {}}
for module, package in %s:
    try:
        mod = __import__(module)
        out["versions"][package] = getattr(mod, "__version__", "unknown")
    except Exception:
        if module == "ai_edge_litert":
            try:
                import tflite_runtime
                out["versions"]["tflite-runtime"] = getattr(tflite_runtime, "__version__", "unknown")
                continue
            except Exception:
                pass
        out["missing"].append(package)
print(json.dumps(out))
'''


def ssh_failure(host, text):
    """One line for what ssh said when it could not run a command."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip() and not line.startswith("Warning:")]
    said = lines[-1] if lines else "no answer"
    if "Host key verification failed" in text or "No ED25519 host key is known" in text or \
            "host key for" in text.lower() and "not known" in text.lower():
        return (f"{host}: the device's host key is not known, so it cannot be verified; check its fingerprint and "
                f"trust it once with `ssh {host}` (or add `ssh-keyscan` output to known_hosts)")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return f"{host}: the device's host key has CHANGED since it was trusted; check why before connecting"
    if "Permission denied" in text:
        return (f"{host}: key-based login failed ({said}); add your key with `ssh-copy-id {host}` "
                "(passwords are never used)")
    return f"{host}: cannot connect ({said})"


def owner_tag():
    """Who made a device folder: this host's name and the profiling process's pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _stop_masters(folder):
    for sock in os.listdir(folder):
        try:
            subprocess.run(["ssh", "-o", f"ControlPath={os.path.join(folder, sock)}", "-O", "exit", "edge-profiler"],
                           capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):  # a master that does not answer ends with ControlPersist
            pass


def sweep_local_controls():
    """Stop the ControlMaster and remove the control folder of every earlier run of this host whose
    process is gone (a `kill -9` leaves both). Returns how many were removed."""
    return sweep_dead_folders(CONTROL_PREFIX, _stop_masters)


# Lists the device folders of earlier runs and who made them ("folder<TAB>owner" per line).
LIST_FOLDERS = ('for d in "${TMPDIR:-/tmp}"/edge-profiler.*; do [ -d "$d" ] || continue; '
                'printf "%s\t%s\n" "$d" "$(cat "$d/owner" 2>/dev/null)"; done')


class SshBackend(Backend):
    name = "ssh"

    def __init__(self, target, notice=lambda message: None):
        self.host = target.ssh_host
        self.notice = notice
        sweep_local_controls()
        self.control = private_folder(CONTROL_PREFIX)
        self.base = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={target.ssh_connect_timeout_s:g}",
                     "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}/%C", "-o", "ControlPersist=120"]
        if target.ssh_config:
            self.base += ["-F", target.ssh_config]
        self.python = target.ssh_python
        self._running = {}  # remote folder -> local ssh process, for cancel()
        self.device = None
        self.missing = {}  # runtime -> its package, where the preflight found it missing on the device
        self.deployment = None  # the last batch's copy onto the device

    # ------------------------------------------------------------ plumbing

    def _ssh(self, command, **kwargs):
        return subprocess.run([*self.base, self.host, command], capture_output=True, **kwargs)

    def sweep_device(self):
        """Stop and remove what an earlier run of this host left on the device when it was killed
        (its process is gone): the harness, if it still runs, and its folder."""
        try:
            listed = self._ssh(LIST_FOLDERS, timeout=60)
        except subprocess.TimeoutExpired:
            return 0
        here = socket.gethostname()
        orphans = []
        for line in listed.stdout.decode(errors="replace").splitlines():
            folder, _, owner = line.partition("\t")
            host, _, pid = owner.strip().rpartition(":")
            if host == here and pid.isdigit() and not pid_alive(int(pid)):
                orphans.append(folder)
        for folder in orphans:
            self._cleanup(folder)
        if orphans:
            self.notice(f"notice: {self.host}: stopped and removed what {len(orphans)} killed run(s) of this host "
                        "left on the device (harness and folder)")
        return len(orphans)

    def preflight(self, runtimes, host_versions):
        """Before any model runs: what killed runs left is cleared, and python3, numpy and each
        runtime are on the device."""
        pairs = [("numpy", "numpy")] + [RUNTIME_PACKAGES[r] for r in runtimes]
        code = PREFLIGHT % repr(pairs)
        self.sweep_device()
        try:
            done = self._ssh(f"{shlex.quote(self.python)} -c {shlex.quote(code)}", timeout=120)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"{self.host}: the device did not answer within 120 s") from None
        out = done.stdout.decode(errors="replace").strip()
        err = done.stderr.decode(errors="replace")
        if done.returncode == 255:
            raise SandboxError(ssh_failure(self.host, err))
        if done.returncode == 127 or (done.returncode != 0 and "not found" in err):
            raise SandboxError(f"{self.host}: {self.python} not found on the device; install Python 3 there "
                               "(e.g. `sudo apt install python3`) or set SSH_PYTHON")
        lines = (harness_record(line, keys=()) for line in reversed(out.splitlines()))
        facts = next((r for r in lines if r and isinstance(r.get("missing"), list)
                      and isinstance(r.get("versions"), dict)), None)
        if not facts:
            raise SandboxError(f"{self.host}: {self.python} on the device failed: "
                               f"{(err.strip().splitlines() or ['no output'])[-1][:200]}") from None
        if "numpy" in facts["missing"]:  # the harness itself needs it: nothing could run
            raise SandboxError(f"{self.host}: {', '.join(facts['missing'])} missing on the device; run there: "
                               f"{self.python} -m pip install {' '.join(facts['missing'])}")
        # A missing runtime costs its own models' rows (error, with the install line), not the run.
        self.missing = {runtime: RUNTIME_PACKAGES[runtime][1] for runtime in runtimes
                        if RUNTIME_PACKAGES[runtime][1] in facts["missing"]}
        for package, version in facts["versions"].items():
            mine = host_versions.get(package)
            if mine and version != mine and package != "numpy":
                self.notice(f"WARNING: {self.host} has {package} {version} and this host {mine}: a calibration "
                            "across runtime versions is weaker")
        self.device = facts
        return facts

    def _bundle(self, paths, data=None):
        """A tar stream of the harness, the models (models/<i>/<name>) and the evaluation data
        (data/<name>), made on the host. A symbolic link is sent as the file it points to."""
        package, files = harness_files()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for rel in files:
                tar.add(os.path.join(package, rel), arcname=os.path.join("profiler", rel))
            for i, path in enumerate(paths):
                tar.add(os.path.realpath(path), arcname=f"models/{i}/{os.path.basename(path)}")
                for extra in companion_files(path):  # an IR's .bin, an ONNX model's external data
                    tar.add(os.path.realpath(os.path.join(os.path.dirname(path), extra)), arcname=f"models/{i}/{extra}")
            if data:
                tar.add(os.path.realpath(data), arcname=f"data/{os.path.basename(data)}")
        return buffer.getvalue()

    def _cleanup(self, folder):
        """Kill the harness if it still runs (with its model worker) and remove the folder."""
        pid_file = shlex.quote(f"{folder}/harness.pid")
        try:
            self._ssh(f"if [ -f {pid_file} ]; then p=$(cat {pid_file}); pkill -KILL -P \"$p\"; kill -KILL \"$p\"; fi "
                      f"2>/dev/null; rm -rf -- {shlex.quote(folder)}", timeout=60)
        except subprocess.TimeoutExpired:
            pass

    # ------------------------------------------------------------ running

    def run(self, target, paths, on_result, runtime=None):
        runtime = runtime or runtime_for(paths[0])
        package = self.missing.get(runtime)
        if package is None:
            return super().run(target, paths, on_result, runtime)
        enforced = {"cpus": False, "memory": False, "sandboxed": False, "how": f"native on {self.host} over SSH"}
        for path in paths:
            record = failure_record(path, runtime, "error", f"{self.host}: {package} missing on the device; run "
                                                            f"there: {self.python} -m pip install {package}")
            record["native_device"] = {"ssh_host": self.host}
            on_result(self._decorate(record, target, enforced))

    def _run_batch(self, target, paths, runtime, emit, enforced):
        enforced.update(cpus=False, memory=False, sandboxed=False,
                        how=f"native on {self.host} over SSH (nothing capped)"
                            + (f"; pinned to device cores {','.join(map(str, target.cpu_set))} with taskset"
                               if target.cpu_set else ""))
        try:
            made = self._ssh("umask 077; d=$(mktemp -d \"${TMPDIR:-/tmp}/edge-profiler.XXXXXXXX\") && "
                             f"echo {shlex.quote(owner_tag())} > \"$d/owner\" && echo \"$d\"", timeout=60)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"{self.host}: the device did not answer within 60 s") from None
        if made.returncode != 0:
            raise SandboxError(ssh_failure(self.host, made.stderr.decode(errors="replace")))
        folder = made.stdout.decode().strip().splitlines()[-1]
        inside = [f"{folder}/models/{i}/{os.path.basename(p)}" for i, p in enumerate(paths)]
        by_inside = dict(zip(inside, paths))
        try:
            bundle = self._bundle(paths, target.data)
            started = time.perf_counter()
            copy = subprocess.run([*self.base, self.host, f"tar -C {shlex.quote(folder)} -xf -"],
                                  input=bundle, capture_output=True, timeout=3600)
            # deployment: the harness, models and data onto the device, once for the batch
            self.deployment = {"copy_ms": round((time.perf_counter() - started) * 1000, 1), "bytes": len(bundle),
                               "models": len(paths)}
            if copy.returncode != 0:
                raise SandboxError(f"{self.host}: copying the harness and models failed: "
                                   f"{(copy.stderr.decode(errors='replace').strip().splitlines() or ['?'])[-1]}")
            args = harness_args(target, inside, cgroup=False, runtime=runtime,
                                data=f"{folder}/data/{os.path.basename(target.data)}" if target.data else None)
            pin = f"taskset -c {','.join(map(str, target.cpu_set))} " if target.cpu_set else ""
            # exec keeps the shell's pid, written first, so cleanup can kill exactly this harness
            command = (f"cd {shlex.quote(folder)} && echo $$ > harness.pid && "
                       f"OMP_NUM_THREADS={target.threads} PYTHONPATH={shlex.quote(folder)} TMPDIR={shlex.quote(folder)} "
                       f"PYTHONDONTWRITEBYTECODE=1 exec {pin}{shlex.quote(self.python)} -u -m profiler.harness "
                       + " ".join(shlex.quote(a) for a in args))
            return self._stream(command, folder, target, by_inside, emit)
        finally:
            self._running.pop(folder, None)
            self._cleanup(folder)

    def _stream(self, command, folder, target, by_inside, emit):
        child = subprocess.Popen([*self.base, self.host, command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
        self._running[folder] = child
        in_flight = next(iter(by_inside.values()), None)
        done_paths = set()
        try:
            for line in child.stdout:
                record = harness_record(line)
                if record:
                    here = by_inside.get(record.get("path"))
                    if here:
                        if record.get("error"):
                            record["error"] = record["error"].replace(record["path"], here)
                        record["path"] = here
                        done_paths.add(here)
                    record["native_device"] = {"ssh_host": self.host}
                    record["deployment"] = dict(self.deployment or {})
                    emit(record)
                    remaining = [p for p in by_inside.values() if p not in done_paths]
                    in_flight = remaining[0] if remaining else None
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if self.cancelled:
            return None
        err = child.stderr.read().decode(errors="replace")
        if child.returncode == 255 and in_flight:  # the connection itself failed
            raise SandboxError(ssh_failure(self.host, err).replace("cannot connect", "the connection dropped")
                               + f" while {os.path.basename(in_flight)} was in flight; the models measured before "
                               "it are in the store")
        if child.returncode == -9 or child.returncode == 137:
            return ("oom", "the harness was killed on the device (SIGKILL: the kernel's OOM killer)")
        if child.returncode not in (0, 1):
            tail = (err.strip().splitlines() or [f"exit code {child.returncode}"])[-1]
            return ("error", f"the harness stopped on {self.host}: {tail[:300]}")
        return None

    def _stop_all(self):
        for folder, child in list(self._running.items()):
            if child.poll() is None:
                child.kill()

    def close(self):
        try:
            subprocess.run([*self.base, "-O", "exit", self.host], capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for name in os.listdir(self.control):
            try:
                os.remove(os.path.join(self.control, name))
            except OSError:
                pass
        try:
            os.rmdir(self.control)
        except OSError:
            pass
