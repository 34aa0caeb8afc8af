"""A provisioned site against mosquitto running its generated config.

One site per module (``haven provision init`` plus three devices) and one broker
started from the generated drop-in, wrapped as Debian's main config wraps it. The
hub side is the real :class:`hub.edges.mqtt.HubMqtt` with the TLS settings from the
generated ``haven.env``. Negative checks never wait for silence: each one is
followed by a permitted message on the same path, and ordering proves the
forbidden one never arrived.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.app.cli import main
from hub.app.localservices import free_port
from hub.edges.mqtt import BrokerAddress, HubMqtt
from hub.provision import ca
from hub.provision.files import SiteDir
from hub.provision.local import start_site_mosquitto
from hub.config.settings import broker_tls_from_env

EXAMPLE_SITE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "site.toml"
PREFIX = "haven/v1"
WAIT_S = 10


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


class Site:
    def __init__(self, root: Path, workdir: Path):
        self.root, self.dir, self.workdir = root, SiteDir(root), workdir
        self.broker = start_site_mosquitto(root, workdir)

    def restart_broker(self) -> None:
        self.broker.stop()
        self.broker = start_site_mosquitto(self.root, self.workdir)

    def device_files(self, device_id: str) -> dict:
        d = self.dir.device_dir(device_id)
        return {"ca": d / "ca.crt", "cert": d / "device.crt", "key": d / "device.key"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    assert main(["provision", "init", "--site", str(root), "--site-file", str(EXAMPLE_SITE),
                 "--broker-host", "127.0.0.1", "--listen", "127.0.0.1",
                 "--mqtt-port", str(free_port())]) == 0
    for device_id, room in (("t-a", "circulation"), ("t-b", "reference"), ("t-c", "children")):
        assert main(["provision", "device", "--site", str(root), "--branch", "main", "--room",
                     room, "--kind", "wall", "--id", device_id, "--no-reload"]) == 0
    s = Site(root, tmp_path_factory.mktemp("broker"))
    yield s
    s.broker.stop()


class Client:
    """A paho client that records whether the broker let it in, and what it receives."""

    def __init__(self, port: int, *, ca=None, cert=None, key=None, client_id="probe"):
        self.connected, self.done = threading.Event(), threading.Event()
        self.reason = "no answer"
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        if ca:
            self.c.tls_set(ca_certs=str(ca), certfile=cert and str(cert),
                           keyfile=key and str(key))
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)
        self.pubacks: dict[int, object] = {}
        self.c.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        try:
            self.c.connect("127.0.0.1", port, keepalive=10)
        except OSError as exc:  # ssl.SSLError is an OSError
            self.reason = f"refused at connect: {exc}"
            self.done.set()
            return
        self.c.loop_start()
        self.done.wait(WAIT_S)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.reason = str(reason_code)
        if not reason_code.is_failure:
            self.connected.set()
        self.done.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self.connected.is_set():
            self.reason = f"dropped before CONNACK: {reason_code}"
        self.done.set()

    def publish(self, topic: str, payload: bytes, retain=False):
        """QoS 1 publish; returns the broker's PUBACK reason code."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        return self.pubacks.pop(info.mid)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def device(site):
    opened: list[Client] = []

    def connect(device_id: str, **kwargs) -> Client:
        files = site.device_files(device_id)
        client = Client(site.broker.port, ca=files["ca"], cert=files["cert"], key=files["key"],
                        client_id=kwargs.pop("client_id", device_id), **kwargs)
        opened.append(client)
        assert client.connected.is_set(), f"{device_id}: {client.reason}\n{site.broker.tail()}"
        return client
    yield connect
    for client in opened:
        client.close()


@pytest.fixture
def hub(site):
    """The real hub MQTT edge, with the TLS settings provision wrote into haven.env."""
    got: queue.Queue = queue.Queue()
    tls = broker_tls_from_env(read_env(site.dir.hub_env))
    edge = HubMqtt(BrokerAddress("127.0.0.1", site.broker.port),
                   lambda topic, payload, retained=False: got.put((topic, payload)),
                   client_id="haven-hub-test", tls=tls)
    thread = threading.Thread(target=edge.run, daemon=True)
    thread.start()
    assert edge.ready.wait(WAIT_S), site.broker.tail()
    edge.got = got
    yield edge
    edge.stop()
    thread.join(5)


def next_on(q: queue.Queue, channel: str):
    """The next message on ``.../<channel>`` (other channels skipped), or fail."""
    while True:
        topic, payload = q.get(timeout=WAIT_S)
        if topic.endswith("/" + channel):
            return topic, payload


def test_a_device_connects_with_its_certificate_and_the_hub_gets_its_alarm(site, device, hub):
    a = device("t-a")
    a.publish(f"{PREFIX}/dev/t-a/alarm", b"press-1")
    assert next_on(hub.got, "alarm") == (f"{PREFIX}/dev/t-a/alarm", b"press-1")


