"""A local fake of Twilio's REST API, for tests that drive the real twilio SDK.

Serves on 127.0.0.1 (a free port) what the hub uses:

    POST /2010-04-01/Accounts/<AccountSid>/Messages.json   To, From|MessagingServiceSid, Body
    POST /2010-04-01/Accounts/<AccountSid>/Calls.json      To, From, Twiml|Url
    GET  /2010-04-01/Accounts/<AccountSid>.json            the account (credentials check)
    GET  /2010-04-01/Accounts/<AccountSid>/Messages.json   the message list (also Calls)

and answers like Twilio: 201 with the resource as JSON, 401 for bad Basic
auth, 400 with ``{"code": 21604, ...}`` for a missing parameter. Failures can
be injected per recipient (:meth:`FakeTwilio.fail`) or for every request
(:meth:`FakeTwilio.fail_all`, e.g. 429s), and the whole API can go down - new
connections refused, open ones reset - and come back on the same port
(:meth:`FakeTwilio.down`, :meth:`FakeTwilio.up`). Every request is recorded
with ``time.monotonic()`` at receipt. With ``tls`` (a server ``ssl.SSLContext``) it
serves HTTPS, as the real API only does, and :attr:`FakeTwilio.url` says ``https``.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

API_RE = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-zA-Z]+)/(?P<res>Messages|Calls)\.json$")
ACCOUNT_RE = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-zA-Z]+)\.json$")


@dataclass
class Request:
    resource: str          # "Messages" or "Calls"
    form: dict[str, str]
    status: int            # what the fake answered
    at: float              # time.monotonic() at receipt
    answered: float = 0.0  # time.monotonic() when the answer was written
    sid: str = ""          # the resource created (accepted requests)
    created: float = 0.0   # time.time() at receipt: the resource's date_created


@dataclass
class Failure:
    status: int
    code: int
    message: str
    times: int | None = None  # None: every time


@dataclass
class FakeTwilio:
    account_sid: str = "AC" + "0" * 32
    auth_token: str = "test-token"
    requests: list[Request] = field(default_factory=list)
    delay_s: float = 0.0  # answer each request this long after receiving it (like a slow API)
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context

    def __post_init__(self):
        #: Final status to report back for a number: "delivered" (default), "undelivered"
        #: (SMS, error 30003), "no-answer", "busy" or "voicemail" (calls: completed, with
        #: AnsweredBy machine_end_beep when the call asked for machine detection).
        self.outcome: dict[str, str] = {}
        self.callbacks: list[tuple[str, dict[str, str], int]] = []  # (url, form, HTTP status)
        self._cond = threading.Condition()
        self._failures: dict[str, Failure] = {}
        self._failure_all: Failure | None = None  # for every recipient, before per-number ones
        self._connections: set = set()  # open client sockets, reset by down()
        self.lists_denied = False
        self._port = 0
        self._seq = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # --- control --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._port}"

    def fail(self, to: str, status: int, code: int, message: str, times: int | None = None):
        """Answer requests to ``to`` with an error (``times`` times, or always)."""
        self._failures[to] = Failure(status, code, message, times)

    def fail_all(self, status: int, code: int, message: str, times: int | None = None):
        """Answer every request with an error (``times`` times, or always), like an API
        rate-limiting the whole account (429, code 20429)."""
        self._failure_all = Failure(status, code, message, times)

    def deny_lists(self, denied: bool = True) -> None:
        """Answer every list request 403 (code 20403), like an API key without read rights:
        the hub cannot ask which pages went out."""
        self.lists_denied = denied

    def clear_failures(self) -> None:
        self._failure_all = None
        self._failures.clear()

    def down(self) -> None:
        """The API is unreachable: the listener closes (connections refused) and every open
        keep-alive connection is reset, so no request is answered until :meth:`up`."""
        self.stop()
        with self._cond:
            conns, self._connections = list(self._connections), set()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def up(self) -> "FakeTwilio":
        """Listen again on the same port (after :meth:`down`)."""
        return self.start()

    def accepted(self, resource: str = "Messages") -> list[Request]:
        with self._cond:
            return [r for r in self.requests if r.resource == resource and r.status == 201]

    def wait_for(self, count: int, timeout: float, resource: str = "Messages",
                 match=lambda r: True) -> list[Request]:
        """Wait until ``count`` accepted requests match; returns them (maybe fewer at timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.requests
                         if r.resource == resource and r.status == 201 and match(r)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    # --- server ---------------------------------------------------------------

    def start(self) -> "FakeTwilio":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle the second waits for the
            # client's delayed ACK (~40 ms). Twilio's servers do not do that to us.
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                with fake._cond:
                    fake._connections.add(self.connection)

            def finish(self):
                with fake._cond:
                    fake._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:  # reset by down()
                    pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                at = time.monotonic()
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                status, obj = fake._answer(self.path, self.headers.get("Authorization", ""), form)
                m = API_RE.match(self.path)
                resource = m["res"] if m else "?"
                with fake._cond:
                    fake.requests.append(Request(resource, form, status, at,
                                                 sid=obj.get("sid", ""), created=time.time()))
                    index = len(fake.requests) - 1
                    fake._cond.notify_all()
                body = json.dumps(obj).encode()
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with fake._cond:
                    fake.requests[index].answered = time.monotonic()
                    fake._cond.notify_all()
                if status == 201 and form.get("StatusCallback"):
                    threading.Thread(target=fake._post_statuses, daemon=True,
                                     args=(resource, form, obj["sid"])).start()

            def do_GET(self):  # noqa: N802
                """Fetch the account, or list Messages or Calls (newest first), filtered by
                To, one page of
                ``PageSize`` (Twilio's default 50), as Twilio does; 401 for bad auth, 403
                (code 20403) while :meth:`FakeTwilio.deny_lists` holds, as for an API key
                without read rights."""
                path, _, query = self.path.partition("?")
                m = API_RE.match(path)
                params = parse_qs(query)
                expected = "Basic " + base64.b64encode(
                    f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
                account = ACCOUNT_RE.match(path)
                if account and account["sid"] == fake.account_sid and \
                        self.headers.get("Authorization", "") == expected:
                    # GET Account: the hub's start-up check of its credentials
                    status, obj = 200, {"sid": fake.account_sid, "status": "active",
                                        "type": "Full", "friendly_name": "Fake account"}
                elif account:
                    status, obj = 401, _error(401, 20003, "Authenticate")
                elif not m:
                    status, obj = 404, _error(404, 20404, "The requested resource was not found")
                elif m["sid"] != fake.account_sid or \
                        self.headers.get("Authorization", "") != expected:
                    status, obj = 401, _error(401, 20003, "Authenticate")
                elif fake.lists_denied:
                    status, obj = 403, _error(403, 20403, "Forbidden")
                else:
                    to = params.get("To", [None])[0]
                    size = min(1000, int(params.get("PageSize", ["50"])[0]))
                    with fake._cond:
                        found = [r for r in reversed(fake.requests)
                                 if r.resource == m["res"] and r.status == 201
                                 and to in (None, r.form.get("To"))]
                    status, obj = 200, {m["res"].lower(): [_listed(r) for r in found[:size]],
                                        "next_page_uri": None, "page": 0, "page_size": size,
                                        "uri": self.path}
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = _QuietServer(("127.0.0.1", self._port), Handler)
        if self.tls is not None:  # each connection's handshake happens as it is accepted
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _post_statuses(self, resource: str, form: dict[str, str], sid: str) -> None:
        """Post the statuses Twilio would, signed with the auth token, to StatusCallback."""
        import urllib.request
        from urllib.parse import urlencode

        from twilio.request_validator import RequestValidator
        wanted = self.outcome.get(form["To"], "")
        if resource == "Messages":
            final = wanted if wanted in ("undelivered", "failed") else "delivered"
        else:
            final = wanted if wanted in ("busy", "no-answer", "failed") else "completed"
        answered_by = ("machine_end_beep" if wanted == "voicemail" else "human") \
            if form.get("MachineDetection") else ""
        if resource == "Messages":
            steps = ["sent", final]
        else:
            steps = ["initiated", "ringing"] + (["answered", "completed"]
                                                if final == "completed" else [final])
        validator = RequestValidator(self.auth_token)
        for step in steps:
            params = {"AccountSid": self.account_sid, "To": form["To"],
                      "From": form.get("From", ""),
                      ("MessageStatus" if resource == "Messages" else "CallStatus"): step,
                      ("MessageSid" if resource == "Messages" else "CallSid"): sid}
            if step == "undelivered":
                params["ErrorCode"] = "30003"
            if step in ("answered", "completed") and answered_by:
                params["AnsweredBy"] = answered_by
            url = form["StatusCallback"]
            request = urllib.request.Request(
                url, data=urlencode(params).encode(), method="POST",
                headers={"X-Twilio-Signature": validator.compute_signature(url, params)})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    code = answer.status
            except OSError as exc:
                code = getattr(exc, "code", 0)
            with self._cond:
                self.callbacks.append((url, params, code))
                self._cond.notify_all()

    def _answer(self, path: str, auth: str, form: dict[str, str]) -> tuple[int, dict]:
        m = API_RE.match(path)
        if not m:
            return 404, _error(404, 20404, "The requested resource was not found")
        expected = "Basic " + base64.b64encode(
            f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if m["sid"] != self.account_sid or auth != expected:
            return 401, _error(401, 20003, "Authenticate")
        needed = ("To", "Body") if m["res"] == "Messages" else ("To", "From")
        for name in needed:
            if not form.get(name):
                return 400, _error(400, 21604 if name == "To" else 21602,
                                   f"A '{name}' parameter is required.")
        if m["res"] == "Messages" and not (form.get("From") or form.get("MessagingServiceSid")):
            return 400, _error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
        failure = self._failure_all
        if failure is None or failure.times == 0:
            failure = self._failures.get(form["To"])
        if failure is not None and failure.times != 0:
            if failure.times is not None:
                failure.times -= 1
            return failure.status, _error(failure.status, failure.code, failure.message)
        prefix = "SM" if m["res"] == "Messages" else "CA"
        sid = f"{prefix}{next(self._seq):032d}"
        return 201, {"sid": sid, "account_sid": self.account_sid, "to": form["To"],
                     "from": form.get("From"), "body": form.get("Body"), "status": "queued",
                     "uri": f"/2010-04-01/Accounts/{self.account_sid}/{m['res']}/{sid}.json"}


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hangs up on an answer (a hub killed mid-request)."""

    # socketserver's default backlog is 5: a burst of new connections (a storm, several
    # workers starting their pools) was reset, which the real API does not do.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _listed(r: Request) -> dict:
    from email.utils import formatdate
    return {"sid": r.sid, "to": r.form.get("To"), "from": r.form.get("From"),
            "body": r.form.get("Body"), "status": "sent" if r.resource == "Messages" else
            "completed", "date_created": formatdate(r.created, usegmt=False)}


def _error(status: int, code: int, message: str) -> dict:
    return {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}
