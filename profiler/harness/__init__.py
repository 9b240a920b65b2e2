"""The sandbox side: what runs inside a container, a Slurm step or on a device, copied there whole.

    python -m profiler.harness model.onnx [more models] --threads 4 [--csv device.csv]

Owns the measurement: the supervisor (`supervisor`: one forked worker per model, one JSON record per
model on stdout), the loop in the worker (`measure`), its statistics (`stats`), what disturbed it
(`disturbance`), memory and the cgroup (`memory`), telemetry, accuracy on `--data` (`evaluate`), the
runtime adapters (`runtimes`), the record's version, flags and device CSV (`record`) and the file
helpers both sides use (`files`). It needs the standard library, numpy and one runtime, and imports
nothing of `profiler` outside this package but the version in `profiler/__init__.py`
(tests/test_layout.py); the host side imports from it, never the reverse.
"""
