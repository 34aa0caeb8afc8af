"""The systemd units pass ``systemd-analyze verify`` and keep their promises.

``verify`` checks that every Exec command exists, so the units are verified
inside a temporary root holding the system's own unit directory (sysinit.target
and friends) and an executable stand-in at each Exec path the units name.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
NAMES = ("haven-device.service", "haven-hub.engine.service", "haven-dashboard.service")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def exec_paths(name: str) -> list[str]:
    service = read_unit(name)["Service"]
    return [service[key].split()[0].lstrip("-@!+") for key in service if key.startswith("Exec")]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir(),
                    reason="systemd-analyze is not installed (apt-get install systemd)")
def test_units_pass_systemd_analyze_verify(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in NAMES:
        shutil.copy(UNITS / name, root / "etc/systemd/system" / name)
        for path in exec_paths(name):
            stub = root / path.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    result = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *NAMES],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    # Unknown keys and bad values are only warnings (exit 0), so any output is a failure.
    assert result.returncode == 0 and not result.stdout + result.stderr, \
        result.stdout + result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_units_restart_forever_as_a_dedicated_hardened_user(name):
    unit = read_unit(name)
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"  # never gives up restarting
    assert service["User"] == service["Group"] == "haven"
    for key, value in (("NoNewPrivileges", "true"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "true"), ("CapabilityBoundingSet", "")):
        assert service[key] == value, key


def test_the_device_unit_has_a_watchdog_and_still_reaches_gpio():
    service = read_unit("haven-device.service")["Service"]
    assert service["Type"] == "notify" and service["WatchdogSec"] == "30"
    assert service["SupplementaryGroups"] == "gpio"
    assert "PrivateDevices" not in service  # it would hide /dev/gpiochip*
    text = (UNITS / "haven-device.service").read_text()
    assert "DeviceAllow=char-gpiochip rw" in text.splitlines()


@pytest.mark.parametrize("name", ["haven-hub.engine.service", "haven-dashboard.service"])
def test_hub_and_dashboard_claim_no_watchdog_they_do_not_feed(name):
    """Neither process sends sd_notify: Type=notify or WatchdogSec= would kill it."""
    service = read_unit(name)["Service"]
    assert service["Type"] == "simple" and "WatchdogSec" not in service
    assert service["EnvironmentFile"] == "/etc/haven/hub/haven.env"
