"""SQLite results store, keyed by model sha256 + target + runtime + runtime version.

Rows hold the harness record unchanged (plus what the host added), as JSON. Loaders
upgrade older result versions through _UPGRADES, so old stores stay readable.
"""

import hashlib
import json
import os
import sqlite3

from profiler.harness import RESULT_VERSION

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    sha256 TEXT, model TEXT, target TEXT, runtime TEXT, runtime_version TEXT,
    status TEXT, result_version INTEGER, created_at TEXT, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_model ON results (model);
"""

# result_version N -> function turning a version-N record into version N+1.
_UPGRADES = {}


class StoreError(Exception):
    pass


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


class Store:
    def __init__(self, path):
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreError(f"--store {path}: folder {parent} does not exist")
        try:
            self.db = sqlite3.connect(path, timeout=10, check_same_thread=False)  # parallel runs save under a lock
            self.db.executescript(SCHEMA)
        except sqlite3.OperationalError as exc:  # locked, read-only, full: a store that cannot be used now
            raise StoreError(f"--store {path}: cannot use the results store ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"--store {path}: not a results store ({exc})") from None

    def save(self, record):
        try:
            self._save(record)
        except sqlite3.Error as exc:
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

    def get(self, key):
        """The good record stored under a result_key, or None."""
        row = self.db.execute("SELECT record FROM results WHERE key = ? AND status = 'ok'", (key,)).fetchone()
        return upgrade(json.loads(row[0])) if row else None

    def records(self, status="ok"):
        rows = self.db.execute("SELECT record FROM results WHERE status = ? ORDER BY created_at", (status,))
        return [upgrade(json.loads(row[0])) for row in rows]

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
