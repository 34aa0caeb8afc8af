"""deploy/pi/install.sh: a provisioned bundle installs into a temporary root (dry-run),
and the firmware's selftest then passes against a broker running the site's config."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from gpiozero.pins.mock import MockFactory

from device.config import load_device_config
from device.firmware import DeviceApp
from hub.app.cli import main
from hub.app.localservices import free_port
from hub.provision.files import SiteDir
from hub.provision.local import start_site_mosquitto, start_site_redis
from hub.store.alarms import Store
from tests.hubproc import start_hub

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "pi" / "install.sh"
EXAMPLE_SITE = REPO / "deploy" / "examples" / "site.toml"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A site with one provisioned wearable, and its broker running."""
    root = tmp_path_factory.mktemp("site")
    assert main(["provision", "init", "--site", str(root), "--site-file", str(EXAMPLE_SITE),
                 "--broker-host", "127.0.0.1", "--listen", "127.0.0.1",
                 "--mqtt-port", str(free_port())]) == 0
    assert main(["provision", "device", "--site", str(root), "--branch", "westside", "--room",
                 "front-desk", "--kind", "wearable", "--id", "west-front-02",
                 "--no-reload"]) == 0
    broker = start_site_mosquitto(root, tmp_path_factory.mktemp("broker"))
    yield SiteDir(root).bundle("west-front-02")
    broker.stop()


@pytest.fixture(scope="module")
def installed(bundle, tmp_path_factory) -> Path:
    """The bundle installed (dry-run) into a temporary root; returns the root."""
    root = tmp_path_factory.mktemp("pi")
    result = install("--dry-run", "--root", str(root), str(bundle))
    assert result.returncode == 0, result.stderr
    return root


def install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True,
                          timeout=60)


def test_a_bundle_installs_into_a_root_and_the_selftest_passes(bundle, tmp_path):
    root = tmp_path / "pi"
    result = install("--dry-run", "--root", str(root), str(bundle))
    assert result.returncode == 0, result.stderr
    planned = result.stdout
    for step in ("apt-get install -y -qq python3-venv python3-lgpio",
                 "useradd --system --user-group", "usermod -a -G gpio haven",
                 "python3 -m venv --system-site-packages /opt/haven/venv",
                 f"pip install --disable-pip-version-check -q {REPO}[device]",
                 "systemctl enable --now haven-device.service"):
        assert any(line.startswith("would run: ") and step in line
                   for line in planned.splitlines()), step
    etc = root / "etc" / "haven"
    assert stat.S_IMODE((etc / "device.key").stat().st_mode) == 0o640
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750
    assert (root / "etc/systemd/system/haven-device.service").read_text() == \
        (REPO / "deploy/systemd/haven-device.service").read_text()

    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    check = subprocess.run([sys.executable, "-m", "hub", "device", "selftest", "--config",
                            str(etc / "device.toml")], capture_output=True, text=True,
                           timeout=60, env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    lines = check.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 4, check.stdout
    assert any(line.startswith("ok   broker:") and "over TLS" in line for line in lines)


@pytest.mark.parametrize("args, message", [
    (["--dry-run", "--root", "ROOT", "NOBUNDLE"], "cannot read the bundle"),
    (["--dry-run", "--root", "ROOT", "NOTATAR"], "not a tar.gz bundle"),
    (["--root", "ROOT", "BUNDLE"], "--root needs --dry-run"),
])
def test_install_refuses_bad_bundles_and_arguments(bundle, tmp_path, args, message):
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    paths = {"ROOT": str(tmp_path / "pi"), "NOBUNDLE": str(tmp_path / "missing.tar.gz"),
             "NOTATAR": str(tmp_path / "junk.tar.gz"), "BUNDLE": str(bundle)}
    result = install(*(paths.get(a, a) for a in args))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "pi").exists()


def test_the_installed_device_raises_an_alarm_through_a_hub_run_from_haven_env(bundle, installed,
                                                                               tmp_path):
    """The whole provisioned chain: the device's installed config, the broker's generated
    config, Redis's generated config, and a real hub process with the haven.env settings
    (TLS identity, password) places the alarm from the site file."""
    site = SiteDir(bundle.parent.parent)
    redis_server = start_site_redis(site.root, tmp_path / "redis")
    env = dict(line.split("=", 1) for line in site.hub_env.read_text().splitlines()
               if line and not line.startswith("#"))
    url = env["HAVEN_REDIS_URL"].replace(":6379/", f":{redis_server.port}/")
    port = int(env["HAVEN_BROKER"].rsplit(":", 1)[1])
    hub = start_hub(tmp_path / "hub.log", SimpleNamespace(port=port),
                    SimpleNamespace(url=url), site=site.site_file,
                    extra_env={k: v for k, v in env.items() if k.startswith("HAVEN_BROKER_")})
    factory = MockFactory()
    app = DeviceApp(load_device_config(installed / "etc/haven/device.toml"),
                    pin_factory=factory)
    try:
        app.start()
        assert app.connected.wait(10)
        alarm = app.raise_alarm("emergency")
        store = Store.from_url(url)
        deadline = time.monotonic() + 10
        while (stored := store.get_alarm(alarm.alarm_id)) is None:
            assert time.monotonic() < deadline, (tmp_path / "hub.log").read_text()
            time.sleep(0.05)
        assert (stored.device, stored.branch, stored.room) == ("west-front-02", "westside",
                                                               "front-desk")
        while app.tracks[alarm.alarm_id].state in ("sending", "sent"):  # the hub's "received"
            assert time.monotonic() < deadline, (tmp_path / "hub.log").read_text()
            time.sleep(0.05)
        assert "***@" in (tmp_path / "hub.log").read_text()  # the password is never logged
        assert url.split("@")[0].split(":")[-1] not in (tmp_path / "hub.log").read_text()
    finally:
        app.stop()
        factory.close()
        hub.terminate()
        hub.wait(10)
        redis_server.stop()