@pytest.mark.parametrize("channel", ["alarm", "status", "heartbeat", "event"])
def test_a_device_cannot_publish_as_another_device(site, device, hub, channel):
    forger = device("t-a")
    assert str(forger.publish(f"{PREFIX}/dev/t-b/{channel}", b"forged")) == "Not authorized"
    # mosquitto 2.0 also hangs up on the forger. The forgery was refused before the broker
    # answered; had it been routed, it would reach the hub before anything published after.
    assert str(device("t-a").publish(f"{PREFIX}/dev/t-a/{channel}", b"after")) == "Success"
    assert next_on(hub.got, channel) == (f"{PREFIX}/dev/t-a/{channel}", b"after")


def test_a_device_cannot_read_another_devices_commands(site, device, hub):
    a = device("t-a")
    a.c.subscribe([(f"{PREFIX}/dev/t-b/cmd", 1), (f"{PREFIX}/dev/t-a/cmd", 1)])
    a.subacks.get(timeout=WAIT_S)
    hub.publish(f"{PREFIX}/dev/t-b/cmd", b"for-b")
    hub.publish(f"{PREFIX}/dev/t-a/cmd", b"for-a")
    assert a.messages.get(timeout=WAIT_S) == (f"{PREFIX}/dev/t-a/cmd", b"for-a")
    assert a.messages.empty()


def test_the_hub_identity_reads_every_device_topic(site, device, hub):
    b = device("t-b")
    b.publish(f"{PREFIX}/dev/t-b/status", b"online", retain=True)
    b.publish(f"{PREFIX}/dev/t-b/event", b"checkin")
    b.publish(f"{PREFIX}/dev/t-b/alarm", b"press")
    b.publish(f"{PREFIX}/dev/t-b/heartbeat", b"beat")
    seen = {next_on(hub.got, ch) for ch in ("status", "event", "alarm", "heartbeat")}
    assert seen == {(f"{PREFIX}/dev/t-b/{ch}", p) for ch, p in
                    (("status", b"online"), ("event", b"checkin"), ("alarm", b"press"),
                     ("heartbeat", b"beat"))}


def test_a_device_cannot_take_over_another_devices_session(site, device):
    b = device("t-b")
    device("t-a", client_id="t-b")  # the broker uses the certificate's CN as client id
    b.publish(f"{PREFIX}/dev/t-b/event", b"still-here")  # raises if b was disconnected
    assert b.c.is_connected()


def test_a_device_and_a_hub_worker_added_later_work_after_a_broker_reload(site, device, hub):
    """What 'systemctl reload mosquitto' does after 'haven provision device' or 'hub': the
    ACL is read again on SIGHUP; the new certificates need nothing (same CA)."""
    assert main(["provision", "device", "--site", str(site.root), "--branch", "main", "--room",
                 "workroom", "--kind", "wall", "--id", "t-d", "--no-reload"]) == 0
    assert main(["provision", "hub", "haven-hub-2", "--site", str(site.root),
                 "--no-reload"]) == 0
    site.broker.process.send_signal(signal.SIGHUP)
    d = device("t-d")
    deadline = time.monotonic() + WAIT_S
    while str(d.publish(f"{PREFIX}/dev/t-d/alarm", b"new")) != "Success":
        assert time.monotonic() < deadline, site.broker.tail()  # SIGHUP is asynchronous
        d = device("t-d")
    assert next_on(hub.got, "alarm") == (f"{PREFIX}/dev/t-d/alarm", b"new")
    # A second worker with its own identity reads too, and neither takes the other's session.
    worker = Client(site.broker.port, ca=site.dir.ca_cert, cert=site.dir.hub_cert("haven-hub-2"),
                    key=site.dir.hub_key("haven-hub-2"), client_id="haven-hub")
    try:
        assert worker.connected.is_set(), worker.reason
        worker.c.subscribe(f"{PREFIX}/dev/+/event", qos=1)
        assert all(not rc.is_failure for rc in worker.subacks.get(timeout=WAIT_S))
        d.publish(f"{PREFIX}/dev/t-d/event", b"seen-by-both")
        assert worker.messages.get(timeout=WAIT_S) == (f"{PREFIX}/dev/t-d/event", b"seen-by-both")
        assert next_on(hub.got, "event") == (f"{PREFIX}/dev/t-d/event", b"seen-by-both")
    finally:
        worker.close()


def test_an_acl_from_before_heartbeats_refuses_them_until_provision_acl_mends_it(
        site, device, hub, capsys):
    """A site provisioned before firmware 0.3 has no ``heartbeat`` lines: the broker refuses
    a device's heartbeat (the firmware then falls back: test_device); ``haven provision acl``
    rewrites the ACL, and after the reload heartbeats reach the hub."""
    text = site.dir.acl.read_text()
    site.dir.acl.write_text("".join(line for line in text.splitlines(keepends=True)
                                    if not line.rstrip().endswith("/heartbeat")))
    site.broker.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT_S
    while str(device("t-c").publish(f"{PREFIX}/dev/t-c/heartbeat", b"old")) != "Not authorized":
        assert time.monotonic() < deadline, site.broker.tail()  # SIGHUP is asynchronous
    assert main(["provision", "acl", "--site", str(site.root), "--no-reload"]) == 0
    assert "rewritten" in capsys.readouterr().out
    assert site.dir.acl.read_text() == text
    assert main(["provision", "acl", "--site", str(site.root), "--no-reload"]) == 0
    assert "already up to date" in capsys.readouterr().out
    site.broker.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT_S
    while str(device("t-c").publish(f"{PREFIX}/dev/t-c/heartbeat", b"new")) != "Success":
        assert time.monotonic() < deadline, site.broker.tail()
    assert next_on(hub.got, "heartbeat") == (f"{PREFIX}/dev/t-c/heartbeat", b"new")


