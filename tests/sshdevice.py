"""A real OpenSSH server on 127.0.0.1 with a "device" behind it: its own user account and its own
Python environments (numpy and onnxruntime installed offline from the wheels the Docker image uses),
a throwaway host key and user key, and an ssh_config naming every case the tests need."""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

USER = "edgedevice"
HOME = f"/home/{USER}"


def problem():
    if not os.path.exists("/usr/sbin/sshd"):
        return "no OpenSSH server (/usr/sbin/sshd; apt-get install openssh-server)"
    if shutil.which("ssh") is None:
        return "no OpenSSH client (ssh)"
    if os.geteuid() != 0:
        return "the SSH device tests make a user account and need root"
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*command, **kwargs):
    return subprocess.run(list(command), check=True, capture_output=True, text=True, **kwargs)


def _device_account():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        _run("useradd", "--create-home", "--shell", "/bin/sh", USER)
    _run("usermod", "-p", "*", USER)  # no password, but not locked: key login only


def _device_python(name, packages):
    """A venv of the device's own Python (Debian's /usr/bin/python3), filled offline."""
    from profiler.sandbox.docker import resolve_wheels

    venv = os.path.join(HOME, name)
    python = os.path.join(venv, "bin", "python3")
    marker = os.path.join(venv, ".packages")
    if os.path.exists(marker) and open(marker).read() == " ".join(packages):
        return python
    shutil.rmtree(venv, ignore_errors=True)
    _run("/usr/bin/python3", "-m", "venv", venv)
    if packages:
        wheels = resolve_wheels("onnx", lambda m: None)
        _run(python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheels, *packages)
    with open(marker, "w") as f:
        f.write(" ".join(packages))
    _run("chown", "-R", f"{USER}:{USER}", venv)
    return python


class Device:
    def __init__(self):
        _device_account()
        self.python = _device_python("venv", ["numpy", "onnxruntime"])
        self.bare_python = _device_python("venv-bare", ["numpy"])
        self.capped_python = os.path.join(HOME, "python-capped")
        with open(self.capped_python, "w") as f:  # the device runs out of memory at 800 MB of address space
            f.write(f"#!/bin/sh\nulimit -v 800000\nexec {self.python} \"$@\"\n")
        os.chmod(self.capped_python, 0o755)
        # a wrapper that prints lines of its own that start with "{" before the harness's records
        self.noisy_python = os.path.join(HOME, "python-noisy")
        with open(self.noisy_python, "w") as f:
            f.write(f"#!/bin/sh\necho '{{x'\necho '{{\"path\": 5}}'\necho '[1]'\nexec {self.python} \"$@\"\n")
        os.chmod(self.noisy_python, 0o755)
        self.dir = tempfile.mkdtemp(prefix="edge-profiler-sshd-")
        os.chmod(self.dir, 0o755)  # sshd reads authorized_keys as the device user
        d = self.dir
        for name in ("host_key", "user_key", "other_key"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/{name}")
        shutil.copy(f"{d}/user_key.pub", f"{d}/authorized_keys")
        os.chmod(f"{d}/authorized_keys", 0o644)
        self.port = _free_port()
        os.makedirs("/run/sshd", exist_ok=True)
        with open(f"{d}/sshd_config", "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
                    f"AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
                    f"AllowUsers {USER}\n")
        host_key = open(f"{d}/host_key.pub").read().split()[:2]
        with open(f"{d}/known_hosts", "w") as f:
            f.write(f"[127.0.0.1]:{self.port} {' '.join(host_key)}\n")
        open(f"{d}/known_hosts_empty", "w").close()
        refused = _free_port()
        common = f"  HostName 127.0.0.1\n  User {USER}\n  IdentitiesOnly yes\n  LogLevel ERROR\n"
        with open(f"{d}/ssh_config", "w") as f:
            f.write(f"Host edge-device\n{common}  Port {self.port}\n  IdentityFile {d}/user_key\n"
                    f"  UserKnownHostsFile {d}/known_hosts\n\n"
                    f"Host edge-unknown\n{common}  Port {self.port}\n  IdentityFile {d}/user_key\n"
                    f"  UserKnownHostsFile {d}/known_hosts_empty\n\n"
                    f"Host edge-badkey\n{common}  Port {self.port}\n  IdentityFile {d}/other_key\n"
                    f"  UserKnownHostsFile {d}/known_hosts\n\n"
                    f"Host edge-refused\n{common}  Port {refused}\n  IdentityFile {d}/user_key\n"
                    f"  UserKnownHostsFile {d}/known_hosts\n\n"
                    # a TEST-NET-1 address (RFC 5737): nothing answers, so the connection times out
                    f"Host edge-blackhole\n  HostName 192.0.2.1\n  User {USER}\n  IdentityFile {d}/user_key\n"
                    f"  UserKnownHostsFile {d}/known_hosts\n  ConnectTimeout 2\n")
        self.config = f"{d}/ssh_config"
        from profiler.harness.supervisor import die_with_parent

        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{d}/sshd.log", "w"),
                                     preexec_fn=die_with_parent)  # never outlives this process
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"sshd did not start: {open(f'{d}/sshd.log').read()[-300:]}")

    def processes(self):
        """Harness processes of the device user."""
        done = subprocess.run(["pgrep", "-u", USER, "-f", "profiler.harness"], capture_output=True, text=True)
        return done.stdout.split()

    def harness_running(self):
        """The device user's harness interpreter measuring models (`python -u -m profiler.harness
        /tmp/.../models/...`): not the shell that starts it, whose command line names it too until it
        execs, and not the short run with no model (`--empty`) that measures the harness's own cost
        before it."""
        done = subprocess.run(["pgrep", "-u", USER, "-f", r"^\S*python\S* -u -m profiler\.harness /"],
                              capture_output=True, text=True)
        return done.stdout.split()

    def folders(self):
        return [n for n in os.listdir("/tmp") if n.startswith("edge-profiler.")
                and os.stat(os.path.join("/tmp", n)).st_uid == pwd.getpwnam(USER).pw_uid]

    def stop(self):
        self.sshd.terminate()
        self.sshd.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    """Start one by hand, for trying `profile --on` against a real device on this machine. Stops on
    Ctrl-C, SIGTERM or SIGHUP, in the foreground or in the background (where a shell has SIGINT
    ignored), and its sshd with it."""
    import signal

    device = Device()
    received = []

    def stop(signum, frame):  # the main thread is in sshd.wait(): end sshd, and that wait returns
        received.append(signum)
        device.sshd.terminate()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    print(f"a device on 127.0.0.1:{device.port}; measure on it with\n"
          f"  profile --env env.template --on edge-device --ssh-config {device.config} "
          f"--ssh-python {device.python} MODEL.onnx\n"
          f"or log in with: ssh -F {device.config} edge-device   (Ctrl-C stops it)", file=sys.stderr, flush=True)
    device.sshd.wait()
    device.stop()
    sys.exit(128 + received[0] if received else 1)


if __name__ == "__main__":  # python -m tests.sshdevice
    main()
