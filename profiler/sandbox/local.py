"""Local backend: the harness in a child process, pinned to CPUS cores, capped by a cgroup.

The memory cap needs a cgroup this process may create (root, cgroup v1 or v2).
Where it cannot, the child runs uncapped and the result says so in `enforced`.
"""

import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import profiler
from profiler.values import mib_to_bytes
from profiler.harness.supervisor import die_with_parent
from profiler.sandbox.base import HOST_GRACE_S, LABEL, Backend, harness_args, harness_record, pick_cores

CFS_PERIOD_US = 100_000


class CgroupCaps:
    """A fresh cgroup (v1: memory and cpu hierarchies; v2: one) holding the memory cap and CPU quota."""

    def __init__(self, memory_mb, swap_mb, cpus):
        self.dirs, self.notes = [], []
        self.memory, self.quota = False, False
        name = f"{LABEL}-{os.getpid()}-{uuid.uuid4().hex[:12]}"  # the owner's pid: see sweep_cgroups
        if os.path.isdir("/sys/fs/cgroup/memory"):
            self._v1(name, memory_mb, swap_mb, cpus)
        elif os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            self._v2(name, memory_mb, swap_mb, cpus)
        else:
            self.notes.append("no cgroup filesystem")

    def _mkdir(self, parent, name):
        path = os.path.join(parent, name)
        try:
            os.mkdir(path)
        except OSError as exc:
            self.notes.append(f"cannot create a cgroup in {parent} ({exc.strerror})")
            return None
        self.dirs.append(path)
        return path

    @staticmethod
    def _write(path, value):
        with open(path, "w") as f:
            f.write(str(value))

    def _v1(self, name, memory_mb, swap_mb, cpus):
        if memory_mb:
            path = self._mkdir("/sys/fs/cgroup/memory", name)
            if path:
                limit = mib_to_bytes(memory_mb)
                self._write(os.path.join(path, "memory.limit_in_bytes"), limit)
                memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):
                    self._write(memsw, limit + mib_to_bytes(swap_mb))
                else:
                    self._write(os.path.join(path, "memory.swappiness"), 0)
                    if swap_mb:
                        self.notes.append("swap accounting is off, so SWAP is not capped")
                self.memory = True
        if cpus != math.ceil(cpus):
            root = "/sys/fs/cgroup/cpu,cpuacct" if os.path.isdir("/sys/fs/cgroup/cpu,cpuacct") else "/sys/fs/cgroup/cpu"
            path = self._mkdir(root, name)
            if path:
                self._write(os.path.join(path, "cpu.cfs_period_us"), CFS_PERIOD_US)
                self._write(os.path.join(path, "cpu.cfs_quota_us"), int(cpus * CFS_PERIOD_US))
                self.quota = True

    def _v2(self, name, memory_mb, swap_mb, cpus):
        parent = _v2_parent()
        if not (memory_mb or cpus != math.ceil(cpus)):
            return
        path = self._mkdir(parent, name)
        if not path:
            return
        if memory_mb:
            try:
                self._write(os.path.join(path, "memory.max"), mib_to_bytes(memory_mb))
                self._write(os.path.join(path, "memory.swap.max"), mib_to_bytes(swap_mb))
                self.memory = True
            except OSError as exc:
                self.notes.append(f"the memory controller is not enabled for {parent} ({exc.strerror})")
        if cpus != math.ceil(cpus):
            try:
                self._write(os.path.join(path, "cpu.max"), f"{int(cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}")
                self.quota = True
            except OSError as exc:
                self.notes.append(f"the cpu controller is not enabled for {parent} ({exc.strerror})")

    def join(self):
        """Called in the child before exec: move this process into every cgroup made."""
        for path in self.dirs:
            self._write(os.path.join(path, "cgroup.procs"), os.getpid())

    def remove(self):
        for path in reversed(self.dirs):
            _remove_cgroup(path)
        self.dirs = []


def _v2_parent():
    """Where this process's cgroups v2 are made: beside its own cgroup, since a process may not sit
    in an inner node with controllers enabled."""
    own = open("/proc/self/cgroup").read().strip().split("::")[-1]
    return os.path.dirname(os.path.join("/sys/fs/cgroup", own.lstrip("/"))) if own != "/" else "/sys/fs/cgroup"


def _remove_cgroup(path):
    """Kill what is left in a cgroup and remove it (the kernel needs it empty first)."""
    for _ in range(50):
        try:
            for pid in open(os.path.join(path, "cgroup.procs")).read().split():
                os.kill(int(pid), signal.SIGKILL)
            os.rmdir(path)
            return
        except ProcessLookupError:
            continue
        except OSError:
            time.sleep(0.02)


