"""Ctrl-C and SIGTERM that wait for a write to finish: after every model the store and every
export hold the same rows, so an interrupted run never leaves one file a row ahead of another."""

import contextlib
import signal
import threading

_lock = threading.Lock()
_depth = 0
_pending = None


class Terminated(KeyboardInterrupt):
    """SIGTERM: cleaned up like Ctrl-C, but exits 143 (128 + 15) as the convention is."""


def _handler(signum, frame):
    global _pending
    with _lock:
        if _depth:
            _pending = signum  # raised when the write in progress is done
            return
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def install():
    """Route SIGINT and SIGTERM through the deferring handler (the main thread only can)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


@contextlib.contextmanager
def undivided():
    """A block that a signal does not cut in two; the signal is raised right after it."""
    global _depth, _pending
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            pending, _pending = (_pending, None) if _depth == 0 else (None, _pending)
        if pending is not None:
            signal.raise_signal(pending)  # handled in the main thread, now outside any write
