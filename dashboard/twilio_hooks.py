"""Twilio webhooks: a paged person acknowledges an alarm by SMS reply or by pressing 1 on a call.

Registered by :func:`init_app` only when the dashboard has a Twilio auth token.
Twilio is the caller, so these routes need no login (keep them exempt from any
login requirement); instead each request must carry a valid
``X-Twilio-Signature`` (an HMAC of the exact URL Twilio called and its form
fields) or it gets 403. Behind a proxy, give ``public_url``: the dashboard's
root as Twilio reaches it, from which the signed URL is rebuilt.

Routes (POST, form-encoded; answers are TwiML, ``text/xml``)::

    /twilio/voice/say?alarm=<id>[&round=2]  an alarm call: the alarm, then "press 1 if you
                                            are responding"; played twice, then goodbye;
                                            once acknowledged: who is responding, goodbye
    /twilio/voice/gather?alarm=<id>         the key pressed (Digits): 1 acknowledges as the
                                            callee (To); 9 on a drill alarm makes it real
                                            (hub.core.drill); anything else plays it again
    /twilio/sms                             an SMS reply (From, Body): "1", "yes", "ok",
                                            "omw"... acknowledges the newest raised alarm
                                            this number was paged for; "REAL" makes the
                                            newest drill alarm it was paged for real

The hub places calls with ``url=<public_url>/twilio/voice/say?alarm=<id>``; the
Twilio number's messaging webhook is ``<public_url>/twilio/sms``; every page asks for
status callbacks at ``<public_url>/twilio/status?key=<notification key>``. An
acknowledgement is ``store.transition(id, ACKNOWLEDGE)``: it stops the
escalation and queues the device's ``acknowledged`` command (help is coming).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import redis
from flask import Blueprint, Flask, Response, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml import TwiML
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Gather, VoiceResponse

from hub.core.drill import REAL_DIGIT, REAL_WORDS, who_is_paged
from hub.core.escalation import responder
from hub.core.lifecycle import AlarmEvent, IllegalTransition
from hub.core.messages import call_text, what_where
from hub.core.model import Alarm, AlarmState
from hub.core.reach import Reach, page_outcome
from hub.config.site import Site
from hub.store.alarms import Store

from .context import dashboard_context, now_ms

log = logging.getLogger(__name__)

#: How long an inbound SMS's MessageSid is remembered to refuse replays, in seconds.
SMS_SEEN_TTL_S = 7 * 24 * 3600

bp = Blueprint("twilio", __name__, url_prefix="/twilio")

EXTENSION = "haven.twilio"
#: SMS replies that acknowledge (after trimming, lower-casing, dropping a final "." or "!").
ACK_WORDS = frozenset({"1", "y", "yes", "ok", "ack", "acknowledge", "coming", "on my way",
                       "omw", "responding"})
#: Keywords Twilio answers itself (opt-out, opt-in, help): we send no reply.
CARRIER_KEYWORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit",
                              "start", "unstop", "help", "info"})
#: Seconds a call waits for a key after the prompt.
GATHER_TIMEOUT_S = 8
PROMPT = "Press 1 if you are responding. Press 2 to hear this again."
REAL_PROMPT = f"If this is not a drill, press {REAL_DIGIT}: the police will be called."
NOT_ACTIVE = "This Haven alarm is no longer active."
SMS_HELP = "Reply 1 to acknowledge the latest Haven alarm."
STORE_DOWN = "Haven's alarm store is down: nothing was recorded. Call the branch."


@dataclass(frozen=True)
class TwilioHooks:
    """What the webhooks need besides the board context: in ``app.extensions[EXTENSION]``."""

    validator: RequestValidator
    public_url: str | None = None


def init_app(app: Flask, auth_token: str, public_url: str | None = None) -> None:
    """Serve the webhooks on ``app``, checking signatures with ``auth_token``."""
    if not auth_token.strip():
        raise ValueError("twilio_auth_token is empty: give the account's auth token")
    if public_url is not None:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"public_url must be https://host[/path], not {public_url!r}")
        public_url = public_url.rstrip("/")
    app.extensions[EXTENSION] = TwilioHooks(RequestValidator(auth_token), public_url)
    app.register_blueprint(bp)


def mask(number: str) -> str:
    """A phone number fit for logs: ``"+…0101"``."""
    return f"{'+' if number.startswith('+') else ''}…{number[-4:]}" if number else "(none)"


def contact_name(site: Site, number: str) -> str:
    """The site contact with this phone number, else the masked number."""
    return next((c.name for c in site.contacts if c.phone == number), mask(number))


def _hooks() -> TwilioHooks:
    return current_app.extensions[EXTENSION]


def _base_url() -> str:
    return _hooks().public_url or request.url_root.rstrip("/")


def _url(route: str, **query: str | int) -> str:
    return f"{_base_url()}{bp.url_prefix}{route}?{urlencode(query)}"


@bp.before_request
def check_signature() -> Response | None:
    signature = request.headers.get("X-Twilio-Signature", "")
    # The URL Twilio called, byte for byte: the public root, the path, and the query string
    # as sent (request.url re-quotes it, and '%3A' vs ':' changes the signature).
    query = request.query_string.decode("latin-1")
    url = _base_url() + request.path + (f"?{query}" if query else "")
    if signature and _hooks().validator.validate(url, request.form, signature):
        return None
    log.warning("refused %s (from %s): %s X-Twilio-Signature", request.path,
                mask(request.form.get("From", "")), "invalid" if signature else "no")
    return Response("Forbidden: this URL is for Twilio (signature check failed).\n",
                    403, mimetype="text/plain")


@bp.errorhandler(redis.RedisError)
def store_unavailable(exc: redis.RedisError) -> Response:
    log.error("%s: alarm store unavailable: %s", request.path, exc)
    if request.path.endswith("/sms"):
        reply: TwiML = MessagingResponse()
        reply.message(STORE_DOWN)
    else:
        reply = VoiceResponse()
        reply.say(STORE_DOWN)
    return _twiml(reply)


#: Final statuses that mean the page did not reach the person.
UNDELIVERED = frozenset({"undelivered", "failed", "busy", "no-answer", "canceled"})


@bp.post("/status")
def status() -> Response:
    """Twilio's status callback for one page (``?key=<alarm>:<attempt>:<phone>:<channel>``,
    the notification's idempotency key): each status goes into the alarm's timeline; a
    final failure is queued for a hub worker (call instead or again; when the attempt's
    last report says nobody was reached, NOT delivered: hub.engine.followups); a page that reached
    a person clears the alarm's "nobody reached".
    Answers at once with 204; nothing here can hold Twilio up."""
    parts = request.args.get("key", "").split(":")
    if len(parts) != 4 or not parts[1].isdigit():
        log.warning("status callback with a bad key %r", request.args.get("key", "")[:80])
        return Response("bad key\n", 400, mimetype="text/plain")
    alarm_id, attempt, phone, channel = parts
    state = request.form.get("MessageStatus") or request.form.get("CallStatus") or "unknown"
    store = dashboard_context().store
    store.add_timeline(alarm_id, "delivery_status", at_ms=now_ms(), attempt=attempt,
                       channel=channel, to=phone, status=state,
                       error_code=request.form.get("ErrorCode", ""),
                       answered_by=request.form.get("AnsweredBy", ""))
    answered_by = request.form.get("AnsweredBy", "")
    if page_outcome(state, answered_by) is Reach.REACHED:
        store.clear_nobody_reached(alarm_id, now_ms())  # a person got a page after all
    if state == "completed" and answered_by.startswith(("machine", "fax")):
        state = "voicemail"  # answered by a machine: nobody heard it, call again
    if state in UNDELIVERED or state == "voicemail":
        log.warning("%s to %s for alarm %s: %s (error %s)", channel, mask(phone), alarm_id,
                    state, request.form.get("ErrorCode", "-"))
        store.pages.queue_followup(":".join(parts), state)  # a hub worker calls (again)
    return Response(status=204)


@bp.post("/voice/say")
def voice_say() -> Response:
    ctx = dashboard_context()
    alarm_id = request.args.get("alarm", "")
    alarm = ctx.store.get_alarm(alarm_id) if alarm_id else None
    response = VoiceResponse()
    if alarm is None or not alarm.state.active:
        response.say(NOT_ACTIVE)
        return _twiml(response)
    if alarm.state is AlarmState.ACKNOWLEDGED:  # a call in progress that asks again
        response.say(_responding(ctx.store, ctx.site, alarm))
        response.hangup()
        return _twiml(response)
    gather = Gather(num_digits=1, action=_url("/voice/gather", alarm=alarm.id), method="POST",
                    timeout=GATHER_TIMEOUT_S)
    gather.say(_spoken(ctx.store, ctx.site, alarm, request.form.get("To", "")))
    gather.say(PROMPT)
    if alarm.drill:
        gather.say(REAL_PROMPT)
    response.append(gather)
    if request.args.get("round") == "2":  # no key pressed twice: do not ring on forever
        response.say("No key was pressed. Goodbye.")
        response.hangup()
    else:
        response.redirect(_url("/voice/say", alarm=alarm.id, round=2), method="POST")
    return _twiml(response)


@bp.post("/voice/gather")
def voice_gather() -> Response:
    alarm_id = request.args.get("alarm", "")
    response = VoiceResponse()
    if request.form.get("Digits") == REAL_DIGIT:
        ctx = dashboard_context()
        name = contact_name(ctx.site, request.form.get("To", ""))
        alarm, done = _make_real(ctx.store, alarm_id, name, "call")
        if done:
            response.say(f"Thank you, {name}. This is no longer a drill. "
                         + who_is_paged(ctx.site, alarm))
            return _twiml(response)
        if alarm is None or not alarm.state.active:
            response.say(NOT_ACTIVE)
            return _twiml(response)
    if request.form.get("Digits") != "1":  # 2 (hear it again) or a wrong key
        response.redirect(_url("/voice/say", alarm=alarm_id), method="POST")
        return _twiml(response)
    ctx = dashboard_context()
    name = contact_name(ctx.site, request.form.get("To", ""))
    alarm, acknowledged = _acknowledge(ctx.store, alarm_id, name, "call")
    if alarm is None:
        response.say(NOT_ACTIVE)
    elif acknowledged:
        response.say(f"Thank you, {name}. Acknowledged. "
                     "The person who pressed will be told help is coming.")
    else:
        response.say(_settled(alarm))
    return _twiml(response)


@bp.post("/sms")
def sms() -> Response:
    sender = request.form.get("From", "")
    word = " ".join(request.form.get("Body", "").split()).rstrip(".!").lower()
    response = MessagingResponse()
    if word in CARRIER_KEYWORDS:
        return _twiml(response)
    if word not in ACK_WORDS and word not in REAL_WORDS:
        response.message(SMS_HELP)
        return _twiml(response)
    ctx = dashboard_context()
    message_sid = request.form.get("MessageSid", "")
    if message_sid and not ctx.store.pages.first_sight_of_reply(message_sid, SMS_SEEN_TTL_S):
        # A correctly signed request seen before: a replay (or Twilio retrying after a
        # timeout). It must not acknowledge an alarm raised since the reply was sent.
        log.warning("SMS %s from %s seen before: ignored", message_sid, sender)
        return _twiml(response)
    if word in REAL_WORDS:
        response.message(_real_by_sms(ctx.store, ctx.site, sender))
        return _twiml(response)
    paged = [a for a in ctx.store.active_alarms() if _was_paged(ctx.store, a.id, sender)]
    raised = next((a for a in paged if a.state is AlarmState.RAISED), None)
    if raised is not None:
        alarm, acknowledged = _acknowledge(ctx.store, raised.id,
                                           contact_name(ctx.site, sender), "sms")
        if acknowledged:
            label, place = what_where(raised, ctx.site)
            response.message(f"Acknowledged: {label} at {place}. The person who pressed "
                             "is being told help is coming. Thank you.")
        else:  # another responder got there first
            response.message(_settled(alarm) if alarm else NOT_ACTIVE)
    elif paged:
        response.message(_settled(paged[0]))
    else:
        response.message("No active Haven alarm for this number.")
    return _twiml(response)


# --- helpers -----------------------------------------------------------------

def _twiml(twiml: TwiML) -> Response:
    return Response(str(twiml), mimetype="text/xml")


def _acknowledge(store: Store, alarm_id: str, by: str, channel: str
                 ) -> tuple[Alarm | None, bool]:
    """The alarm after acknowledging it as ``by``, and whether this request did it."""
    try:
        alarm = store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by=by, now_ms=now_ms())
    except KeyError:
        return None, False
    except IllegalTransition:  # already acknowledged or closed (perhaps a moment ago)
        return store.get_alarm(alarm_id), False
    log.info("alarm %s acknowledged by %s (%s reply)", alarm_id, by, channel)
    return alarm, True


def _make_real(store: Store, alarm_id: str, by: str, channel: str
               ) -> tuple[Alarm | None, bool]:
    """The alarm after making it real as ``by`` (hub.core.drill), and whether this request did
    it (not: unknown, over, or not a drill)."""
    try:
        alarm = store.make_real(alarm_id, by=by, via=channel, now_ms=now_ms())
    except KeyError:
        return None, False
    except IllegalTransition:
        return store.get_alarm(alarm_id), False
    log.warning("alarm %s made REAL by %s (%s): paging with the real policy now",
                alarm_id, by, channel)
    return alarm, True


def _real_by_sms(store: Store, site: Site, sender: str) -> str:
    """A "REAL" reply: the newest active drill alarm this number was paged for is made
    real; the answer says which, or why nothing changed."""
    paged = [a for a in store.active_alarms() if _was_paged(store, a.id, sender)]
    for alarm in (a for a in paged if a.drill):
        made, done = _make_real(store, alarm.id, contact_name(site, sender), "sms")
        if done:
            label, place = what_where(made, site)
            return (f"REAL: {label} at {place} is no longer a drill. "
                    + who_is_paged(site, made))
    if paged:
        return "Your latest Haven alarm is not a drill: it is already paged as real."
    return "No active Haven alarm for this number."


def _settled(alarm: Alarm) -> str:
    if alarm.acknowledged_by:
        return f"Already acknowledged by {alarm.acknowledged_by}."
    return f"Already {alarm.state} by {alarm.closed_by or 'an operator'}."


def _was_paged(store: Store, alarm_id: str, number: str) -> bool:
    return bool(number) and any(e.get("event") == "notified" and e.get("to") == number
                                for e in store.timeline(alarm_id))


def _responding(store: Store, site: Site, alarm: Alarm) -> str:
    """What a call says once someone acknowledged: who is responding to what, where."""
    label, place = what_where(alarm, site)
    return (f"{'This is a drill. ' if alarm.drill else ''}"
            f"{alarm.acknowledged_by or 'Someone'} is responding to {label} at {place}. "
            "You do not need to acknowledge. Goodbye.")


def _spoken(store: Store, site: Site, alarm: Alarm, to: str = "") -> str:
    """The call's words as of now, for the contact called (``to``); a drill's if the alarm
    is still a drill (hub.core.drill). Responders also hear the safe rooms staff shelter in
    now."""
    drill = alarm.drill
    called = next((c for c in site.contacts if c.phone == to), None)
    shelters = store.branches.branch_switches(alarm.branch).shelters \
        if called is not None and responder(called) else ()
    try:
        return call_text(alarm, site, drill=drill, now_ms=now_ms(), shelters=shelters)
    except KeyError:  # kind or branch gone from the site config
        label, place = what_where(alarm, site)
        return f"{'This is a drill. ' if drill else ''}Haven alarm. {label}. {place}."
