"""Sandboxes run the harness under a target's caps and return its JSON records.

A backend starts one sandbox per batch of models (one target, one runtime), streams
the harness's JSON lines back, and says which caps it really enforced. If the sandbox
itself dies mid-batch (memory cap, timeout), the model in flight gets that status and
a fresh sandbox runs the rest.
"""

import sys

from profiler.sandbox.base import (HOST_GRACE_S, LABEL, OWNER, Backend, SandboxError,  # noqa: F401
                                   failure_record, harness_args, harness_files, harness_record, host_versions,
                                   physical_first_cores, pick_cores)


CODE_RUNTIMES = {"torch"}  # TorchScript and torch.export files carry code that runs when loaded


def _stderr(message):
    print(message, file=sys.stderr)


def select_backend(target, notice=_stderr, runtimes=(), warn=_stderr):
    """BACKEND=auto: Docker when an engine answers, else local with a WARNING (through warn, which
    the command prints even when notices are off: an unsandboxed run must never go unsaid). Models
    that carry code are not run unsandboxed unless the user chose the local backend."""
    from profiler.sandbox.local import LocalBackend

    if target.backend == "local":
        return LocalBackend(notice=notice)
    if target.backend == "slurm":
        from profiler.sandbox.slurm import SlurmBackend

        return SlurmBackend(target, notice=notice)
    if target.backend == "ssh":
        from profiler.sandbox.ssh import SshBackend

        backend = SshBackend(target, notice=warn)
        try:
            backend.preflight(runtimes or ["onnx"], host_versions())
        except BaseException:
            backend.close()
            raise
        return backend
    from profiler.sandbox.docker import DockerBackend, engine_problem

    problem = engine_problem()
    if problem is None:
        return DockerBackend(base_image=target.base_image, notice=notice)
    if target.backend == "docker":
        raise SandboxError(f"BACKEND=docker: {problem}")
    code = sorted(CODE_RUNTIMES & set(runtimes))
    if code:
        raise SandboxError(f"{problem}, and {' and '.join(code)} models carry code that would run unsandboxed; "
                           "start Docker, or choose that knowingly with --backend local")
    warn(f"WARNING: {problem}; profiling with the local backend, which caps CPU and memory but is no "
         "security boundary (models run as this user); --backend local chooses it knowingly")
    return LocalBackend(notice=notice)