def _cgroup_roots():
    roots = [os.path.join("/sys/fs/cgroup", c) for c in ("memory", "cpu,cpuacct", "cpu")]
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        roots.append(_v2_parent())
    return [r for r in dict.fromkeys(roots) if os.path.isdir(r)]


def sweep_cgroups():
    """Remove the cgroups of profiles that died without cleaning up (kill -9); returns how many.

    A cgroup is named edge-profiler-<owner pid>-<id>; one whose owner is gone is emptied and removed."""
    removed = 0
    for root in _cgroup_roots():
        for name in os.listdir(root):
            parts = name.split("-")
            if not name.startswith(LABEL + "-") or len(parts) < 4 or not parts[2].isdigit():
                continue
            try:
                os.kill(int(parts[2]), 0)
                continue  # its owner is alive
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            _remove_cgroup(os.path.join(root, name))
            removed += not os.path.exists(os.path.join(root, name))
    return removed


class LocalBackend(Backend):
    name = "local"

    def __init__(self, notice=lambda message: None):
        self._running = set()  # harness process groups, for cancel()
        try:
            removed = sweep_cgroups()
        except OSError:
            removed = 0
        if removed:
            notice(f"notice: removed {removed} cgroup(s) left by a profile that was killed")

    def _run_batch(self, target, paths, runtime, emit, enforced):
        cores = pick_cores(target)
        caps = CgroupCaps(target.memory_mb, target.swap_mb, target.cpus)
        fractional = target.cpus != math.ceil(target.cpus)
        enforced["cpus"] = not fractional or caps.quota
        enforced["memory"] = caps.memory if target.memory_mb else False
        how = [f"sched_setaffinity to cores {','.join(map(str, cores))}"]
        if fractional:
            how.append(f"CFS quota {target.cpus:g} CPU" if caps.quota else "no CPU quota for the fraction")
        if target.memory_mb:
            how.append(f"cgroup memory limit {target.memory_mb:g} MiB" if caps.memory else "memory uncapped")
        else:
            how.append("no MEMORY set")
        # Caps, not a security boundary: the model runs as this user, with this user's files and network.
        enforced["sandboxed"] = False
        enforced["how"] = "; ".join(["not sandboxed (caps only)"] + how + caps.notes)

        def enter_sandbox():
            die_with_parent()  # a profile killed with kill -9 takes its harness with it
            os.setsid()  # its own process group, so a Ctrl-C reaches the CLI first
            os.sched_setaffinity(0, cores)
            caps.join()

        project_root = os.path.dirname(os.path.dirname(os.path.abspath(profiler.__file__)))
        env = dict(os.environ, PYTHONPATH=project_root + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS=str(target.threads), PYTHONDONTWRITEBYTECODE="1")
        command = [sys.executable, "-m", "profiler.harness", *harness_args(target, paths, caps.memory, runtime)]
        child = None
        # stderr goes to a file: runtimes can log a lot, and a full pipe would stall the child
        with tempfile.TemporaryFile() as stderr:
            try:
                child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                         preexec_fn=enter_sandbox, env=env)
                self._running.add(child.pid)
                if self.cancelled:
                    self._stop_all()
                failure = self._stream(child, target, emit)
                if failure is None and child.returncode not in (0, 1):
                    stderr.seek(0)
                    failure = self._death(child.returncode, stderr.read(), caps)
                return failure
            finally:
                if child is not None:
                    self._running.discard(child.pid)
                self._stop(child, caps)

    def _stop_all(self):
        for pid in list(self._running):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @staticmethod
    def _stop(child, caps):
        try:
            if child is not None and child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            if child is not None:
                child.stdout.close()
        finally:
            caps.remove()

    @staticmethod
    def _stream(child, target, emit):
        """Read JSON lines until the child closes stdout; None, or a failure if it hung."""
        buffer = b""
        limit = target.timeout_s + HOST_GRACE_S
        deadline = time.monotonic() + limit
        fd = child.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                return ("timeout", f"the sandbox gave no result within {limit:g} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                record = harness_record(line)
                if record:
                    emit(record)
                    deadline = time.monotonic() + limit
        child.wait()
        return None

    @staticmethod
    def _death(returncode, stderr, caps):
        lines = stderr.decode(errors="replace").strip().splitlines()
        if returncode == -signal.SIGKILL and caps.memory:
            return ("oom", "the sandbox was killed by the memory cap")
        tail = lines[-1] if lines else f"exit code {returncode}"
        return ("error", f"the harness stopped: {tail[:300]}")
