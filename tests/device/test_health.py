"""Health readers: absent sensors are None, never an exception."""

import socket

import pytest

from device import health, sdnotify

WIRELESS = """Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
 wlan0: 0000   54.  -56.  -256        0      0      0      0     12        0
"""


def test_wifi_signal_is_read_from_proc_net_wireless(tmp_path):
    path = tmp_path / "wireless"
    path.write_text(WIRELESS)
    assert health.wifi_dbm(path) == -56.0
    path.write_text(WIRELESS.split("\n", 2)[0] + "\n" + WIRELESS.split("\n", 2)[1] + "\n")
    assert health.wifi_dbm(path) is None
    assert health.wifi_dbm(tmp_path / "missing") is None


def test_cpu_temperature(tmp_path):
    path = tmp_path / "temp"
    path.write_text("48312\n")
    assert health.cpu_temp_c(path) == 48.3
    path.write_text("garbage")
    assert health.cpu_temp_c(path) is None


def broken():
    raise OSError("i2c bus gone")


def test_a_broken_battery_reader_is_absent_not_fatal():
    assert health.read(health.load_reader("tests.device.test_health:broken")) is None
    assert health.read(lambda: 87) == 87.0
    assert health.read(lambda: "full") is None
    with pytest.raises(ValueError, match="must look like"):
        health.load_reader("nonsense")
    with pytest.raises(ValueError, match="cannot be loaded"):
        health.load_reader("tests.device.test_health:nope")


def test_sd_notify_writes_to_the_socket(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert sdnotify.notify("READY=1", path) is True
        assert server.recv(64) == b"READY=1"
    assert sdnotify.notify("READY=1", "") is False
    assert sdnotify.notify("READY=1", str(tmp_path / "nobody")) is False
