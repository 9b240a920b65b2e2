"""edge-profiler's calibration: fit a host-to-device mapping from a few device measurements, predict.

Owns modelling: device-log importers, fits and priors, suggested references, predictions and their
figures. It may import `profiler` (records, stores, profiling for predict_model); `profiler` never imports
it. A `Calibration` makes the predictor `profiler.profile(calibration=...)` annotates records with.

The public API (`calibration.fit`, `calibration.load`, `calibration.predict_model`, `calibration.suggest`,
`Calibration`, `CalibrationError`) is imported on first use.
"""

_API = {"fit": ("calibration.api", "fit"), "load": ("calibration.api", "load"),
        "predict_model": ("calibration.api", "predict_model"), "suggest": ("calibration.references", "suggest"),
        "Calibration": ("calibration.api", "Calibration"),
        "CalibrationError": ("calibration.errors", "CalibrationError")}
__all__ = sorted(_API)


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'calibration' has no attribute {name!r}")
    import importlib

    module, attribute = _API[name]
    return getattr(importlib.import_module(module), attribute)
