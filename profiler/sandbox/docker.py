"""Docker backend: the harness in a capped, locked-down container, through docker-py.

One container runs a whole batch (one target, one runtime), so start-up is paid once.
Every container carries the edge-profiler label and is removed whatever happens.

One module of about 450 lines on purpose: the image (offline base, runtime wheels, the harness
package), the container's options and caps, its run and the sweep of orphaned containers share the
Engine client, the label and the owner they are found by.
"""

import hashlib
import math
import os
import queue
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import PackageNotFoundError, version

import profiler
from profiler.config import DEFAULT_BASE_IMAGE
from profiler.values import mib_to_bytes
from profiler.harness.files import private_folder, sweep_dead_folders
from profiler.sandbox.base import (HOST_GRACE_S, LABEL, OWNER, Backend, SandboxError, companion_files, harness_args,
                                   harness_files, harness_record, pick_cores)

OFFLINE_BASE = "edge-profiler/base:offline"
OFFLINE_SCRIPT = "containers/build-offline-base.sh"
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(profiler.__file__)))
DOCKERFILE = os.path.join(PROJECT_ROOT, "containers", "Dockerfile")
WHEEL_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "edge-profiler", "wheels")
PIDS_LIMIT = 512
TMPFS = "size=64m,mode=1777"

# Distributions each image needs, pinned to the versions installed on this host.
RUNTIME_PACKAGES = {"onnx": ["onnxruntime"], "tflite": ["ai-edge-litert", "tflite-runtime"], "torch": ["torch"],
                    "openvino": ["openvino"]}


def client(timeout=30):
    import docker

    return docker.from_env(timeout=timeout)


STAGE_PREFIX = f"{LABEL}-stage-"  # + pid + "-…": readable copies of owner-only files for one container


def readable_source(path, stage):
    """What to bind-mount for `path`: the file itself when others may read it (the container runs as
    nobody), else a readable copy in a private 0700 folder (stage[0], made on first need). ONNX
    writes external-data files owner-only, and a user's own model may be too."""
    if os.stat(path).st_mode & stat.S_IROTH:
        return path
    if stage[0] is None:
        stage[0] = private_folder(STAGE_PREFIX)
    copy = os.path.join(stage[0], f"{len(os.listdir(stage[0]))}-{os.path.basename(path)}")
    shutil.copyfile(path, copy)
    os.chmod(copy, 0o644)  # the folder stays 0700: only the container's bind mount reaches the copy
    return copy


def unstage(stage):
    if stage[0]:
        shutil.rmtree(stage[0], ignore_errors=True)
        stage[0] = None


def engine_problem():
    """None if a Docker engine answers, else one line saying why not."""
    try:
        import docker
    except ImportError:
        return "the docker Python package is not installed"
    try:
        docker.from_env(timeout=5).ping()
        return None
    except (ValueError, TypeError) as exc:  # a DOCKER_HOST that is not an address (urllib's own errors)
        return f"DOCKER_HOST={os.environ.get('DOCKER_HOST')}: not a Docker address ({str(exc).splitlines()[0][:100]})"
    except docker.errors.DockerException as exc:
        text = str(exc)
        if "Permission denied" in text or "PermissionError" in text:
            return "permission denied on the Docker socket (add your user to the docker group)"
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return f"no Docker engine answers at {host}"


def _pins(runtime):
    pins = []
    for name in ["numpy"] + RUNTIME_PACKAGES[runtime]:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
        if name != "numpy":
            break  # the first installed runtime package wins (LiteRT before tflite-runtime)
    if len(pins) < 2:
        wanted = " or ".join(RUNTIME_PACKAGES[runtime])
        raise SandboxError(f"cannot build the {runtime} image: {wanted} is not installed on this host "
                           f"(the image uses the host's versions)")
    return pins


