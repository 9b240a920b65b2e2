"""Slurm backend: each batch of models runs in a Slurm job step, capped by Slurm's own cgroups.

Jobs are submitted with submitit. The step runs the harness directly (no container: `docker run`
in a step would escape the job's cgroup), so the step's cpuset and memory cgroup are the caps,
and the harness reads them back from inside. Records stream back through the step's output file,
which submitit's job folder holds: that folder, the models and this tool must be on a filesystem
every node sees.

Job states come from slurmctld (squeue) rather than accounting (sacct), so a cluster without
slurmdbd works; a job is polled every second, well within MinJobAge.
"""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from profiler.sandbox.base import HOST_GRACE_S, LABEL, Backend, SandboxError, harness_args, harness_record

DEFAULT_FOLDER = ".edge-profiler-slurm"
POLL_S = 0.1
STATE_EVERY_S = 1.0
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "STAGE_OUT",
          "SIGNALING"}
UNREADABLE = 3  # the step's exit code when a model cannot be read on its node


class HarnessStep:
    """What the job runs, in the step: check the models are readable here, then become the harness."""

    def __init__(self, argv, paths, threads):
        self.argv, self.paths, self.threads = argv, paths, threads

    def __call__(self):
        for path in self.paths:
            if not os.access(path, os.R_OK):
                print(json.dumps({"unreadable": path, "node": socket.gethostname()}), flush=True)
                os._exit(UNREADABLE)
        # submitit asks Slurm for USR2 before the time limit (for checkpoints); the harness has none
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-u", "-m", "profiler.harness", *self.argv])


def job_name(pid=None):
    """Names the process that submitted a job, so a later run can cancel the jobs of one that was killed."""
    return f"{LABEL}-{socket.gethostname()}-{os.getpid() if pid is None else pid}"


def sweep_orphans():
    """Cancel this user's jobs whose submitting profile on this host is gone (kill -9), and remove
    their files from the folder they were submitted from; returns how many."""
    code, _ = _run(["squeue", "--version"])
    if code != 0:
        return 0
    done = subprocess.run(["squeue", "--me", "--noheader", "--format=%i|%j|%o"], capture_output=True, text=True)
    prefix = job_name(0)[:-1]
    orphans = {}
    for line in done.stdout.splitlines():
        job_id, _, rest = line.partition("|")
        name, _, command = rest.partition("|")
        pid = name[len(prefix):] if name.startswith(prefix) else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            orphans[job_id] = os.path.dirname(command.strip())  # submitit's script lies in the job folder
    if orphans:
        subprocess.run(["scancel", *orphans], capture_output=True)
        for job_id, folder in orphans.items():
            wait_gone(job_id)
            if folder and os.path.isdir(folder):
                remove_job_files(folder, job_id)
    return len(orphans)


def wait_gone(job_id, limit_s=10):
    """Wait until Slurm no longer runs the job, so its files are not written again after removal."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        done = subprocess.run(["squeue", "--noheader", "--format=%T", "--jobs", str(job_id)], capture_output=True,
                              text=True)
        if done.returncode != 0 or done.stdout.strip() not in ACTIVE | {"COMPLETING"}:
            return
        time.sleep(0.1)


def remove_job_files(folder, job_id):
    """submitit's files of one job: <id>_*, and the link to its submission script."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(f"{job_id}_") or (name.startswith(".submission_file_") and os.path.realpath(path)
                                             .startswith(os.path.join(folder, f"{job_id}_"))):
            try:
                os.remove(path)
            except OSError:
                pass


