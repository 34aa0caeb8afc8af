"""Test kit for the ARC link: pysiaalarm receivers on loopback (the receiver library Home
Assistant's SIA integration uses, not our code), a site with ``[arc]`` pointing at them,
and a silent port (accepts, never answers)."""

from __future__ import annotations

import queue
import socket
import time

from pysiaalarm import CommunicationsProtocol, SIAAccount, SIAClient

from hub.arc.config import resolve_keys
from hub.arc.queue import ArcQueue
from hub.arc.sender import ArcSender
from hub.config.site import parse_site
from tests.conftest import PLANS_DIR, SAMPLE_SITE

ACCOUNTS = {"main": "1001", "westside": "1002"}
TEXT_KEY = "0123456789abcdef"   # pysiaalarm uses the key's characters as the AES key


class Receiver:
    """A pysiaalarm receiver; ``events`` gets every event it ACKed (link tests too)."""

    def __init__(self, *, key: str | None = None, protocol: str = "tcp", port: int = 0):
        self.events: queue.Queue = queue.Queue()
        #: (time.monotonic() just after the receiver sent its ACK, event), in order
        self.arrived: list[tuple[float, object]] = []
        self.key, self.protocol = key, protocol
        accounts = [SIAAccount(a, key) for a in ACCOUNTS.values()]
        self.client = SIAClient("127.0.0.1", port, accounts, self._got,
                                protocol=CommunicationsProtocol[protocol.upper()])
        self.port = self.client.sia_server.server_address[1]
        self.client.start(poll_interval=0.02)  # serve_forever: a quick stop

    def _got(self, event) -> None:
        self.arrived.append((time.monotonic(), event))
        self.events.put(event)

    def stop(self) -> None:
        self.client.stop()

    def restart(self) -> "Receiver":
        """The same receiver back on the same port."""
        return Receiver(key=self.key, protocol=self.protocol, port=self.port)

    def next_event(self, timeout: float = 5.0):
        """The next event that is not a link test (NULL), waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if str(event.message_type.value) != "NULL":
                return event

    def quiet(self, wait: float = 0.2) -> bool:
        """No alarm event arrives within ``wait`` s (link tests aside)."""
        try:
            self.next_event(wait)
        except queue.Empty:
            return True
        return False


class Silent:
    """A port that accepts connections and never answers (a hung receiver)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def stop(self) -> None:
        self.sock.close()


def free_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arc_site(*ports: int, fmt: str = "sia-dcs", protocol: str = "tcp", key: bool = False,
             supervision_s: float = 3600, timeout_s: float = 0.3, attempts: int = 2,
             extra: str = ""):
    receivers = "".join(
        f'\n[[arc.receiver]]\nhost = "127.0.0.1"\nport = {port}\nprotocol = "{protocol}"\n'
        + ('key_env = "TEST_ARC_KEY"\nkey_format = "text"\n' if key else "")
        for port in ports)
    text = (SAMPLE_SITE.read_text()
            + f'\n[arc]\naccounts = {{ main = "1001", westside = "1002" }}\n'
              f'kinds = {{ emergency = "panic", safe_room = "holdup", welfare = "duress" }}\n'
              f'format = "{fmt}"\nsupervision_s = {supervision_s}\n'
              f"ack_timeout_s = {timeout_s}\nattempts = {attempts}\n" + receivers + extra)
    return parse_site(text, "site.toml", PLANS_DIR)


def arc_parts(site, store, *, worker: str = "w1", told: list | None = None,
              retry_s: float = 0.2, clock=time.time, supervision_s: float | None = None,
             idle_s: float = 0.01):
    """An ArcQueue and ArcSender on ``store``; IT texts land in ``told``."""
    q = ArcQueue(site, store, clock=clock)
    told = told if told is not None else []
    sender = ArcSender(q, resolve_keys(site.arc, site.source, {"TEST_ARC_KEY": TEXT_KEY}),
                       worker=worker, tell_it=told.append, clock=clock, retry_s=retry_s,
                       idle_s=idle_s, supervision_s=supervision_s)
    return q, sender


def drain(sender: ArcSender, *, until=None, timeout: float = 5.0) -> None:
    """Run delivery passes until the queue is empty (and ``until()``), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sender.step()
        if sender.queue.waiting() == 0 and (until() if until else True):
            return
        time.sleep(0.01)
    raise AssertionError(f"{sender.queue.waiting()} ARC event(s) still queued")
