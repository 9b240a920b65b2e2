"""Files the host side writes: atomic writes, clobber checks, FIFOs and devices written through.
Standard library only: the harness uses it on a device too."""

import contextlib
import errno
import hashlib
import os
import stat
import sys
import time

FIFO_WAIT_S = 10.0  # how long a FIFO output waits for a reader before that is an error


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_special(path, wait_s=FIFO_WAIT_S):
    """A device or FIFO opened for writing; a FIFO that no process reads within wait_s is an OSError,
    never a write that blocks forever."""
    if not stat.S_ISFIFO(os.stat(path).st_mode):
        return open(path, "w", newline="")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            if time.monotonic() >= deadline:
                raise OSError(errno.ENXIO, f"a FIFO that no process reads (waited {wait_s:g} s)", path) from None
            time.sleep(0.05)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "w", newline="")


def _tmp(path):
    return f"{path}.tmp-{os.getpid()}"


def is_special(path):
    """A character device, FIFO or socket: written through, never replaced by a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISBLK(mode)


def clobbered_input(outputs, inputs):
    """One line if an output (option -> path) is also an input (label -> path) or another output, else None."""
    def same(a, b):
        try:
            return os.path.samefile(a, b)
        except OSError:
            return os.path.realpath(a) == os.path.realpath(b)

    outputs = [(option, path) for option, path in outputs.items() if path and not is_special(path)]
    for i, (option, path) in enumerate(outputs):
        for label, source in inputs.items():
            if source and os.path.exists(source) and same(path, source):
                return f"{option} {path}: is {label}, an input of this run; refusing to overwrite it"
        for other, second in outputs[i + 1:]:
            if same(path, second):
                return f"{option} and {other} both write {path}; give each its own file"
    return None


def check_writable(path):
    """Raise OSError naming `path` when a result file could not be written there (nothing is left behind)."""
    if os.path.isdir(path):
        raise OSError(errno.EISDIR, "is a folder, not a file", path)
    if is_special(path):
        if not os.access(path, os.W_OK):
            raise OSError(errno.EACCES, "Permission denied", path)
        return
    try:
        open(_tmp(path), "w").close()
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    os.remove(_tmp(path))


def write_atomic(path, write):
    """Write to a temp file beside `path`, then rename; an OSError names `path`, not the temp file.
    A device or FIFO (/dev/null, /dev/stdout, a named pipe) is written through instead."""
    if is_special(path):
        try:
            with open_special(path) as f:
                write(f)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from None
        return
    tmp = _tmp(path)
    try:
        with open(tmp, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def silenced():
    """stdout and stderr of this process, C++ included, to /dev/null for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [null]:
            os.close(fd)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_folder(prefix):
    """A new 0700 folder in the temporary directory, named prefix + this pid, so that a later run can
    tell (sweep_dead_folders) that the process which made it is gone."""
    import tempfile

    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


def sweep_dead_folders(prefix, before_removal=None):
    """Remove the private_folder()s of processes that are gone (a `kill -9` leaves them);
    before_removal(path) runs first for each. Returns how many were removed."""
    import shutil
    import tempfile

    folder, removed = tempfile.gettempdir(), 0
    for name in os.listdir(folder):
        pid = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
        path = os.path.join(folder, name)
        if not pid.isdigit() or pid_alive(int(pid)) or not os.path.isdir(path) or os.path.islink(path):
            continue
        if before_removal:
            before_removal(path)
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def cache_folder(*parts):
    """A folder under the user's cache ($XDG_CACHE_HOME, else ~/.cache)/edge-profiler (not made here)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edge-profiler", *parts)


NAMES_PREFIX = "edge-profiler-names-"


def printable(path):
    """A path as text: bytes that are not UTF-8 (a Latin-1 name, say) shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_utf8_name(path):
    try:
        os.fspath(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@contextlib.contextmanager
def utf8_names(paths):
    """{path as given: path to hand to the runtimes}: a file whose name is not UTF-8 text (a Latin-1
    name, say; the runtimes and the Docker API take UTF-8 names only) is reached through a link
    named with its bytes shown as \\xNN, in a private folder removed afterwards (or by the next run,
    after a kill -9); every other path maps to itself."""
    import shutil

    odd = [p for p in paths if not is_utf8_name(p)]
    if not odd:
        yield {p: p for p in paths}
        return
    sweep_dead_folders(NAMES_PREFIX)
    folder = private_folder(NAMES_PREFIX)
    try:
        mapping = {}
        for i, path in enumerate(paths):
            if is_utf8_name(path):
                mapping[path] = path
                continue
            shown = printable(os.path.basename(path))
            slot = os.path.join(folder, str(i))  # two odd names may show alike
            os.mkdir(slot)
            os.symlink(os.path.realpath(path), os.path.join(slot, shown))
            mapping[path] = os.path.join(slot, shown)
        yield mapping
    finally:
        shutil.rmtree(folder, ignore_errors=True)
