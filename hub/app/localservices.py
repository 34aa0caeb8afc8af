"""Private mosquitto and redis-server instances for the demo and the tests.

Each instance runs from the Debian package's binary, as a child process, with
its own config, data and log in a work directory, listening on a free loopback
port. Both start in milliseconds. Children are asked to die with their parent
(``PR_SET_PDEATHSIG``), so a killed demo or test run leaves nothing behind.

Production does not use this module: there the Debian services run under
systemd with the configs in ``deploy/``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hub.errors import HubError

#: How long to wait for a server to accept connections, in seconds.
START_TIMEOUT_S = 10.0


class ServiceError(HubError):
    """A local server could not be found or started."""


def find_binary(name: str) -> str:
    """Path of a server binary; Debian puts mosquitto in /usr/sbin, off a user's PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        raise ServiceError(f"{name} is not installed: run 'make deps' "
                           f"(or 'sudo apt-get install {'redis-server' if 'redis' in name else name}')")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(argv: list[str], *, log: Path | None, env: dict[str, str] | None = None,
          cwd: str | Path | None = None) -> subprocess.Popen:
    """Start a child in its own session that dies with this process.

    Its stdout and stderr go to ``log``, or to ours when ``log`` is ``None``. Its
    own session keeps a terminal's Ctrl-C away from it, so the parent stops
    children in order.
    """
    kwargs = dict(stdin=subprocess.DEVNULL, env=env, cwd=cwd, preexec_fn=_die_with_parent,
                  start_new_session=True)
    if log is None:
        return subprocess.Popen(argv, **kwargs)
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)


@dataclass
class LocalService:
    """A running private server: ``name``, its ``port`` on 127.0.0.1, and its files."""

    name: str
    port: int
    workdir: Path
    log: Path
    process: subprocess.Popen

    @property
    def url(self) -> str:
        scheme = "redis" if self.name == "redis-server" else "mqtt"
        return f"{scheme}://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL at once (fault tests: a crash, not a shutdown)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _wait_ready(service: LocalService, probe) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not service.alive():
            raise ServiceError(f"{service.name} exited with {service.process.returncode} "
                               f"at start; its log {service.log} ends:\n{service.tail()}")
        try:
            if probe(service.port):
                return
        except OSError:
            pass
        time.sleep(0.005)
    service.stop()
    raise ServiceError(f"{service.name} did not accept connections on port {service.port} "
                       f"within {START_TIMEOUT_S:.0f} s; log {service.log}:\n{service.tail()}")


def _tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _redis_pong(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


def start_mosquitto(workdir: str | Path, port: int | None = None, *,
                    listener: list[str] | None = None) -> LocalService:
    """A private broker: loopback only, anonymous, persistent, no queue limit, no Nagle.

    ``listener`` adds lines to the listener's section (TLS files, ``require_certificate``,
    an ACL file...); with them ``allow_anonymous`` stays true unless they say otherwise.

    ``max_queued_messages 0`` (unlimited) because mosquitto's default of 1000
    silently drops QoS 1 messages for a subscriber that falls behind in a burst.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    log = workdir / "mosquitto.log"
    lines = [
        "per_listener_settings false",
        "persistence true",
        f"persistence_location {workdir}/",
        "max_queued_messages 0",
        "set_tcp_nodelay true",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if os.geteuid() == 0:
        # Started as root, mosquitto switches to user 'mosquitto', which cannot
        # write our private directory; stay root for this loopback-only instance.
        lines.append("user root")
    extra = listener or []
    if not any(line.startswith("allow_anonymous") for line in extra):
        lines.append("allow_anonymous true")
    lines += [f"listener {port} 127.0.0.1", *extra]
    conf.write_text("\n".join(lines) + "\n")
    proc = spawn([find_binary("mosquitto"), "-c", str(conf)], log=log)
    service = LocalService("mosquitto", port, workdir, log, proc)
    _wait_ready(service, _tcp_open)
    return service


def start_redis(workdir: str | Path, port: int | None = None) -> LocalService:
    """A private redis-server: loopback only, append-only file on (fsync every second)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "redis.conf"
    log = workdir / "redis.log"
    conf.write_text("\n".join([
        f"port {port}",
        "bind 127.0.0.1",
        "protected-mode yes",
        "daemonize no",
        f"dir {workdir}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "loglevel warning",
    ]) + "\n")
    proc = spawn([find_binary("redis-server"), str(conf)], log=log)
    service = LocalService("redis-server", port, workdir, log, proc)
    _wait_ready(service, _redis_pong)
    return service
