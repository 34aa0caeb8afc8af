"""Helpers for the incident tests (no tests here): scripted alarms, a recording notifier,
and a tiny SMTP server that keeps what it is sent."""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field

from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm, Channel, Delivery, PageKey
from hub.store.alarms import Store

#: 2024-03-15 12:00:00 UTC, in ms: scripted alarms start here.
T0 = 1_710_504_000_000


class RecordingNotifier:
    """Accepts every SMS and keeps (to, body); ``fail`` numbers are refused."""

    name = "recording"

    def __init__(self, fail: tuple[str, ...] = ()):
        self.sent: list[tuple[str, str]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def send_sms(self, to, body, *, status_url=None):
        with self._lock:
            if to in self.fail:
                return Delivery.failed("invalid number", retryable=False, code=21211)
            self.sent.append((to, body))
            return Delivery.sent(f"SM{len(self.sent)}")

    def place_call(self, to, text, *, voice_url=None, status_url=None):
        return self.send_sms(to, text)


def scripted_alarm(store: Store, alarm_id: str, *, at_ms: int = T0, kind: str = "emergency",
                   branch: str = "main", room: str = "circulation",
                   device: str = "main-circ-01", drill: bool = False,
                   notified: tuple[tuple[str, str], ...] = (("Dana Ortiz", "+12065550102"),),
                   ack_after_s: float | None = 20, ack_by: str = "Dana Ortiz",
                   close: str | None = "resolve", close_after_s: float = 300,
                   outcome: str = "Police attended: customer left") -> Alarm:
    """An alarm with its escalation, pages, acknowledgement and close, at scripted times."""
    alarm = Alarm(id=alarm_id, kind=kind, device=device, branch=branch, room=room,
                  pressed_at_ms=at_ms - 50, received_at_ms=at_ms)
    store.raise_alarm(alarm, escalate=True)
    store.add_timeline(alarm_id, "escalation", at_ms=at_ms, attempt=0, step=1, round=1,
                       branch_state="drill" if drill else "staffed", notifications=len(notified))
    for name, phone in notified:
        store.pages.record(PageKey(alarm_id, 0, phone, Channel.SMS), name,
                           Delivery.sent("SM-" + phone), at_ms + 500)
    if ack_after_s is not None:
        store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by=ack_by,
                         now_ms=at_ms + int(ack_after_s * 1000))
    if close == "resolve":
        store.transition(alarm_id, AlarmEvent.RESOLVE, by="dana", reason=outcome,
                         now_ms=at_ms + int(close_after_s * 1000))
    elif close == "cancel":
        store.transition(alarm_id, AlarmEvent.CANCEL_OPERATOR, by="dana",
                         reason="false alarm: elbow", now_ms=at_ms + int(close_after_s * 1000))
    return store.get_alarm(alarm_id)


def daily_test_press(store: Store, alarm_id: str, device: str, at_ms: int) -> None:
    alarm = Alarm(id=alarm_id, kind="test", device=device, branch="main", room="circulation",
                  pressed_at_ms=at_ms, received_at_ms=at_ms)
    store.raise_alarm(alarm)
    store.transition(alarm_id, AlarmEvent.RESOLVE, by="hub", now_ms=at_ms,
                     reason="test: recorded, no one is paged")


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], str]] = field(default_factory=list)


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        box: Mailbox = self.server.mailbox  # type: ignore[attr-defined]
        self.wfile.write(b"220 test ESMTP\r\n")
        sender, rcpts = "", []
        while line := self.rfile.readline():
            cmd = line.decode().strip()
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250 test\r\n")
            elif verb == "MAIL":
                sender, rcpts = cmd.split(":", 1)[1].strip(" <>"), []
                self.wfile.write(b"250 OK\r\n")
            elif verb == "RCPT":
                rcpts.append(cmd.split(":", 1)[1].strip(" <>"))
                self.wfile.write(b"250 OK\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 go on\r\n")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk.decode())
                box.messages.append((sender, rcpts, "".join(data)))
                self.wfile.write(b"250 queued\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.mailbox = Mailbox()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def close(self) -> None:
        self.shutdown()
        self.server_close()
