"""Exported zoo files kept in the user's cache, keyed by everything that makes them.

An export is a pure function of the exporter's source, the versions of the packages it runs and its
arguments (names, seeds, precision): the key hashes exactly those, so changing any of them exports
again, and two experiments (or test runs) that need the same network export it once. Files live in
$XDG_CACHE_HOME/edge-profiler/zoo/<key>/ (else ~/.cache/...); EDGE_PROFILER_EXPORT_CACHE=0 turns
the cache off.
"""

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil


def enabled():
    return os.environ.get("EDGE_PROFILER_EXPORT_CACHE", "1") != "0"


def key(modules, packages, *arguments):
    """A hex key over the source of `modules` (module names, found without importing them), the
    installed versions of `packages` and `arguments` (their repr)."""
    digest = hashlib.sha256()
    for name in modules:
        with open(importlib.util.find_spec(name).origin, "rb") as f:
            digest.update(name.encode() + b"\0" + f.read() + b"\0")
    for package in packages:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{package}=={version}\0".encode())
    digest.update(repr(arguments).encode())
    return digest.hexdigest()[:24]


def _cached(cache_key, path):
    from profiler.harness.files import cache_folder

    return os.path.join(cache_folder("zoo", cache_key), os.path.basename(path))


def fetch(cache_key, path):
    """Copy the cached file for `cache_key` to `path` (atomically); False when there is none."""
    source = _cached(cache_key, path)
    if not enabled() or not os.path.isfile(source):
        return False
    shutil.copyfile(source, path + ".tmp")
    os.replace(path + ".tmp", path)
    return True


def keep(cache_key, path):
    """Store the finished file `path` under `cache_key`; a cache that cannot be written is skipped."""
    if not enabled():
        return
    target = _cached(cache_key, path)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(path, f"{target}.{os.getpid()}.tmp")
        os.replace(f"{target}.{os.getpid()}.tmp", target)
    except OSError:
        pass


def make(cache_key, path, write):
    """Make `path` unless it is there: from the cache, else by write(temporary path), then kept."""
    if os.path.exists(path) or fetch(cache_key, path):
        return path
    write(path + ".tmp")
    os.replace(path + ".tmp", path)
    keep(cache_key, path)
    return path
