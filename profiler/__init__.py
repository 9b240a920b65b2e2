"""edge-profiler: profile ML models under an edge device's CPU and memory caps.

This package is also copied into the sandbox image, where only numpy and one
runtime are installed, so nothing here may import more than the standard library.
"""

__version__ = "0.1.0"
