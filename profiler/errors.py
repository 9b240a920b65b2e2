"""The error every part of `profiler` raises for a run it cannot do (one line for the user)."""


class ProfileError(Exception):
    """Anything that stops a run before a model is measured, or a store that could not save; one line.
    `results` holds what was measured when there is any."""

    def __init__(self, message, results=None):
        super().__init__(message)
        self.results = results
