"""What `profiler` uses of a calibration, found through the `edge_profiler.calibration` entry point
(pyproject.toml), so that `profiler` never imports `calibration`: the dependency runs one way."""

import os


def predictor(calibration, *, force=False, warn=print, device_ram_mb=None):
    """A predictor (one method: annotate(record)) from a `Calibration`, its JSON path or its dict.
    Raises CalibrationError with a one-line message."""
    from calibration.core import CalibrationError, Predictor, load

    data = getattr(calibration, "data", calibration)
    if not isinstance(data, (str, os.PathLike, dict)) or isinstance(data, bytes):
        raise CalibrationError(f"calibration: expected a calibration.Calibration, its JSON path or dict, not "
                               f"{type(calibration).__name__}")
    if isinstance(data, (str, os.PathLike)):
        data = load(os.fspath(data))
    elif data.get("schema") is None:
        raise CalibrationError("calibration: the dict is not an edge-profiler calibration (no schema)")
    elif data is calibration:  # a plain dict; a Calibration checked its own when it was made
        from calibration.schema import calibration_problem

        problem = calibration_problem(data)
        if problem:
            raise CalibrationError(f"calibration: not a usable calibration ({problem})")
    return Predictor(data, force=force, warn=warn, device_ram_mb=device_ram_mb)


def figures(calibration, folder, device_name="device"):
    """The predicted-against-measured figures of a calibration (JSON path or dict): PNG paths."""
    from calibration.core import load
    from calibration.plots import plot_all

    data = load(calibration) if isinstance(calibration, (str, os.PathLike)) else calibration
    return plot_all(data, folder, device_name)
