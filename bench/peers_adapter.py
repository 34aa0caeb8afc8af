"""Haven as a system under test of the team's peer harness (../shared/peers, option B).

    .venv/bin/python ../shared/peers/bench_pipeline.py \
        --adapter bench/peers_adapter.py:HavenAdapter --adapter-opt workers=1 --out x.json

(``bench/peers.sh`` runs it next to Node-RED and summarises.) ``start(ctx)``:

1. writes a site config from the harness's contacts (bench/benchsite.py: every device
   the harness publishes for, each paging its contacts by SMS in the first and only step
   of an ``emergency`` policy) and validates it with ``haven check-config``;
2. starts a private redis-server with its append-only file on (fsync every second, as
   in production: an alarm is durable once stored);
3. starts ``workers`` hub workers (``haven hub``) on the harness's broker, sending
   through the real twilio SDK to the harness's fake Twilio, and returns when every
   one has logged 'hub ready'.

Correlation: ``HAVEN_PUBLIC_URL`` is set, so every SMS request carries a
``StatusCallback`` URL whose ``key`` holds the full alarm id (the SMS text carries
only its first 8 characters). Nothing listens there; the harness's fake never calls
back. Options (``--adapter-opt k=v``): ``workers`` (1), ``log_level`` (info, the
production default), ``devices`` (50: ``bench-dev-000``.. the harness publishes for),
``api_connections`` (each worker's HAVEN_API_CONNECTIONS; default an equal share of 64,
at most 32).

CPU and RSS reported by the harness are summed over the hub workers AND redis-server:
Haven's durability is part of what it costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = Path(os.environ.get("HAVEN_PEERS_DIR", ROOT.parent / "shared" / "peers"))
sys.path.insert(0, str(ROOT))
if str(PEERS_DIR) not in sys.path:
    sys.path.append(str(PEERS_DIR))

try:
    from adapters.base import Adapter
except ImportError:  # without the harness (tests, CI): the same interface, nothing more
    class Adapter:  # type: ignore[no-redef]
        name = "adapter"

        def __init__(self, **opts):
            self.opts = opts

from bench.benchsite import site_from_contacts  # noqa: E402
from bench.procs import Worker, clean_env, hub_python, start_workers, stop_workers  # noqa: E402
from hub.app.localservices import LocalService, start_redis  # noqa: E402

#: Device ids the harness publishes for besides those in its contacts file.
PROBE_DEVICE = "bench-probe"
#: Where the (never contacted) dashboard would be: only carries the alarm id.
PUBLIC_URL = "https://haven.bench.invalid"


def harness_devices(count: int) -> list[str]:
    return [PROBE_DEVICE] + [f"bench-dev-{i:03d}" for i in range(count)]


def write_site(contacts: dict, path: Path, devices: int = 50) -> Path:
    """Write and validate (``haven check-config``) the site for ``contacts``."""
    path.write_text(site_from_contacts(contacts, harness_devices(devices)))
    check = subprocess.run([hub_python(), "-m", "hub.app.cli", "check-config", str(path)],
                           capture_output=True, text=True, cwd=ROOT)
    if check.returncode != 0:
        raise RuntimeError(f"generated site {path} is invalid:\n{check.stderr}{check.stdout}")
    return path


class HavenAdapter(Adapter):
    name = "haven"

    def __init__(self, workers: str = "1", log_level: str = "info", devices: str = "50",
                 api_connections: str = "", **opts):
        super().__init__(**opts)
        self.workers_n, self.log_level, self.devices = int(workers), log_level, int(devices)
        #: HAVEN_API_CONNECTIONS per worker ('' : an equal share of 64, at most 32)
        self.api_connections = api_connections
        if self.workers_n < 1:
            raise ValueError("--adapter-opt workers=N needs N >= 1")
        self.name = f"haven-{self.workers_n}w"
        self.redis: LocalService | None = None
        self.workers: list[Worker] = []

    def setup(self) -> None:
        python = hub_python()
        if subprocess.run([python, "-c", "import hub.app.runner, twilio, redis"], cwd=ROOT,
                          capture_output=True).returncode != 0:
            raise RuntimeError(f"{python} cannot import the hub: run 'make venv' in {ROOT}")

    def start(self, ctx) -> None:
        work = Path(ctx.workdir) / "haven"
        work.mkdir(parents=True, exist_ok=True)
        with open(ctx.contacts_file) as f:
            site = write_site(json.load(f), work / "site.toml", self.devices)
        self.redis = start_redis(work / "redis")
        env = clean_env(TWILIO_ACCOUNT_SID=ctx.account_sid, TWILIO_AUTH_TOKEN=ctx.auth_token,
                        TWILIO_FROM_NUMBER=ctx.from_number, HAVEN_TWILIO_API_BASE=ctx.twilio_url,
                        HAVEN_PUBLIC_URL=PUBLIC_URL)
        if self.api_connections:
            env["HAVEN_API_CONNECTIONS"] = self.api_connections
        try:
            self.workers = start_workers(self.workers_n, site=site,
                                         broker=f"{ctx.broker_host}:{ctx.broker_port}",
                                         redis_url=self.redis.url, env=env, workdir=work,
                                         log_level=self.log_level)
        except BaseException:
            self.redis.stop()
            raise

    def pids(self) -> list[int]:
        pids = [w.pid for w in self.workers if w.process.poll() is None]
        if pids and self.redis is not None and self.redis.alive():
            pids.append(self.redis.process.pid)
        return pids

    def stop(self) -> None:
        stop_workers(self.workers)
        self.workers = []
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def describe(self) -> dict:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "hub", "device"], capture_output=True, text=True).stdout.strip()
        return {"name": self.name, "version": f"{rev}{'+dirty' if dirty else ''}",
                "workers": self.workers_n, "log_level": self.log_level,
                "redis": "appendonly yes, appendfsync everysec"}