def resolve_wheels(runtime, notice):
    """pip download the host's runtime versions once; later builds reuse the folder."""
    pins = _pins(runtime)
    folder = os.path.join(WHEEL_CACHE, f"{runtime}-" + hashlib.sha256(" ".join(pins).encode()).hexdigest()[:12])
    if os.path.exists(os.path.join(folder, "requirements.txt")):
        return folder
    notice(f"docker: downloading wheels for {' '.join(pins)}")
    staging = folder + f".partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:",
               "-d", staging, *pins]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = " | ".join(done.stderr.strip().splitlines()[-2:])
        raise SandboxError(f"pip download of {' '.join(pins)} failed: {tail}")
    with open(os.path.join(staging, "requirements.txt"), "w") as f:
        f.write("\n".join(pins) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(staging, folder)
    return folder


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, base_image=None, notice=lambda m: print(m, file=sys.stderr)):
        self.client = client()
        self.explicit_base = base_image
        self.notice = notice
        self.images = {}
        self._running = set()  # containers, for cancel()
        info = self.client.info()
        self.swap_limit = bool(info.get("SwapLimit"))
        self.cgroup_version = info.get("CgroupVersion", "1")
        swept = sweep_orphans(self.client)
        if swept:
            self.notice(f"docker: removed {swept} container(s) left by an edge-profiler process that no longer runs")
        sweep_dead_folders(STAGE_PREFIX)  # the readable copies a killed run staged

    # ------------------------------------------------------------ images

    def base_image(self):
        import docker

        wanted = self.explicit_base or DEFAULT_BASE_IMAGE
        for candidate in [wanted] if self.explicit_base else [wanted, OFFLINE_BASE]:
            try:
                return self.client.images.get(candidate)
            except docker.errors.ImageNotFound:
                pass
            if candidate == OFFLINE_BASE:
                break
            try:
                repo, _, tag = candidate.rpartition(":") if ":" in candidate.split("/")[-1] else (candidate, "", "latest")
                return self.client.images.pull(repo, tag=tag)
            except docker.errors.APIError:
                if not self.explicit_base:
                    continue
        if self.explicit_base:
            raise SandboxError(f"BASE_IMAGE={wanted} is not on this host and cannot be pulled")
        raise SandboxError(f"no base image: {wanted} cannot be pulled and {OFFLINE_BASE} does not exist "
                           f"(build it with {OFFLINE_SCRIPT})")

    def prepare(self, runtime):
        self.image_for(runtime)

    def image_for(self, runtime):
        if runtime in self.images:
            return self.images[runtime]
        base = self.base_image()
        base_name = (base.tags or [base.id])[0]
        wheels = resolve_wheels(runtime, self.notice)
        package, files = harness_files()
        digest = hashlib.sha256(base.id.encode())
        for name in sorted(os.listdir(wheels)):
            digest.update(name.encode())
        for name in files:
            digest.update(name.encode())
            digest.update(open(os.path.join(package, name), "rb").read())
        digest.update(open(DOCKERFILE, "rb").read())
        tag = f"edge-profiler/{runtime}:{digest.hexdigest()[:12]}"
        try:
            self.client.images.get(tag)
        except Exception:
            if not self.explicit_base and base_name == OFFLINE_BASE:  # said once, when the image is built on it
                self.notice(f"notice: {DEFAULT_BASE_IMAGE} cannot be pulled; building on {OFFLINE_BASE}")
            self._build(tag, base.id, wheels, package, files)
        self.images[runtime] = tag
        return tag

    def _build(self, tag, base_id, wheels, package, files):
        if not os.path.exists(DOCKERFILE):
            raise SandboxError(f"{DOCKERFILE} is missing; run edge-profiler from its source checkout")
        with tempfile.TemporaryDirectory(prefix="edge-profiler-build-") as context:
            shutil.copy(DOCKERFILE, os.path.join(context, "Dockerfile"))
            os.makedirs(os.path.join(context, "wheels"))
            for name in os.listdir(wheels):
                source, dest = os.path.join(wheels, name), os.path.join(context, "wheels", name)
                try:
                    os.link(source, dest)
                except OSError:
                    shutil.copy(source, dest)
            for name in files:
                os.makedirs(os.path.dirname(os.path.join(context, "profiler", name)), exist_ok=True)
                shutil.copy(os.path.join(package, name), os.path.join(context, "profiler", name))
            self.notice(f"docker: building {tag} (first use of this runtime, base and harness)")
            log = []
            try:
                for chunk in self.client.api.build(path=context, tag=tag, buildargs={"BASE_IMAGE": base_id},
                                                   rm=True, forcerm=True, decode=True, labels={LABEL: "image"}):
                    if "stream" in chunk:
                        for line in chunk["stream"].splitlines():
                            if line.strip():
                                log.append(line)
                                if line.startswith("Step "):
                                    self.notice(f"docker:   {line.strip()}")
                    if "error" in chunk:
                        log.append(chunk["error"])
                        raise SandboxError("image build failed: " + " | ".join(l.strip() for l in log[-3:]))
            except SandboxError:
                raise
            except Exception as exc:
                raise SandboxError(f"image build failed: {str(exc).splitlines()[0][:300]}") from None
        self._prune(tag)

    def _prune(self, current):
        """Remove this runtime's older images (another base, wheel set or harness): each is hundreds of MB.
        An image a container still uses is kept; the engine refuses, and that is fine."""
        import docker

        repository = current.split(":")[0]
        for image in self.client.images.list(name=repository):
            for tag in image.tags:
                if tag == current or not tag.startswith(repository + ":"):
                    continue
                try:  # by tag: the image goes with its last tag
                    self.client.images.remove(tag)
                    self.notice(f"docker: removed the outdated image {tag}")
                except docker.errors.APIError:
                    pass

    # ------------------------------------------------------------ running

    def container_options(self, target, paths, stage=None):
        """Caps and lock-down for one container; returns (options, paths inside, enforced).

        stage: a one-item list; a file the container's user (nobody) may not read is copied into a
        private folder made there (the caller removes it when the container is gone)."""
        from docker.types import Mount

        stage = [None] if stage is None else stage
        cores = pick_cores(target)
        fractional = target.cpus != math.ceil(target.cpus)
        mounts, inside = [], []

        def bind(where, source):
            mounts.append(Mount(where, readable_source(source, stage), type="bind", read_only=True))

        for i, path in enumerate(paths):
            where = f"/models/{i}/{os.path.basename(path)}"
            bind(where, path)
            inside.append(where)
            for extra in companion_files(path):  # weights beside the graph (ONNX external data, an IR's .bin)
                bind(f"/models/{i}/{extra}", os.path.join(os.path.dirname(path), extra))
        if target.data:  # the evaluation data, read-only beside the models
            bind(f"/data/{os.path.basename(target.data)}", os.path.abspath(target.data))
        options = {"cpuset_cpus": ",".join(map(str, cores))}
        if fractional:
            options["nano_cpus"] = int(target.cpus * 1e9)
        how = [f"cpuset {options['cpuset_cpus']}"] + ([f"nano_cpus {target.cpus:g}"] if fractional else [])
        if target.memory_mb:
            options["mem_limit"] = mib_to_bytes(target.memory_mb)
            if self.swap_limit:
                options["memswap_limit"] = options["mem_limit"] + mib_to_bytes(target.swap_mb)
            else:
                options["mem_swappiness"] = 0
            how.append(f"mem_limit {target.memory_mb:g} MiB")
            how.append(f"memswap {target.memory_mb + target.swap_mb:g} MiB" if self.swap_limit
                       else "swap not capped (engine has no swap limit support)")
        else:
            how.append("no MEMORY set")
        options.update(
            labels={LABEL: "run", f"{LABEL}.session": f"{os.getpid()}-{time.time_ns()}", OWNER: owner()},
            mounts=mounts,
            network_disabled=True, network_mode="none", read_only=True, tmpfs={"/tmp": TMPFS},
            user="65534:65534", cap_drop=["ALL"], security_opt=["no-new-privileges"],
            pids_limit=PIDS_LIMIT, environment={"OMP_NUM_THREADS": str(target.threads)})
        enforced = {"cpus": True, "memory": bool(target.memory_mb), "sandboxed": True, "how": "; ".join(how)}
        return options, inside, enforced

    def probe(self, target, runtime, code, paths=()):
        """Run Python code in a container with exactly the profiling caps; returns (exit code, output)."""
        stage = [None]
        options, _, _ = self.container_options(target, list(paths), stage)
        container = self.client.containers.create(self.image_for(runtime), entrypoint=["/opt/venv/bin/python", "-c", code],
                                                  **options)
        try:
            container.start()
            state = container.wait(timeout=120)
            return state["StatusCode"], container.logs().decode(errors="replace")
        finally:
            remove(container)
            unstage(stage)

    def _run_batch(self, target, paths, runtime, emit, enforced):
        image = self.image_for(runtime)
        stage = [None]
        try:
            prepared = self.container_options(target, paths, stage)  # (options, paths inside, facts)
            return self._run_container(target, paths, runtime, emit, enforced, image, prepared)
        finally:
            unstage(stage)

    def _run_container(self, target, paths, runtime, emit, enforced, image, prepared):
        options, inside, facts = prepared
        enforced.update(facts)
        host_path = dict(zip(inside, paths))

        def emit_host(record):
            inside_path = record.get("path")
            if inside_path in host_path:  # messages name the user's file, not its mount point
                record["path"] = host_path[inside_path]
                if record.get("error"):
                    record["error"] = record["error"].replace(inside_path, record["path"])
            emit(record)

        container = None
        try:
            container = self.client.containers.create(
                image, command=harness_args(target, inside, cgroup=True, runtime=runtime,
                                            data=f"/data/{os.path.basename(target.data)}" if target.data else None),
                **options)
            self._running.add(container)
            if self.cancelled:
                return None
            container.start()
            failure = self._stream(container, target, emit_host)
            if self.cancelled:  # cancel() removed the container under the stream
                return None
            state = self._wait(container)
            if failure:
                return failure
            if state.get("OOMKilled"):
                return ("oom", "the container was killed by the memory cap")
            if state.get("ExitCode") not in (0, 1):
                tail = container.logs(stdout=False, stderr=True, tail=3).decode(errors="replace").strip()
                return ("error", f"the container exited with {state.get('ExitCode')}: {tail[-300:]}")
            return None
        finally:
            if container is not None:
                self._running.discard(container)
                remove(container)

    def _stop_all(self):
        for container in list(self._running):
            remove(container)  # its log stream ends, and the batch's thread returns

    def _stream(self, container, target, emit):
        lines = queue.Queue()

        def pump():
            buffer = b""
            try:
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=False):
                    buffer += chunk
                    *complete, buffer = buffer.split(b"\n")
                    for line in complete:
                        lines.put(line)
            except Exception:  # the container was removed under us
                pass
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        limit = target.timeout_s + HOST_GRACE_S
        while True:
            try:
                line = lines.get(timeout=limit)
            except queue.Empty:
                container.kill()
                return ("timeout", f"the container gave no result within {limit:g} s")
            if line is None:
                return None
            record = harness_record(line)
            if record:
                emit(record)

    @staticmethod
    def _wait(container):
        import docker

        try:
            try:
                container.wait(timeout=30)
            except docker.errors.NotFound:
                raise
            except Exception:
                container.kill()
            container.reload()
        except docker.errors.NotFound:  # removed meanwhile (cancel() from another thread)
            return {}
        return container.attrs.get("State", {})


def remove(container):
    for _ in range(3):
        try:
            container.remove(force=True)
            return
        except Exception as exc:
            if "No such container" in str(exc) or "is already in progress" in str(exc):
                return
            time.sleep(0.2)


def owner(pid=None):
    """The label value naming the process that owns a container: host name and pid."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def sweep_orphans(engine):
    """Remove run containers whose owning process on this host is gone (e.g. it was SIGKILLed).

    Such a container may still be running its batch, which would load the cores the next
    measurement uses, so it is removed running or not. Containers of live processes and of
    other hosts are never touched."""
    here = socket.gethostname()
    swept = 0
    for container in engine.containers.list(all=True, filters={"label": f"{LABEL}=run"}, sparse=True):
        host, _, pid = (container.attrs.get("Labels") or {}).get(OWNER, "").rpartition(":")
        if host != here or not pid.isdigit() or _alive(int(pid)):
            continue
        remove(container)
        swept += 1
    return swept


def leftover_containers():
    """Containers with the edge-profiler label (used by tests and cleanup).

    One list call with no per-container inspect, so a container removed while the list is taken is not an error."""
    return client().containers.list(all=True, filters={"label": LABEL}, sparse=True)
