"""edge-profiler: profile ML models under an edge device's CPU and memory caps.

This package is also copied into the sandbox image, where only numpy and one
runtime are installed, so nothing here may import more than the standard library.
"""

__version__ = "0.1.0"

_API = {"Target": ("profiler.config", "TargetDevice"), "profile": ("profiler.api", "profile"),
        "Results": ("profiler.api", "Results"), "ProfileError": ("profiler.api", "ProfileError"),
        "ConfigError": ("profiler.config", "ConfigError"), "Store": ("profiler.store", "Store")}
__all__ = sorted(_API)


def __getattr__(name):
    """The public API (profiler.Target, profiler.profile, profiler.Store, …), imported on first use
    so that the harness inside a sandbox never loads it."""
    if name not in _API:
        raise AttributeError(f"module 'profiler' has no attribute {name!r}")
    import importlib

    module, attribute = _API[name]
    return getattr(importlib.import_module(module), attribute)
