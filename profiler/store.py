"""SQLite results store, keyed by model sha256 + target + runtime + runtime version.

Rows hold the harness record unchanged (plus what the host added), as JSON. Loaders
upgrade older result versions through _UPGRADES, so old stores stay readable.
"""

import hashlib
import json
import os
import sqlite3

from profiler.errors import ProfileError
from profiler.harness.record import RESULT_VERSION
from profiler.schema import record_problem

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    sha256 TEXT, model TEXT, target TEXT, runtime TEXT, runtime_version TEXT,
    status TEXT, result_version INTEGER, created_at TEXT, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_model ON results (model);
"""

def _whole_run_peak(record):
    """Version 1 took the peak over every run, timed runs included, under glibc's dynamic threshold."""
    if record.get("peak_memory_mb") is not None and "memory" not in record:
        record["memory"] = {"basis": "whole_run", "allocator": "unchanged",
                            "whole_run_peak_mb": record.get("rss_peak_mb")}
    return record


# result_version N -> function turning a version-N record into version N+1.
_UPGRADES = {1: _whole_run_peak}


class StoreError(ProfileError):
    """The store cannot be opened, read or written; one line (a ProfileError, as the API documents)."""


def upgrade(record):
    version = record.get("result_version", 1)
    while version < RESULT_VERSION:
        record = _UPGRADES[version](record)
        version += 1
        record["result_version"] = version
    return record


def result_key(record):
    target = json.dumps(record.get("target"), sort_keys=True)
    parts = [record.get("sha256") or record.get("path") or "", target, record.get("runtime") or "",
             record.get("runtime_version") or "", str(record.get("backend"))]
    if record.get("settings") is not None:  # iterations, warm-up, seed, shapes, target interval
        parts.append(json.dumps(record["settings"], sort_keys=True))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


WAIT_S = 10.0  # how long a save waits for a store another process is writing


class Store:
    def __init__(self, path, wait_s=WAIT_S):
        if not isinstance(path, (str, os.PathLike)):
            raise StoreError(f"store: expected a file path, not {type(path).__name__}")
        self.path, self.skipped = os.fspath(path), []
        if os.path.isdir(self.path):
            raise StoreError(f"--store {self.path}: is a folder, not a results store file")
        path = self.path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreError(f"--store {path}: folder {parent} does not exist")
        try:
            # parallel runs save under a lock, each waiting up to wait_s for the others
            self.db = sqlite3.connect(path, timeout=wait_s, check_same_thread=False)
            self.db.executescript(SCHEMA)
        except sqlite3.OperationalError as exc:  # locked, read-only, full: a store that cannot be used now
            raise StoreError(f"--store {path}: cannot use the results store ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"--store {path}: not a results store ({exc})") from None

    def save(self, record):
        try:
            self._save(record)
        except (sqlite3.Error, TypeError, ValueError) as exc:
            raise StoreError(f"--store {self.path}: could not save {record.get('model')} ({exc})") from None

    def _save(self, record):
        # A failure is kept beside the last good measurement, never in its place: a re-run that
        # times out must not take a model out of the calibration.
        key = result_key(record) + ("" if record.get("status") == "ok" else ":failed")
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, record.get("sha256"), record.get("model"),
                 json.dumps(record.get("target"), sort_keys=True), record.get("runtime"),
                 record.get("runtime_version"), record.get("status"), record.get("result_version", RESULT_VERSION),
                 record.get("started_at"), json.dumps(record)))

    def _load(self, key, text):
        """A stored record, or None (noted in `skipped`) when the row is not one this version can read."""
        try:
            record = json.loads(text)
            if not isinstance(record, dict) or not isinstance(record.get("model"), str):
                raise ValueError("not a result record")
            version = record.get("result_version", 1)
            if not isinstance(version, int) or version > RESULT_VERSION:
                raise ValueError(f"result version {version!r} is newer than this edge-profiler reads")
            record = upgrade(record)
            problem = record_problem(record)
            if problem:
                raise ValueError(problem)
            return record
        except (ValueError, TypeError, KeyError) as exc:
            self.skipped.append(f"row {str(key)[:12]}: {str(exc)[:160]}")
            return None

    def _query(self, sql, args):
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:  # locked by another writer past the timeout, or damaged
            raise StoreError(f"--store {self.path}: cannot read the results store ({exc})") from None

    def get(self, key):
        """The good record stored under a result_key, or None."""
        rows = self._query("SELECT key, record FROM results WHERE key = ? AND status = 'ok'", (key,))
        return self._load(*rows[0]) if rows else None

    def records(self, status="ok"):
        """The readable records of one status; unreadable rows are skipped and named in `skipped`."""
        rows = self._query("SELECT key, record FROM results WHERE status = ? ORDER BY created_at", (status,))
        return [r for r in (self._load(key, text) for key, text in rows) if r is not None]

    def to_pandas(self, status="ok"):
        """The stored records of one status ("ok", "oom", "timeout", "error") as a DataFrame,
        flattened like `Results.to_pandas()`.

        >>> import os, tempfile
        >>> from profiler import Store
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     store = Store(os.path.join(folder, "profiles.db"))
        ...     empty = store.to_pandas()
        ...     store.close()
        >>> len(empty), list(empty.columns)
        (0, ['model', 'runtime', 'status'])
        """
        from profiler.export import to_pandas

        return to_pandas(self.records(status))

    def close(self):
        self.db.close()
