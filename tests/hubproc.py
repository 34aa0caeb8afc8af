"""Start a real ``haven hub`` worker process for a test, and wait until it is ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hub.app.localservices import spawn

FROM = "+12065550000"


def start_hub(log: Path, mosquitto, redis_service, *, site: Path, fake_twilio=None,
              extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()
              ) -> subprocess.Popen:
    """A hub on the test's broker and Redis; with ``fake_twilio`` it sends through the real
    SDK to the fake API (console notifier otherwise). Returns once it logs 'hub ready'."""
    env = dict(os.environ)
    if fake_twilio is not None:
        env.update(TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
                   TWILIO_AUTH_TOKEN=fake_twilio.auth_token, TWILIO_FROM_NUMBER=FROM,
                   HAVEN_TWILIO_API_BASE=fake_twilio.url)
    env.update(extra_env or {})
    proc = spawn([sys.executable, "-m", "hub.app.cli", "hub", "--site", str(site), "--broker",
                  f"127.0.0.1:{mosquitto.port}", "--redis", redis_service.url, *args],
                 log=log, env=env)
    deadline = time.monotonic() + 10
    while "hub ready" not in log.read_text():
        assert proc.poll() is None, f"hub exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"hub not ready:\n{log.read_text()}"
        time.sleep(0.02)
    return proc
