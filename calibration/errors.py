"""The calibration package's exception, and what lets its heavy modules load only when used."""

import importlib


class CalibrationError(Exception):
    """One line naming the problem (file, line or column where there is one)."""


class lazy_module:
    """A module imported on first attribute access."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._name), attribute)
