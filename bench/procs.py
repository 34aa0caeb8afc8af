"""Hub worker processes for benchmarks, and what they cost (/proc: RSS and CPU).

    workers = start_workers(2, site=path, broker="127.0.0.1:1883", redis_url=url,
                            env=twilio_env, workdir=dir)      # returns once all log 'hub ready'
    with RssSampler([w.pid for w in workers]) as rss: ...    # rss.peak_mb[pid]
    stop_workers(workers)

Each worker is ``python -m hub.app.cli hub`` exactly as an operator runs it, with its own
``--hub-id`` (its MQTT client id: workers share the alarm subscription) and a log
file in ``workdir``. Children die with the benchmark (``hub.app.localservices.spawn``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hub.app.localservices import free_port, spawn

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Seconds a worker may take from start to 'hub ready'.
READY_TIMEOUT_S = 30.0


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any HAVEN_* or TWILIO_* setting, plus ``settings``:
    a benchmark's hub must not pick up an operator's real credentials or site."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAVEN_", "TWILIO_"))}
    env.update(settings)
    return env


def hub_python() -> str:
    """The repo's venv interpreter (it has the hub's dependencies), else this one."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    log: Path
    metrics_port: int | None

    @property
    def pid(self) -> int:
        return self.process.pid


#: API connections all hub workers of a bench may open together (issue #9: at most 64).
API_BUDGET = 64


def api_connections_per_worker(workers: int, budget: int = API_BUDGET) -> int:
    """HAVEN_API_CONNECTIONS for each of ``workers`` so that together they stay within
    ``budget``: the default (32) while it fits, else an equal share."""
    from hub.config.settings import API_CONNECTIONS
    return max(1, min(API_CONNECTIONS, budget // workers))


def start_workers(n: int, *, site: Path, broker: str, redis_url: str, env: dict[str, str],
                  workdir: Path, log_level: str = "info", metrics: bool = False,
                  prefix: str = "haven-bench") -> list[Worker]:
    """Start ``n`` hub workers and wait until each logs 'hub ready' (needs ``log_level``
    info); raises RuntimeError with the log's end if one exits or is not ready in time.
    Unless ``env`` sets HAVEN_API_CONNECTIONS, the workers share :data:`API_BUDGET`."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"HAVEN_API_CONNECTIONS": str(api_connections_per_worker(n)), **env}
    workers = []
    for i in range(n):
        log = workdir / f"hub-{i}.log"
        port = free_port() if metrics else None
        argv = [hub_python(), "-m", "hub.app.cli", "--log-level", log_level, "hub", "--site",
                str(site), "--broker", broker, "--redis", redis_url, "--hub-id", f"{prefix}-{i}"]
        if port is not None:
            argv += ["--metrics-port", str(port)]
        workers.append(Worker(i, spawn(argv, log=log, env=env, cwd=ROOT), log, port))
    if log_level in ("debug", "info"):
        deadline = time.monotonic() + READY_TIMEOUT_S
        for w in workers:
            while "hub ready" not in w.log.read_text(errors="replace"):
                if w.process.poll() is not None or time.monotonic() > deadline:
                    stop_workers(workers)
                    tail = "\n".join(w.log.read_text(errors="replace").splitlines()[-15:])
                    raise RuntimeError(f"hub worker {w.index} not ready (exit code "
                                       f"{w.process.poll()}); {w.log} ends:\n{tail}")
                time.sleep(0.02)
    return workers


def stop_workers(workers: list[Worker], timeout: float = 15.0) -> None:
    """SIGTERM each (the hub finishes pages already going out), SIGKILL after ``timeout``."""
    for w in workers:
        if w.process.poll() is None:
            w.process.terminate()
    for w in workers:
        try:
            w.process.wait(timeout)
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait()


def rss_mb(pid: int) -> float:
    """Resident set size of one process in MB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds one process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


class RssSampler:
    """Samples each pid's RSS every ``every_s`` seconds on a thread; ``peak_mb[pid]``."""

    def __init__(self, pids: list[int], every_s: float = 0.02):
        self.pids, self.every_s = list(pids), every_s
        self.peak_mb = {pid: rss_mb(pid) for pid in self.pids}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for pid in self.pids:
                self.peak_mb[pid] = max(self.peak_mb[pid], rss_mb(pid))
            self.samples += 1

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
