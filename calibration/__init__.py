"""edge-profiler's calibration: fit a host-to-device mapping from a few device measurements, predict.

Owns modelling: device-log importers, fits and priors, suggested references, predictions and their
figures. It may import `profiler` (records, stores, profiling for predict_model); `profiler` never imports
it. A `Calibration` makes the predictor `profiler.profile(calibration=...)` annotates records with.

Modules by job: `hostdata` reads host results and pairs them with device rows (`importers` reads the
device's logs); `fitting` fits one mapping per metric, thread count and precision (`models` holds the
estimators and the card features they read, `priors` the shipped shapes, `mix` the operator mix);
`fits` is one fitted mapping (`Fit`), whose estimator predicts and gives its interval; `predicting`
applies a calibration's fits to records; `schema` is the file: its JSON Schema, version, upgrades,
writing and reading; `api` the `Calibration` object and the functions above; `cli` the command.

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
