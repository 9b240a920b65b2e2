"""The worker's memory: /proc/self/status fields, glibc's allocator held in a known state, the cgroup's
counters, and the page cache read through."""

import os


MIB = 1024 * 1024


def proc_status_fields(*fields):
    """{field: MiB} for the named /proc/self/status fields (VmHWM, RssAnon, RssFile, ...)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name = line.split(":", 1)[0]
            if name in fields:
                out[name] = int(line.split()[1]) / 1024.0
    return out


def proc_status_mb(field):
    return proc_status_fields(field).get(field)


class Allocator:
    """glibc's malloc, set the same way in every worker, whatever the process did before.

    By default glibc serves an allocation above a threshold from its own mapping and raises that
    threshold each time such a mapping is freed, so whether a model's large buffers come from fresh
    pages or from the heap depends on the allocations the process happened to make before the fork.
    The same TorchScript model then peaks 204.8 or 212.7 MiB from one process to the next, and its
    median moves by half when its buffers are mapped afresh at every run. So the load and the first
    runs use a fixed small threshold (every large buffer is its own mapping, returned when freed, so
    the high-water mark is what the model holds at once), and the timed runs a fixed large one (the
    state the dynamic threshold converges to: buffers are reused from the heap)."""

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    PEAK = 128 * 1024  # glibc's default threshold, held fixed
    STEADY = 32 * MIB  # the most glibc's dynamic threshold reaches on 64-bit

    def __init__(self):
        self.mallopt = None
        try:
            if os.confstr("CS_GNU_LIBC_VERSION"):
                import ctypes

                self.mallopt = ctypes.CDLL(None).mallopt
        except (ValueError, OSError, AttributeError):  # not glibc (musl, another libc): left as it is
            pass

    @property
    def name(self):
        return "glibc" if self.mallopt else "unchanged"

    def _set(self, threshold):
        if self.mallopt:
            self.mallopt(self.M_MMAP_THRESHOLD, threshold)
            self.mallopt(self.M_TRIM_THRESHOLD, 2 * threshold)

    def for_peak(self):
        self._set(self.PEAK)

    def for_timing(self):
        self._set(self.STEADY)


class Cgroup:
    """This process's own memory and cpu cgroup, v2 or v1, read-only."""

    def __init__(self):
        self.version, self.memory_dir, self.cpu_dir = None, None, None
        self.oom_dirs = []  # every capped cgroup above this process: an OOM kill is counted where the cap hit
        try:
            lines = open("/proc/self/cgroup").read().splitlines()
        except OSError:
            return
        paths = {}
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
        v1_memory = self._find("/sys/fs/cgroup/memory", paths.get("memory"), "memory.limit_in_bytes")
        if v1_memory:
            capped = self._capped_ancestors(v1_memory, "/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            self.oom_dirs = list(dict.fromkeys([v1_memory, *capped]))  # the victim's own cgroup counts its kill
            v1_memory = capped[0] if capped else v1_memory
            self.version, self.memory_dir = 1, v1_memory
            self.cpu_dir = (self._find("/sys/fs/cgroup/cpu,cpuacct", paths.get("cpu"), "cpu.stat")
                            or self._find("/sys/fs/cgroup/cpu", paths.get("cpu"), "cpu.stat"))
        elif "" in paths:
            v2 = self._find("/sys/fs/cgroup", paths[""], "memory.max")
            if v2:
                self.version, self.memory_dir, self.cpu_dir = 2, v2, v2

    @staticmethod
    def _capped_ancestors(directory, root, name):
        """The cgroups from here up that hold a cap, nearest first: a Slurm task's own cgroup is
        uncapped, its step's and its job's are not (the cap and the peak are read at the nearest)."""
        here, found = directory, []
        while True:
            try:
                with open(os.path.join(here, name)) as f:
                    if int(f.read().strip()) < 1 << 60:
                        found.append(here)
            except (OSError, ValueError):
                pass
            if os.path.normpath(here) in (os.path.normpath(root), "/"):
                return found
            here = os.path.dirname(here)

    @staticmethod
    def _find(root, path, probe):
        # In a container the own cgroup is mounted as the root; on a host it sits at its path.
        for candidate in ([os.path.join(root, path.lstrip("/"))] if path else []) + [root]:
            if os.path.exists(os.path.join(candidate, probe)):
                return candidate
        return None

    def _read(self, directory, name):
        try:
            with open(os.path.join(directory, name)) as f:
                return f.read().strip()
        except (OSError, TypeError):
            return None

    def _int(self, name):
        text = self._read(self.memory_dir, name)
        return None if text in (None, "max") else int(text)

    def _stat(self, directory, name):
        text = self._read(directory, name) or ""
        return {k: int(v) for k, v in (line.split()[:2] for line in text.splitlines() if len(line.split()) >= 2)}

    def limit_bytes(self):
        value = self._int("memory.max" if self.version == 2 else "memory.limit_in_bytes")
        return value if value is not None and value < 1 << 60 else None

    def peak_bytes(self):
        if getattr(self, "_peak_fd", None) is not None:  # v2: the peak since our reset, via that fd
            return int(os.pread(self._peak_fd, 64, 0).decode().strip())
        return self._int("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")

    def reset_peak(self):
        """Restart the peak from current usage, so it belongs to the next model. Needs a
        writable cgroup (the local backend's); in a container the files are read-only."""
        try:
            if self.version == 1:
                with open(os.path.join(self.memory_dir, "memory.max_usage_in_bytes"), "w") as f:
                    f.write("0")
                return True
            if self.version == 2:  # per-file-descriptor reset (Linux 6.12+); forked workers share the fd
                if getattr(self, "_peak_fd", None) is None:
                    self._peak_fd = os.open(os.path.join(self.memory_dir, "memory.peak"), os.O_RDWR)
                os.write(self._peak_fd, b"reset")
                return True
        except OSError:
            self._peak_fd = None
        return False

    def usage_bytes(self):
        return self._int("memory.current" if self.version == 2 else "memory.usage_in_bytes")

    def anon_bytes(self):
        stat = self._stat(self.memory_dir, "memory.stat")
        return stat.get("anon") if self.version == 2 else stat.get("total_rss", stat.get("rss"))

    def oom_kills(self):
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        counts = [self._stat(d, name).get("oom_kill") for d in (self.oom_dirs or [self.memory_dir])]
        counts = [c for c in counts if c is not None]
        return sum(counts) if counts else None

    def throttling(self):
        stat = self._stat(self.cpu_dir, "cpu.stat")
        if "nr_throttled" not in stat:
            return None
        usec = stat["throttled_usec"] if "throttled_usec" in stat else stat.get("throttled_time", 0) / 1000
        return {"nr_periods": stat.get("nr_periods"), "nr_throttled": stat["nr_throttled"],
                "throttled_ms": round(usec / 1000.0, 3)}


def read_through(paths, chunk=1 << 20):
    """Read files whole, so their pages sit in the page cache, charged to whoever reads them now."""
    buffer = bytearray(chunk)
    for path in paths:
        try:
            with open(path, "rb", buffering=0) as f:
                while f.readinto(buffer):
                    pass
        except OSError:
            pass  # an unreadable model is reported as that model's error row


def mapped_files():
    """Files this process has mapped: the interpreter, numpy's and the runtime's shared libraries."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                found.add(fields[5].strip())
    return sorted(p for p in found if os.path.isfile(p))


def to_mb(value):
    return None if value is None else round(value / MIB, 3)
