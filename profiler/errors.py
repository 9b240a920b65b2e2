"""The errors every part of `profiler` raises (one line for the user): a run it cannot do, a bad setting."""


class ProfileError(Exception):
    """Anything that stops a run before a model is measured, or a store that could not save; one line.
    `results` holds what was measured when there is any."""

    def __init__(self, message, results=None):
        super().__init__(message)
        self.results = results


class ConfigError(Exception):
    """A bad setting; the message names the key and fits on one line."""


class VariantError(Exception):
    """A variant that cannot be made, or a conversion that changed the function; one line."""