def _slurm_time(seconds):
    seconds = int(math.ceil(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def sbatch_options(target, n_models):
    """The job's options, as sbatch names them (one core per CPU, whole cores, memory, time)."""
    options = {"cpus-per-task": math.ceil(target.cpus), "job-name": job_name(),
               "time": _slurm_time(max(n_models, 1) * target.timeout_s + HOST_GRACE_S)}
    if target.memory_mb:
        options["mem"] = f"{int(math.ceil(target.memory_mb))}M"
    if target.slurm_partition:
        options["partition"] = target.slurm_partition
    if target.slurm_account:
        options["account"] = target.slurm_account
    for arg in target.slurm_args:
        name, _, value = arg[2:].partition("=")
        options[name] = value
    return options


def _run(command, timeout=30):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"{command[0]} did not answer within {timeout} s"
    except OSError as exc:
        return 127, f"{command[0]}: {exc.strerror}"
    text = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return done.returncode, (text[-1] if text else "")


def check_cluster(target):
    """Before anything is submitted: Slurm is here, and sbatch accepts the job as the target asks it."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise SandboxError("BACKEND=slurm: no Slurm on this machine (sbatch and squeue are not on PATH)")
    options = sbatch_options(target, 1)
    code, text = _run(["sbatch", "--test-only", *[f"--{k}={v}" for k, v in options.items()], "--wrap=true"])
    if code != 0:
        reason = text.removeprefix("sbatch: error: ").strip() or f"exit code {code}"
        asked = ", ".join(f"--{k}={v}" for k, v in options.items() if k not in ("job-name", "time"))
        raise SandboxError(f"BACKEND=slurm: the cluster refuses a job with {asked}: {reason}")


def _executor_classes():
    import submitit
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    class SqueueWatcher(SlurmInfoWatcher):
        """Job states from slurmctld, for clusters without accounting storage."""

        def _make_command(self):
            ids = {x.split("_")[0] for x in self._registered - self._finished}
            if not ids:
                return None
            return ["squeue", "--noheader", "--states=all", "--format=%i|%T|%N", "--jobs", ",".join(sorted(ids))]

        def read_info(self, string):
            text = string.decode() if isinstance(string, bytes) else string
            return super().read_info("JobID|State|NodeList\n" + text)

    class StepJob(SlurmJob):
        watcher = SqueueWatcher(delay_s=STATE_EVERY_S)

    class StepExecutor(submitit.SlurmExecutor):
        job_class = StepJob

    return StepExecutor


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(self, target, notice=lambda message: None):
        check_cluster(target)
        swept = sweep_orphans()
        if swept:
            notice(f"slurm: cancelled {swept} job(s) left by a profile that no longer runs")
        self.folder = os.path.abspath(target.slurm_folder or DEFAULT_FOLDER)
        self.made = []  # the folders this run created, deepest last, removed at close when empty
        missing = self.folder
        while not os.path.exists(missing):
            self.made.insert(0, missing)
            missing = os.path.dirname(missing)
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise SandboxError(f"SLURM_FOLDER={self.folder}: {exc.strerror}") from None
        self.executor = _executor_classes()(folder=self.folder)
        self.notice = notice
        self._running = {}  # job id -> job, for cancel()
        self._submitting = threading.Lock()
        self._submitted = set()  # job ids, so that close() removes every job's files

    def _submit(self, target, paths, runtime):
        argv = harness_args(target, paths, cgroup=bool(paths), runtime=runtime)
        options = sbatch_options(target, len(paths))
        with self._submitting:  # one submission at a time: what a refused one leaves is its own
            self.executor.update_parameters(
                cpus_per_task=options.pop("cpus-per-task"), job_name=options.pop("job-name"),
                srun_args=["--cpu-bind=cores"], signal_delay_s=30, additional_parameters=options)
            before = set(os.listdir(self.folder))
            try:
                return self.executor.submit(HarnessStep(argv, paths, target.threads))
            except subprocess.CalledProcessError as exc:
                text = (exc.output or b"").decode(errors="replace").strip().splitlines()
                raise SandboxError(f"BACKEND=slurm: sbatch failed: {text[-1] if text else exc}") from None
            except Exception as exc:  # submitit wraps sbatch's refusal in its own error
                raise SandboxError(f"BACKEND=slurm: {str(exc).strip().splitlines()[-1][:300]}") from None
            finally:
                if not self._submitted_ok(before):
                    for name in set(os.listdir(self.folder)) - before:  # the script and pickle of a refusal
                        try:
                            os.remove(os.path.join(self.folder, name))
                        except OSError:
                            pass

    def _submitted_ok(self, before):
        """A submission that got a job id renamed its files to <id>_…; a refused one did not."""
        return any(name.split("_", 1)[0].isdigit() for name in set(os.listdir(self.folder)) - before)

    def _run_batch(self, target, paths, runtime, emit, enforced):
        job = self._submit(target, paths, runtime)
        self._submitted.add(job.job_id)
        self._running[job.job_id] = job
        try:
            return self._follow(job, target, emit, enforced, max(len(paths), 1))
        finally:
            self._running.pop(job.job_id, None)
            self._end(job)

    def _follow(self, job, target, emit, enforced, expected):
        offset, buffer, state, next_check, seen, got = 0, b"", "PENDING", 0.0, False, 0
        while True:
            chunk = b""
            try:
                with open(job.paths.stdout, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                pass
            offset += len(chunk)
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                record = harness_record(line) or harness_record(line, keys=("unreadable", "node"))
                if not record:
                    continue
                if "unreadable" in record:
                    raise SandboxError(f"{record['unreadable']}: node {record['node']} cannot read this model; "
                                       "models must be on a filesystem every node shares")
                self._read_back(record, job, target, enforced)
                emit(record)
                got += 1
                if got >= expected:  # every record is in: the step is ending, look again soon
                    next_check = min(next_check, time.monotonic() + POLL_S)
            if self.cancelled:
                return None
            if state not in ACTIVE and not chunk:
                break
            if time.monotonic() >= next_check:
                state = self._state(job)
                # squeue may not list a job submitted a moment ago; once listed, a job it forgets has ended
                if state == "UNKNOWN" and not seen:
                    state = "PENDING"
                seen = seen or state != "PENDING"
                next_check = time.monotonic() + (POLL_S * 2 if got >= expected else STATE_EVERY_S)
            time.sleep(POLL_S)
        if state == "OUT_OF_MEMORY":
            return ("oom", f"Slurm job {job.job_id} was killed by its memory cap (OUT_OF_MEMORY)")
        if state in ("TIMEOUT", "DEADLINE"):
            return ("timeout", f"Slurm job {job.job_id} reached its time limit")
        if state not in ("COMPLETED", "FAILED"):
            return ("error", f"Slurm job {job.job_id} ended {state}: {self._tail(job)}")
        return None

    @staticmethod
    def _state(job):
        return (job.watcher.get_state(job.job_id, mode="force").split() or ["UNKNOWN"])[0]

    @staticmethod
    def _tail(job):
        try:
            lines = [line for line in open(job.paths.stderr, errors="replace").read().splitlines() if line.strip()]
        except OSError:
            return "no output"
        return lines[-1][:300] if lines else "no output"

    @staticmethod
    def _read_back(record, job, target, enforced):
        """`enforced` from what the step itself saw: its cores and its memory cgroup."""
        inside = record.get("seen_inside")
        if not inside or enforced.get("job") == job.job_id:
            return
        cores, limit = inside.get("cpus_allowed") or [], inside.get("memory_limit_mb")
        node = (record.get("host") or {}).get("hostname") or ""
        width = math.ceil(target.cpus)
        enforced.update(
            job=job.job_id, sandboxed=False,
            cpus=len(cores) == width and target.cpus == width,
            memory=bool(target.memory_mb) and limit is not None and abs(limit - math.ceil(target.memory_mb)) < 1)
        how = [f"slurm job {job.job_id}{' on ' + node if node else ''}: cpuset {','.join(map(str, cores))}",
               f"memory cgroup {limit:g} MiB" if limit else "no memory cgroup limit"]
        if target.cpus != width:
            how.append(f"Slurm allocates whole cores: {width} for CPUS={target.cpus:g}")
        enforced["how"] = "; ".join(["not sandboxed (Slurm caps only)"] + how)

    def _end(self, job):
        """Cancel the job if it still runs, wait until Slurm has let it go, and remove its files."""
        if self._state(job) in ACTIVE | {"UNKNOWN"}:
            subprocess.run(["scancel", str(job.job_id)], capture_output=True)
            for _ in range(100):
                if self._state(job) not in ACTIVE:
                    break
                time.sleep(0.1)
        files = [job.paths.stdout, job.paths.stderr, job.paths.submitted_pickle, job.paths.result_pickle,
                 job.paths.submission_file]
        for name in os.listdir(self.folder):  # submitit's link to the submission file, named before the id
            link = os.path.join(self.folder, name)
            if name.startswith(".submission_file_") and os.path.realpath(link) == str(job.paths.submission_file):
                files.append(link)
        for path in files:
            try:
                os.remove(path)
            except OSError:
                pass

    def close(self):
        for job_id in self._submitted:  # a job whose thread was cut short by Ctrl-C leaves its files otherwise
            remove_job_files(self.folder, job_id)
        for folder in reversed(self.made or [self.folder]):  # only when empty: it may be shared with other runs
            try:
                os.rmdir(folder)
            except OSError:
                break

    def _stop_all(self):
        ids = [str(job_id) for job_id in list(self._running)]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True)
