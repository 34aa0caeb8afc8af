"""The firmware over TLS: a site CA, the broker's certificate, and a device client
certificate (CN = device id), against a real mosquitto that requires it."""

from __future__ import annotations

import queue
import subprocess

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion

from device.config import BrokerConfig, DeviceConfig, InputConfig
from device.firmware import DeviceApp
from device.protocol import decode_alarm
from hub.app.localservices import start_mosquitto


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    """ca.crt, server.crt/key (SAN 127.0.0.1), device.crt/key (CN main-circ-01), other.crt/key
    signed by a different CA."""
    d = tmp_path / "pki"
    d.mkdir()
    for ca in ("ca", "rogue"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                f"/CN=Haven {ca} CA", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ca, cn, ext in (("server", "ca", "127.0.0.1", ["-extfile", "san.ext"]),
                              ("device", "ca", "main-circ-01", []),
                              ("other", "rogue", "main-circ-01", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout",
                f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *ext, cwd=d)
    return d


@pytest.fixture
def tls_broker(tmp_path, pki):
    service = start_mosquitto(tmp_path / "mosquitto", listener=[
        f"cafile {pki / 'ca.crt'}", f"certfile {pki / 'server.crt'}",
        f"keyfile {pki / 'server.key'}", "require_certificate true",
        "use_identity_as_username true", "allow_anonymous false"])
    yield service
    service.stop()


def test_a_device_with_a_site_certificate_raises_an_alarm_over_tls(tls_broker, pki, tmp_path):
    got: queue.Queue = queue.Queue()
    observer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="observer",
                           protocol=mqtt.MQTTv5)
    observer.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / "device.crt"),
                     keyfile=str(pki / "device.key"))
    observer.on_message = lambda c, u, m: got.put((m.topic, m.payload))
    observer.connect("127.0.0.1", tls_broker.port)
    observer.subscribe("haven/v1/dev/+/alarm", qos=1)
    observer.loop_start()
    factory = MockFactory()
    config = DeviceConfig("main-circ-01", BrokerConfig(
        "127.0.0.1", tls_broker.port, ca_file=str(pki / "ca.crt"),
        cert_file=str(pki / "device.crt"), key_file=str(pki / "device.key")),
        inputs=(InputConfig(17, "button", (("hold 2s", "emergency"),)),), outbox=":memory:")
    app = DeviceApp(config, pin_factory=factory)
    try:
        app.start()
        assert app.connected.wait(10), tls_broker.tail()
        alarm = app.raise_alarm("emergency")
        topic, payload = got.get(timeout=5)
        assert decode_alarm(topic, payload).alarm_id == alarm.alarm_id
    finally:
        app.stop()
        factory.close()
        observer.loop_stop()
        observer.disconnect()


def test_a_certificate_from_another_ca_is_refused_and_shown_as_fault(tls_broker, pki):
    factory = MockFactory()
    config = DeviceConfig("main-circ-01", BrokerConfig(
        "127.0.0.1", tls_broker.port, ca_file=str(pki / "ca.crt"),
        cert_file=str(pki / "other.crt"), key_file=str(pki / "other.key")),
        outbox=":memory:")
    app = DeviceApp(config, pin_factory=factory)
    try:
        app.start()
        assert not app.connected.wait(3)
        from device.feedback import Signal
        assert app.feedback.persistent is Signal.FAULT
    finally:
        app.stop()
        factory.close()


def _selftest_broker(port, pki, cert="device"):
    from device.selftest import run_selftest
    config = DeviceConfig("main-circ-01", BrokerConfig(
        "127.0.0.1", port, ca_file=str(pki / "ca.crt"), cert_file=str(pki / f"{cert}.crt"),
        key_file=str(pki / f"{cert}.key")), outbox=":memory:")
    return next(c for c in run_selftest(config, pin_factory=MockFactory())
                if c.name == "broker")


def test_the_selftest_passes_only_when_the_broker_accepts_the_certificate(tls_broker, pki):
    good = _selftest_broker(tls_broker.port, pki)
    assert good.ok and "connection accepted" in good.detail
    # Under TLS 1.3 the handshake completes on this side before the broker refuses the
    # certificate: a handshake alone passed this check.
    foreign = _selftest_broker(tls_broker.port, pki, cert="other")
    assert not foreign.ok, foreign.detail
    assert "certificate" in foreign.detail, foreign.detail


def test_the_selftest_reports_a_broker_that_refuses_the_device(tmp_path, pki):
    broker = start_mosquitto(tmp_path / "closed", listener=["allow_anonymous false"])
    try:
        from device.selftest import run_selftest
        config = DeviceConfig("main-circ-01", BrokerConfig("127.0.0.1", broker.port),
                              outbox=":memory:")
        check = next(c for c in run_selftest(config, pin_factory=MockFactory())
                     if c.name == "broker")
    finally:
        broker.stop()
    assert not check.ok and "refused the connection" in check.detail
    assert "username/password_file" in check.detail
