"""Notifiers: ``send_sms(to, body)`` and ``place_call(to, text)``, each -> ``Delivery``.

A notifier only sends and reports: accepted (with the provider's id), or a
failure that says whether it is worth retrying. Idempotency, retries and
fallback wrap notifiers from the outside (see ``hub.engine.service``), so every
notifier gets them alike.

- :class:`ConsoleNotifier` prints what it would send: the default when no
  Twilio credentials are configured (demo, development).
- :class:`TwilioNotifier` sends through the official twilio SDK. Its
  ``api_base`` points the SDK at another host (a local fake API in tests and
  benchmarks); production leaves it unset.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
import threading
import time
from typing import Protocol, TextIO
from urllib.parse import urlsplit

from hub.core.model import Delivery

log = logging.getLogger(__name__)

#: Seconds to wait for Twilio's API before counting a request as a retryable failure;
#: shorter than the escalation lease (hub.engine.service.LEASE_MS), so a slow API never makes
#: a second worker think this one died mid-send.
TWILIO_TIMEOUT_S = 3.0
#: How many texts to a number find_sent reads per API request, and at most in all
#: (newest first, back to the claim being checked).
FIND_SENT_PAGE, FIND_SENT_MAX = 200, 1000

# The SDK logs each request's body (phone numbers, message text) at INFO.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


class Notifier(Protocol):
    name: str

    def send_sms(self, to: str, body: str, *, status_url: str | None = None) -> Delivery: ...

    def place_call(self, to: str, text: str, *, voice_url: str | None = None,
                   status_url: str | None = None) -> Delivery: ...

    def find_sent(self, channel: str, to: str, *, ref: str, text: str,
                  since_s: float) -> str | None:
        """The id of a page to ``to`` accepted since ``since_s`` (Unix s): an SMS carrying
        the page reference ``ref`` (hub.core.messages.page_ref; with ``ref`` "", this exact
        ``text``), or any call from our numbers. ``None`` if there is none or the notifier
        cannot tell. Raises if the provider cannot be asked."""
        ...


class ConsoleNotifier:
    """Prints each SMS and call to ``stream`` (stdout) instead of sending it."""

    name = "console"

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def send_sms(self, to: str, body: str, *, status_url: str | None = None) -> Delivery:
        return self._print("SMS", "CONSOLE", to, body)

    def place_call(self, to: str, text: str, *, voice_url: str | None = None,
                   status_url: str | None = None) -> Delivery:
        return self._print("CALL", "CONSOLECALL", to, text)

    def find_sent(self, channel: str, to: str, *, ref: str, text: str,
                  since_s: float) -> str | None:
        return None  # a console cannot be asked; printing a page twice harms no one

    def _print(self, what: str, sid_prefix: str, to: str, text: str) -> Delivery:
        stream = self._stream or sys.stdout
        with self._lock:
            sid = f"{sid_prefix}{next(self._seq):06d}"
            stream.write(f"[{what} to {to}] {text}\n")
            stream.flush()
        return Delivery.sent(sid)


def carries_ref(body: str, ref: str) -> bool:
    """Whether an SMS ``body`` carries the page reference ``ref`` as ``Ref <ref>``, ended
    by a non-word character or the end (``86bce38e-2`` is not ``86bce38e-20``)."""
    return re.search(rf"\bRef {re.escape(ref)}(?![\w-])", body) is not None


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


class SenderPacing:
    """Spreads texts over several sending numbers by their rate: each text goes from the
    number free soonest (a long code sends ~1 SMS segment per second; Twilio queues the
    rest). Never waits: an alarm text is never held back here."""

    def __init__(self, numbers: tuple[str, ...], *, per_second: float = 1.0,
                 clock=time.monotonic):
        self._free_at = {number: 0.0 for number in numbers}
        self._gap, self._clock, self._lock = 1.0 / per_second, clock, threading.Lock()

    def next_sender(self) -> str:
        with self._lock:
            number = min(self._free_at, key=self._free_at.__getitem__)
            self._free_at[number] = max(self._clock(), self._free_at[number]) + self._gap
            return number


class TwilioNotifier:
    """SMS through Twilio's Messages API.

    ``from_number`` (E.164; several, comma-separated, spread the load) or
    ``messaging_service_sid`` picks the sender; a
    Messaging Service spreads load over its number pool. One SDK client per
    thread, since the notifier is called from a pool of sender threads.
    """

    name = "twilio"

    def __init__(self, account_sid: str, auth_token: str, *, from_number: str | None = None,
                 sms_per_second: float = 1.0,
                 messaging_service_sid: str | None = None, api_base: str | None = None,
                 timeout_s: float = TWILIO_TIMEOUT_S):
        if not (from_number or messaging_service_sid):
            raise ValueError("TwilioNotifier needs from_number or messaging_service_sid")
        self._sid, self._token = account_sid, auth_token
        self._numbers = tuple(n.strip() for n in (from_number or "").split(",") if n.strip())
        self._from = self._numbers[0] if self._numbers else None
        self._service = messaging_service_sid
        self._pacing = SenderPacing(self._numbers, per_second=sms_per_second)
        if api_base is not None:
            base = urlsplit(api_base)
            if base.scheme not in ("http", "https") or not base.netloc:
                raise ValueError(f"Twilio API base {api_base!r} must look like "
                                 "http://127.0.0.1:8080")
        self._api_base, self._timeout = api_base, timeout_s
        self._local = threading.local()
        self._http = _http_client(api_base, timeout_s)  # shared; connections are per thread
        # The SDK imports its API modules lazily (~0.1 s): do it now, not on the first alarm.
        _ = self._client().messages, self._client().calls

    def _client(self):
        """This thread's SDK client (its connection is its own: hub.edges.twilio_transport)."""
        client = getattr(self._local, "client", None)
        if client is None:
            from twilio.rest import Client
            client = Client(self._sid, self._token, http_client=self._http)
            self._local.client = client
        return client

    def warm_up(self) -> None:
        """This thread's SDK client and API connection, made now rather than by its first
        page (hub start, on a sender thread), by fetching the account: that also tells at
        start whether the credentials are right. Nothing is raised: the first page tries
        again, and reports what it meets."""
        from twilio.base.exceptions import TwilioException, TwilioRestException

        from hub.edges.twilio_transport import ApiUnreachable
        try:
            self._client().api.v2010.accounts(self._sid).fetch()
        except TwilioRestException as exc:
            if exc.status in (401, 403):
                log.error("Twilio refused account %s at start (HTTP %s: %s): check "
                          "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", self._sid, exc.status,
                          exc.msg)
            else:
                log.warning("Twilio answered the start-up check with HTTP %s (%s); pages "
                            "will tell", exc.status, exc.msg)
        except (TwilioException, ApiUnreachable) as exc:
            log.warning("Twilio API not reachable at start (%s); pages will try again", exc)

    def send_sms(self, to: str, body: str, *, status_url: str | None = None) -> Delivery:
        """An SMS; with ``status_url`` Twilio posts its delivery statuses there."""
        kwargs = {"to": to, "body": body}
        if status_url:
            kwargs["status_callback"] = status_url
        if self._service:
            kwargs["messaging_service_sid"] = self._service
        else:
            kwargs["from_"] = self._pacing.next_sender()
        return self._create(lambda: self._client().messages.create(**kwargs))

    def place_call(self, to: str, text: str, *, voice_url: str | None = None,
                   status_url: str | None = None) -> Delivery:
        """A call. With ``voice_url`` (the dashboard's ``/twilio/voice/say?alarm=ID``)
        Twilio fetches what to play there, and the callee presses 1 to acknowledge;
        without it (no public URL configured) the call speaks ``text`` and cannot be
        acknowledged by keypress."""
        if not self._from:
            return Delivery.failed("calls need TWILIO_FROM_NUMBER (a Messaging Service "
                                   "cannot place calls)", retryable=False)
        status = {} if not status_url else {
            "status_callback": status_url, "status_callback_method": "POST",
            "status_callback_event": ["initiated", "ringing", "answered", "completed"],
            # tells a voicemail from a person: a voicemail pickup is called again
            "machine_detection": "Enable"}
        if voice_url:
            return self._create(lambda: self._client().calls.create(
                to=to, from_=self._from, url=voice_url, method="POST", **status))
        from twilio.twiml.voice_response import VoiceResponse
        twiml = VoiceResponse()
        twiml.say(text)
        return self._create(lambda: self._client().calls.create(
            to=to, from_=self._from, twiml=str(twiml), **status))

    def find_sent(self, channel: str, to: str, *, ref: str, text: str,
                  since_s: float) -> str | None:
        """Asks the API (newest first) whether a page got through before its worker died:
        an SMS must carry the page reference ``ref`` as a word of its body (or, without
        one, match ``text`` exactly), a call must be from one of our numbers. Texts are
        read back to ``since_s``, FIND_SENT_PAGE a request, at most FIND_SENT_MAX: a
        desk paged for every alarm of a busy site gets dozens of texts between a claim
        and its takeover (tests/faults/test_sentinel_failover.py). A page further back
        than FIND_SENT_MAX is not found, and goes out again: a duplicate beats a gap."""
        client = self._client()
        if channel == "sms":
            for message in client.messages.stream(to=to, limit=FIND_SENT_MAX,
                                                  page_size=FIND_SENT_PAGE):
                if message.date_created and message.date_created.timestamp() < since_s:
                    break
                if carries_ref(message.body or "", ref) if ref else message.body == text:
                    return message.sid
            return None
        for call in client.calls.list(to=to, limit=20):
            if call.date_created and call.date_created.timestamp() < since_s:
                break
            if not self._numbers or call._from in self._numbers:
                return call.sid
        return None

    @staticmethod
    def _create(request) -> Delivery:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        from hub.edges.twilio_transport import ApiUnreachable
        try:
            resource = request()
        except TwilioRestException as exc:
            return Delivery.failed(f"HTTP {exc.status}: {exc.msg}", code=exc.code,
                                   retryable=_retryable_status(exc.status))
        except ApiUnreachable as exc:  # timeouts, refused or reset connections
            return Delivery.failed(f"API unreachable: {_reason(exc)}", retryable=True)
        except TwilioException as exc:
            return Delivery.failed(str(exc), retryable=False)
        return Delivery.sent(resource.sid)


def _reason(exc: Exception) -> str:
    """A transport error in a few words: the common ones by name, any other (a TLS
    certificate the system's CAs do not vouch for...) as libcurl put it."""
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Connection reset",
                   "Empty reply from server", "Could not resolve host"):  # libcurl's words
        if marker in text:
            return f"{marker} ({type(exc).__name__})"
    return text[:200] or type(exc).__name__


def _http_client(api_base: str | None, timeout_s: float):
    """The SDK's transport (hub.edges.twilio_transport): a keep-alive libcurl connection per
    sender thread; with ``api_base`` every request goes there."""
    from hub.edges.twilio_transport import PooledHttpClient
    return PooledHttpClient(timeout=timeout_s, api_base=api_base)
