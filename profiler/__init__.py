"""edge-profiler: profile ML models under an edge device's CPU and memory caps.

Owns measuring: targets and settings, sandboxes (Docker, local, Slurm, SSH), the harness that runs in
them, model cards, variants and conversions, the results store and every export. It never imports
`calibration`, by any route: `profile(calibration=...)` takes an object that makes a predictor, and the
command layer (`profiler/cli.py`, `calibration/cli.py`: parse, call the APIs, print, exit) is the one
place that imports both packages; no library module imports the command layer (tests/test_layout.py).

`profiler/harness` is the sandbox side: it and this file (the version) are copied into the sandbox
image or onto a device, where only numpy and one runtime are installed, so this file imports nothing
at load time and the harness package imports nothing of `profiler` outside itself; the host side
imports from the harness, never the reverse (tests/test_layout.py).

Host side, by job: `config` (the settings table and the Target; `values` parses one value), `api`
(profile and the Profiler session), `batch` (one call's measurements: store, sweep, re-measurement,
agreement), `sweep`, `stability` and `cores` (batches run on claimed cores, shaky figures taken
again), `sandbox/` (the backends), `analysis` and `cards/` (model cards), `variants` and
`conversions` (made models, checked), `schema` (a record's fields), `store`, `results`, `export`,
`report`, `html_report` and `figures` (what a run leaves, `escape` making names safe in each),
`errors` (ProfileError, ConfigError, VariantError), `interrupts`; `pipeline` and `cli` are the command.
"""

__version__ = "0.1.0"

_API = {"Target": ("profiler.config", "TargetDevice"), "profile": ("profiler.api", "profile"),
        "Profiler": ("profiler.api", "Profiler"),
        "Results": ("profiler.results", "Results"), "ProfileError": ("profiler.errors", "ProfileError"),
        "ConfigError": ("profiler.errors", "ConfigError"), "Store": ("profiler.store", "Store")}
__all__ = sorted(_API)


def __getattr__(name):
    """The public API (profiler.Target, profiler.profile, profiler.Store, …), imported on first use
    so that the harness inside a sandbox never loads it."""
    if name not in _API:
        raise AttributeError(f"module 'profiler' has no attribute {name!r}")
    import importlib

    module, attribute = _API[name]
    return getattr(importlib.import_module(module), attribute)