def other_ca_cert(tmp_path: Path) -> dict:
    rogue = ca.create_ca("Somebody else")
    cert = ca.issue(rogue.cert_pem, rogue.key_pem, "t-a")
    (tmp_path / "rogue.crt").write_bytes(cert.cert_pem)
    (tmp_path / "rogue.key").write_bytes(cert.key_pem)
    return {"cert": tmp_path / "rogue.crt", "key": tmp_path / "rogue.key"}


@pytest.mark.parametrize("how", ["plaintext", "no certificate", "certificate from another CA"])
def test_strangers_are_refused(site, tmp_path, how):
    files = site.device_files("t-a")
    kwargs = {"plaintext": {},
              "no certificate": {"ca": files["ca"]},
              "certificate from another CA": {"ca": files["ca"], **other_ca_cert(tmp_path)}}[how]
    client = Client(site.broker.port, **kwargs)
    try:
        assert client.done.is_set(), "the broker neither accepted nor refused"
        assert not client.connected.is_set(), f"{how}: let in ({client.reason})"
    finally:
        client.close()


def test_a_revoked_device_is_refused_after_the_broker_restarts(site, device, tmp_path, capsys):
    device("t-c").close()  # it could connect before
    kept = {name: tmp_path / path.name for name, path in site.device_files("t-c").items()}
    for name, path in site.device_files("t-c").items():  # a stolen copy of its files
        kept[name].write_bytes(path.read_bytes())
    assert main(["provision", "revoke", "t-c", "--site", str(site.root), "--no-reload"]) == 0
    assert "sudo systemctl restart mosquitto" in capsys.readouterr().out  # CRL read at start
    site.restart_broker()
    assert not site.dir.device_dir("t-c").exists() and not site.dir.bundle("t-c").exists()
    assert '"t-c"' not in site.dir.site_file.read_text()
    revoked = Client(site.broker.port, **kept)
    try:
        assert revoked.done.is_set(), "the broker neither accepted nor refused"
        assert not revoked.connected.is_set(), f"revoked t-c let in ({revoked.reason})"
    finally:
        revoked.close()
    from device.config import BrokerConfig, DeviceConfig
    from device.selftest import run_selftest
    from gpiozero.pins.mock import MockFactory
    stolen = DeviceConfig("t-c", BrokerConfig("127.0.0.1", site.broker.port,
                                              ca_file=str(kept["ca"]), cert_file=str(kept["cert"]),
                                              key_file=str(kept["key"])), outbox=":memory:")
    check = next(c for c in run_selftest(stolen, pin_factory=MockFactory())
                 if c.name == "broker")
    assert not check.ok and "revoked" in check.detail, check.detail  # the selftest says so
    device("t-a")  # everyone else still gets in


def test_a_second_broker_serves_the_same_devices_with_its_own_certificate(site, tmp_path,
                                                                         capsys):
    """haven provision broker: the pair's second broker, from its own drop-in, lets in a
    device provisioned before it, under the shared ACL, and shows a certificate of its
    own name from the site CA (issue 17, no single broker)."""
    import ssl
    port = free_port()
    assert main(["provision", "broker", "--site", str(site.root), "hub-b.test", "--listen",
                 "127.0.0.1", "--mqtt-port", str(port)]) == 0
    said = capsys.readouterr().out
    assert f"HAVEN_BROKER=127.0.0.1:{site.broker.port},hub-b.test:{port}" in said
    second = start_site_mosquitto(site.root, tmp_path / "second", broker="hub-b.test",
                                  port=port)
    try:
        files = site.device_files("t-a")
        client = Client(port, ca=files["ca"], cert=files["cert"], key=files["key"],
                        client_id="t-a")
        try:
            assert client.connected.is_set(), f"{client.reason}\n{second.tail()}"
            assert client.publish(f"{PREFIX}/dev/t-a/alarm", b"{}").is_failure is False
            assert client.publish(f"{PREFIX}/dev/t-b/alarm", b"{}").is_failure  # ACL shared
        finally:
            client.close()
        pem = ssl.get_server_certificate(("127.0.0.1", port))
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(pem.encode())
        common_name = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        assert [a.value for a in common_name] == ["hub-b.test"]
    finally:
        second.stop()
    again = main(["provision", "broker", "--site", str(site.root), "hub-b.test"])
    assert again == 2 and "already has a certificate" in capsys.readouterr().err
