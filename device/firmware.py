"""The device firmware: inputs -> press patterns -> durable outbox -> MQTT, and feedback.

Wiring: each input is a button or door contact between its BCM pin and GND
(the internal pull-up holds the pin high; pressing, or closing the door, pulls
it low). Outputs (LED, vibration motor, buzzer) are optional, each on its own
pin through a transistor as usual.

What happens on a press:

1. gpiozero reports the pin's raw edges; :class:`device.patterns.PressDecoder`
   (ours, with its own debounce) turns them into actions: an alarm kind, or
   ``cancel`` / ``checkin`` / ``safe_room_left``.
2. An alarm is written to the SQLite outbox (fsynced) *before* it is
   published (MQTT v5, QoS 1). It leaves the outbox only when the hub says
   ``received`` - after it has stored the alarm; a broker PUBACK is not enough.
3. Unconfirmed alarms are re-sent with the same id on every (re)connect and
   every ``resend_every_s`` seconds; the hub drops duplicates.
4. The wearer sees and feels what happened (:mod:`device.feedback`): sending;
   received; acknowledged - help is coming; resolved; NOT delivered (no
   confirmation within ``not_delivered_after_s``: use the phone); fault (no broker).

A colleague's alarm (firmware 0.5 on; hub.engine.colleagues): the hub sends ``alert`` (kind,
room) and the device shows ALERT silently for ``alert_s``. Meanwhile a button's
actions mean something else (:meth:`DeviceApp._answer`): the cancel pattern dismisses
the alert here; a kind in ALWAYS_RAISED_KINDS (an emergency hold) is raised as always
and ends the alert here (this person needs help themselves); any other button action
(a press, three presses, a desk unit's "press = assist") is the answer "I'm
responding", sent as a ``responding`` event instead of raising an alarm. The hub
answers with ``alert_clear``: ``answered`` (ANSWERED: the person who pressed is told
help is coming), or ``acknowledged``/``closed`` (ALERT_OVER). With no alert showing,
every pattern does what it always did.

One background thread (the ticker) drives everything time-based: decoder
deadlines (holds, press windows, debounce), resends, heartbeats, the
not-delivered deadline and the systemd watchdog. Paho runs its own network
thread; no lock of ours is ever held while calling into paho (paho holds its
own locks while it runs our callbacks).
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as mqtt
from gpiozero import DigitalInputDevice, DigitalOutputDevice, LED, Buzzer
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from . import health, sdnotify
from .brokers import BrokerChoice, Endpoint
from .transport import broker_client, reachable
from .config import (ACTION_CANCEL, ACTION_CHECKIN, ACTION_SAFE_ROOM_LEFT, SPECIAL_ACTIONS,
                     DeviceConfig)
from .feedback import FeedbackPlayer, Signal
from .outbox import Outbox
from .patterns import PressDecoder, parse_pattern
from .selftest import Running, run_selftest
from .protocol import (CLEAR_ANSWERED, CMD_ALERT, CMD_ALERT_CLEAR, CMD_CHECKIN_REQUEST,
                       DEVICE_CANCELLABLE_KINDS, CMD_LOCATE, CMD_NOT_DELIVERED, CMD_PAGING,
                       CMD_RECEIVED, CMD_RESOLVED, CMD_TEST, EVENT_CANCEL, EVENT_CHECKIN,
                       EVENT_RESPONDING,
                       EVENT_SAFE_ROOM_LEFT, EVENT_SELFTEST, STATUS_OFFLINE, STATUS_ONLINE,
                       AlarmMessage, Command, DeviceEvent, Health, Heartbeat, ProtocolError,
                       StatusMessage, Topics, decode_command, new_alarm)

log = logging.getLogger("haven.device")

FIRMWARE_VERSION = "0.5.0"
#: How long the broker keeps this device's session while it is away, in seconds.
SESSION_EXPIRY_S = 3600
#: Reconnect backoff: doubles from MIN to MAX seconds, each delay jittered down by up to half.
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
#: After the broker refuses a heartbeat (an ACL written before firmware 0.3), heartbeats go
#: as retained statuses, as before 0.3, for this long before the heartbeat topic is tried
#: again, in seconds: mosquitto hangs up on a refused publish, so each try costs a reconnect.
LEGACY_HEARTBEAT_S = 24 * 3600
#: With a list of brokers, how often the device away from its first probes it, seconds.
HOME_PROBE_S = 5.0
#: How long a check-in request waits for the wearer's press, in seconds.
CHECKIN_WINDOW_S = 300
#: How long the firmware remembers an alarm, in seconds: a closed one (resolved,
#: cancelled), and any other (the hub keeps the record; this is only for feedback).
FORGET_CLOSED_S, FORGET_OPEN_S = 600, 12 * 3600
#: Kinds a press raises even while a colleague's alert shows (never taken as an answer):
#: the person pressing may be in danger themselves.
ALWAYS_RAISED_KINDS = frozenset({"emergency", "safe_room", "welfare"})
#: Alerts that ended here, remembered so a redelivered ``alert`` does not show again.
ALERTS_REMEMBERED = 64

EventSink = Callable[[str, str], None]


@dataclass
class AlarmTrack:
    """What the firmware knows of one of its alarms (kept in memory; the outbox is on disk)."""

    kind: str
    raised_mono: float                 # time.monotonic() of the press
    state: str = "sending"             # sending, sent, received, acknowledged, resolved, ...
    not_delivered: bool = False
    drill: bool = False                # the hub stored it as a drill: police are not paged


@dataclass
class AlertTrack:
    """A colleague's alarm this device is alerting for (``alert`` from the hub)."""

    alarm_id: str
    kind: str
    room: str
    shown_mono: float                  # time.monotonic() when it arrived
    until_mono: float                  # when it ends by itself (alert_s later)
    answered: bool = False             # "I'm responding" sent; the hub's alert_clear pending


def persistent_signal(*, connected: bool, tracks: dict[str, AlarmTrack], now_mono: float,
                      not_delivered_after_s: float, alerting: bool = False) -> Signal:
    """What the outputs show when nothing transient plays. Pure.

    Precedence: NOT delivered (use the phone) > sending > a colleague's alert >
    help is coming > fault (no broker) > idle. ``alerting``: a colleague's alert is on.
    """
    open_tracks = [t for t in tracks.values() if t.state not in ("resolved", "cancelled")]
    if any(t.not_delivered or (t.state in ("sending", "sent")
                               and now_mono - t.raised_mono >= not_delivered_after_s)
           for t in open_tracks):
        return Signal.NOT_DELIVERED
    if any(t.state in ("sending", "sent") for t in open_tracks):
        return Signal.SENDING
    if alerting:
        return Signal.ALERT
    if any(t.state == "acknowledged" for t in open_tracks):
        return Signal.ACKNOWLEDGED
    return Signal.IDLE if connected else Signal.FAULT


class DeviceApp:
    """One device: inputs, outbox, MQTT client, feedback, and the ticker thread."""

    def __init__(self, config: DeviceConfig, *, pin_factory=None, outbox: Outbox | None = None,
                 on_event: EventSink | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.topics = Topics(config.broker.topic_prefix)
        self.clock, self.monotonic = clock, monotonic
        self.on_event = on_event or (lambda event, alarm_id: None)
        self.outbox = outbox or Outbox(config.outbox)
        self.tracks: dict[str, AlarmTrack] = {}
        #: Colleagues' alarms alerting on this device, by alarm id (guarded by _lock).
        self.alerts: dict[str, AlertTrack] = {}
        self._alerts_ended: collections.deque = collections.deque(maxlen=ALERTS_REMEMBERED)
        self.connected = threading.Event()
        self.started_mono = monotonic()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._lock = threading.Lock()          # guards decoders, tracks, checkin
        self._checkin_until: float | None = None
        self._next_heartbeat = 0.0
        self._heartbeat_mid: int | None = None  # the last heartbeat's MQTT message id
        self._refused_mids: collections.deque = collections.deque(maxlen=32)
        self._legacy_until = 0.0                # monotonic s: heartbeats as statuses till then
        self._shown: Signal | None = None
        self._reconnect_attempt = 0
        self._battery = health.load_reader(config.battery_reader)
        #: Which of the config's brokers to use (device.brokers); paho's thread and the
        #: home probe both consult it, under ``_broker_lock``.
        self.brokers = BrokerChoice(config.broker.endpoints)
        self._broker_lock = threading.Lock()
        self._prober = threading.Thread(target=self._probe_home, name="device-home-probe",
                                        daemon=True)

        self.client = self._make_client()
        self.feedback = self._make_feedback(pin_factory)
        self.inputs: list[tuple[DigitalInputDevice, PressDecoder]] = []
        self._buttons: set[PressDecoder] = set()  # decoders of buttons (not door contacts)
        for spec in config.inputs:
            device = DigitalInputDevice(spec.pin, pull_up=True, pin_factory=pin_factory)
            # A door already closed at boot must still report its opening.
            decoder = PressDecoder([(parse_pattern(p), a) for p, a in spec.patterns],
                                   initial_active=device.is_active)
            device.when_activated = lambda d=decoder: self._edge(d, True)
            device.when_deactivated = lambda d=decoder: self._edge(d, False)
            self.inputs.append((device, decoder))
            if spec.role == "button":
                self._buttons.add(decoder)
        self._ticker = threading.Thread(target=self._tick_loop, name="device-ticker", daemon=True)

    # --- construction helpers ---------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = broker_client(self.config.broker, self.config.device_id)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MIN_S)
        will = StatusMessage(device=self.config.device_id, state=STATUS_OFFLINE)
        client.will_set(self.topics.status(self.config.device_id), will.to_json(), qos=1,
                        retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _make_feedback(self, pin_factory) -> FeedbackPlayer:
        out = self.config.outputs
        make = {"led": LED, "vibration": DigitalOutputDevice, "buzzer": Buzzer}
        devices = {name: make[name](getattr(out, name), pin_factory=pin_factory)
                   for name in make if getattr(out, name) is not None}
        self._output_devices = list(devices.values())
        return FeedbackPlayer(**devices, buzzer_for=frozenset(Signal(n) for n in out.buzzer_for))

    # --- inputs and actions ---------------------------------------------------------

    def _edge(self, decoder: PressDecoder, active: bool) -> None:
        with self._lock:
            actions = decoder.edge(active, self.monotonic())
        self._act(actions, button=decoder in self._buttons)
        with self._wake:
            self._wake.notify()

    def _act(self, actions: list[str], *, button: bool = True) -> None:
        for action in actions:
            log.info("pattern -> %s", action)
            if button and self._answer(action):
                continue
            if action == ACTION_CANCEL:
                self.cancel_latest()
            elif action == ACTION_CHECKIN or (action == "test" and self._checkin_pending()):
                self._checkin()
            elif action == ACTION_SAFE_ROOM_LEFT:
                self._send_event(EVENT_SAFE_ROOM_LEFT)
            else:
                self.raise_alarm(action)

    def _answer(self, action: str) -> bool:
        """A button's ``action`` while a colleague's alert shows (module docstring): True
        if it was taken as the answer or the dismissal, False if it acts as usual (no
        alert on, or a kind that is always raised, which also ends the alerts here)."""
        with self._lock:
            if not self.alerts:
                return False
            answer = None
            if action in ALWAYS_RAISED_KINDS or action == ACTION_CANCEL:
                ended = list(self.alerts)
            elif action in SPECIAL_ACTIONS:  # a check-in stays a check-in
                return False
            else:  # one not answered yet first, then an emergency, then the newest; one
                # answered already is answered again (the hub has not confirmed it yet)
                answer = max(self.alerts.values(), key=lambda a: (
                    not a.answered, a.kind == "emergency", a.shown_mono))
                answer.answered = True
                ended = []
            for alarm_id in ended:
                self._end_alert(alarm_id)
            if ended and not self.alerts:
                self.feedback.show(Signal.ALERT_OVER)
        if answer is not None:
            log.info("answering %s alarm %s in room %s: I'm responding", answer.kind,
                     answer.alarm_id, answer.room)
            self._send_event(EVENT_RESPONDING, alarm_id=answer.alarm_id)
            self._event("responding", answer.alarm_id)
            return True
        for alarm_id in ended:
            log.info("colleague's alarm %s: alert dismissed on this device (%s)", alarm_id,
                     action)
            self._event("alert_dismissed", alarm_id)
        self._refresh()
        return action == ACTION_CANCEL

    def _end_alert(self, alarm_id: str) -> AlertTrack | None:
        """Forget an alert (with self._lock held). A transient that ends ALERT is shown
        only once no alert is left: the player would not return to ALERT after it."""
        self._alerts_ended.append(alarm_id)
        return self.alerts.pop(alarm_id, None)

    def _alert_command(self, cmd: Command) -> None:
        """``alert``: show a colleague's alarm (once per alarm); ``alert_clear``: end it,
        ANSWERED if this device's answer was taken, else ALERT_OVER."""
        with self._lock:
            if cmd.cmd == CMD_ALERT:
                if cmd.alarm_id in self.alerts or cmd.alarm_id in self._alerts_ended \
                        or cmd.alarm_id in self.tracks:
                    return  # a redelivery, one that ended here, or this device's own alarm
                now = self.monotonic()
                self.alerts[cmd.alarm_id] = AlertTrack(cmd.alarm_id, cmd.kind, cmd.room, now,
                                                       now + self.config.alert_s)
                signal = None
            else:
                track = self._end_alert(cmd.alarm_id)
                if track is None:
                    return  # dismissed or timed out here already
                signal = Signal.ANSWERED if cmd.reason == CLEAR_ANSWERED else Signal.ALERT_OVER
            if signal is not None and not self.alerts:
                self.feedback.show(signal)
        if cmd.cmd == CMD_ALERT:
            log.warning("colleague's %s alarm %s in room %s: alerting (press to answer)",
                        cmd.kind, cmd.alarm_id, cmd.room)
        else:
            log.info("colleague's alarm %s: alert cleared (%s)", cmd.alarm_id, cmd.reason)
        self._event(cmd.cmd, cmd.alarm_id)
        self._refresh()

    def _expire_alerts(self, now: float) -> None:
        """End the alerts whose ``alert_s`` has passed (the ticker): no answer is sent."""
        with self._lock:
            expired = [a.alarm_id for a in self.alerts.values() if now >= a.until_mono]
            for alarm_id in expired:
                self._end_alert(alarm_id)
            if expired and not self.alerts:
                self.feedback.show(Signal.ALERT_OVER)
        for alarm_id in expired:
            log.info("colleague's alarm %s: alert timed out on this device", alarm_id)
            self._event("alert_timeout", alarm_id)

    def raise_alarm(self, kind: str) -> AlarmMessage:
        """Store, then publish, a new alarm of ``kind``; returns it with its fresh id."""
        alarm = new_alarm(self.config.device_id, kind, self.clock())
        self.outbox.add(alarm, self.clock())
        with self._lock:
            self.tracks[alarm.alarm_id] = AlarmTrack(kind, self.monotonic())
        log.info("%s alarm %s: stored, sending", kind, alarm.alarm_id)
        self._event("sending", alarm.alarm_id)
        self._publish_alarm(alarm.alarm_id, alarm.to_json(), first=True)
        self._refresh()
        return alarm

    def cancel_latest(self) -> str | None:
        """Cancel the newest cancellable alarm still inside its window; never an emergency."""
        now = self.monotonic()
        with self._lock:
            candidates = [(t.raised_mono, alarm_id, t) for alarm_id, t in self.tracks.items()
                          if t.state not in ("resolved", "cancelled")]
        if not candidates:
            return None
        _, alarm_id, track = max(candidates)
        if track.kind not in DEVICE_CANCELLABLE_KINDS:
            log.warning("%s alarm %s cannot be cancelled from the device; only an operator "
                        "resolves it", track.kind, alarm_id)
            return None
        if now - track.raised_mono > self.config.cancel_window_s:
            log.warning("alarm %s: cancel window of %.0f s has passed", alarm_id,
                        self.config.cancel_window_s)
            return None
        self._send_event(EVENT_CANCEL, alarm_id=alarm_id)
        return alarm_id

    def _checkin_pending(self) -> bool:
        return self._checkin_until is not None and self.monotonic() < self._checkin_until

    def _checkin(self) -> None:
        self._checkin_until = None
        self._send_event(EVENT_CHECKIN)

    def _send_event(self, event: str, **fields) -> None:
        msg = DeviceEvent(device=self.config.device_id, event=event,
                          at=int(self.clock() * 1000), **fields)
        self.client.publish(self.topics.event(self.config.device_id), msg.to_json(), qos=1)

    def _publish_alarm(self, alarm_id: str, payload: bytes, *, first: bool = False) -> None:
        """QoS 1 publish of an outbox entry (paho queues it in memory while offline)."""
        info = self.client.publish(self.topics.alarm(self.config.device_id), payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.error("alarm %s: publish failed (%s); kept in the outbox", alarm_id,
                      mqtt.error_string(info.rc))
        if not first:  # Outbox.add counted the first attempt
            self.outbox.mark_sent(alarm_id, self.clock())

    def _resend(self, *, all_pending: bool) -> None:
        """Re-send unconfirmed alarms (all, on connect; those due, periodically)."""
        now = self.clock()
        for entry in self.outbox.pending():
            due = entry.last_sent_s is None or now - entry.last_sent_s >= self.config.resend_every_s
            if all_pending or due:
                log.info("alarm %s: re-sending (attempt %d)", entry.alarm_id, entry.attempts + 1)
                self._publish_alarm(entry.alarm_id, entry.payload)

    # --- MQTT callbacks (paho's network thread) ---------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused device %s: %s", self.config.device_id, reason_code)
            self._connect_failed(client)
            return
        with self._broker_lock:
            self.brokers.connected()
        self._reconnect_attempt = 0
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MIN_S)
        # The broker handles this connection's packets in order: the subscription is in
        # place before any resent alarm, so the hub's "received" cannot miss us.
        client.subscribe(self.topics.cmd(self.config.device_id), qos=1)
        self._announce()
        self._resend(all_pending=True)

    def _on_connect_fail(self, client, userdata) -> None:
        self._connect_failed(client)

    def _connect_failed(self, client) -> None:
        """A connect failed: after a few in a row, the next broker of the list (paho
        connects to it on its next try, this thread)."""
        with self._broker_lock:
            before, after = self.brokers.current, self.brokers.failed()
        if after is not None:
            log.warning("device %s: broker %s unreachable; trying %s", self.config.device_id,
                        before, after)
            self._connect_async(client, after)
            client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MIN_S)

    def _connect_async(self, client, broker: Endpoint) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(broker.host, broker.port, keepalive=self.config.broker.keepalive_s,
                             clean_start=False, properties=props)

    def _probe_home(self) -> None:
        """Away from the first broker, check every HOME_PROBE_S that it accepts a TCP
        connection; once it has for device.brokers.HOME_AFTER_S, go back to it (a clean
        disconnect: no Last Will, so the device is not reported offline)."""
        home = self.brokers.endpoints[0]
        while not self._stopping.wait(HOME_PROBE_S):
            with self._broker_lock:
                away = not self.brokers.at_home
            if not away:
                continue
            answered = reachable(home.host, home.port, timeout=min(2.0, HOME_PROBE_S))
            with self._broker_lock:
                back = self.brokers.home_probed(self.monotonic(), answered)
            if back is None or self._stopping.is_set():
                continue
            log.info("device %s: back to broker %s (reachable again)", self.config.device_id,
                     back)
            self.client.disconnect()
            self.client.loop_stop()
            if self._stopping.is_set():
                return
            self._connect_async(self.client, back)
            self.client.loop_start()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker refused device %s its command topic: %s", self.config.device_id,
                      reason_codes)
            return
        self.connected.set()
        log.info("device %s connected", self.config.device_id)
        self._refresh()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if not reason_code.is_failure:
            return
        self._refused_mids.append(mid)  # a refusal may beat _heartbeat to noting its mid
        if mid == self._heartbeat_mid:
            self._heartbeat_refused(reason_code)
        else:
            log.error("the broker refused a publish of device %s (%s)", self.config.device_id,
                      reason_code)

    def _heartbeat_refused(self, reason) -> None:
        self._legacy_until = self.monotonic() + LEGACY_HEARTBEAT_S
        log.error("the broker refused device %s's heartbeat (%s): its ACL predates firmware "
                  "%s; run 'haven provision acl' on the hub. Meanwhile heartbeats go as "
                  "statuses, as older firmware sent them", self.config.device_id, reason,
                  FIRMWARE_VERSION)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if self._stopping.is_set():
            return
        self._reconnect_attempt += 1
        ceiling = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(self._reconnect_attempt, 8))
        delay = max(RECONNECT_MIN_S, round(ceiling * random.uniform(0.5, 1.0)))
        client.reconnect_delay_set(delay, delay)
        log.warning("device %s lost the broker (%s); reconnecting in ~%d s",
                    self.config.device_id, reason_code, delay)
        self._refresh()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            cmd = decode_command(msg.topic, msg.payload, topics=self.topics)
        except ProtocolError as exc:
            log.warning("ignored command: %s", exc)
            return
        log.info("command %s%s", cmd.cmd, f" for alarm {cmd.alarm_id}" if cmd.alarm_id else "")
        if cmd.cmd == CMD_LOCATE:
            self.feedback.show(Signal.LOCATE)
        elif cmd.cmd == CMD_TEST:
            threading.Thread(target=self._report_selftest, daemon=True).start()
        elif cmd.cmd == CMD_CHECKIN_REQUEST:
            self._checkin_until = self.monotonic() + CHECKIN_WINDOW_S
            self.feedback.show(Signal.CHECKIN)
        elif cmd.cmd in (CMD_ALERT, CMD_ALERT_CLEAR):
            self._alert_command(cmd)
        else:
            self._alarm_command(cmd.cmd, cmd.alarm_id, drill=cmd.drill)

    def _alarm_command(self, cmd: str, alarm_id: str, *, drill: bool = False) -> None:
        """``drill``: a ``received`` says the alarm was stored as a drill (police are not
        paged): DRILL shows instead of RECEIVED. A later plain ``received`` means someone
        said REAL: RECEIVED shows then."""
        with self._lock:
            track = self.tracks.get(alarm_id)
            if track is not None:
                if cmd == CMD_NOT_DELIVERED:
                    track.not_delivered = True
                elif cmd == CMD_PAGING:
                    # Pages got through after all: "use the phone" gives way to "help is
                    # being called"; an acknowledgement already shown stays.
                    track.not_delivered = False
                    if track.state in ("sending", "sent"):
                        track.state = CMD_RECEIVED
                elif cmd == CMD_RECEIVED and track.state not in ("sending", "sent"):
                    made_real = track.drill and not drill
                    track.drill = track.drill and drill
                    if not made_real:
                        track = None  # a late duplicate confirmation: nothing new to show
                else:
                    track.state, track.not_delivered = cmd, False
                    if cmd == CMD_RECEIVED:
                        track.drill = drill
            received = Signal.DRILL if track is not None and track.drill else Signal.RECEIVED
            transient = {CMD_RECEIVED: received, CMD_PAGING: received,
                         CMD_RESOLVED: Signal.RESOLVED}.get(cmd)
            if transient is not None and track is not None:
                self.feedback.show(transient)
        self._event(cmd, alarm_id)
        self._refresh()
        if cmd == CMD_RECEIVED:
            # After telling the wearer: losing this delete only means one more resend,
            # which the hub drops as a duplicate.
            self.outbox.confirm(alarm_id)

    # --- time-based work (the ticker thread) -----------------------------------------

    def _tick_loop(self) -> None:
        watchdog = sdnotify.watchdog_interval_s()
        next_watchdog = self.monotonic()
        while not self._stopping.is_set():
            with self._lock:  # the clock is read under the lock, as in _edge: never backwards
                now = self.monotonic()
                actions = [(decoder, decoder.tick(now)) for _, decoder in self.inputs]
                deadlines = [d for _, decoder in self.inputs
                             if (d := decoder.next_deadline()) is not None]
            for decoder, fired in actions:
                self._act(fired, button=decoder in self._buttons)
            self._expire_alerts(now)
            self._forget_old(now)
            if self.connected.is_set():
                self._resend(all_pending=False)
                if now >= self._next_heartbeat:
                    self._heartbeat()
            if watchdog and now >= next_watchdog:
                sdnotify.notify("WATCHDOG=1")
                next_watchdog = now + watchdog
            self._refresh()
            wake_at = min([now + 0.5, self._next_heartbeat, *deadlines]
                          + ([next_watchdog] if watchdog else []))
            with self._wake:
                self._wake.wait(max(0.0, wake_at - self.monotonic()))

    def _forget_old(self, now: float) -> None:
        with self._lock:
            for alarm_id, track in list(self.tracks.items()):
                closed = track.state in ("resolved", "cancelled")
                if now - track.raised_mono > (FORGET_CLOSED_S if closed else FORGET_OPEN_S):
                    del self.tracks[alarm_id]

    def health(self) -> Health:
        return Health(uptime_s=int(self.monotonic() - self.started_mono),
                      outbox=self.outbox.depth(), wifi_dbm=health.wifi_dbm(),
                      cpu_temp_c=health.cpu_temp_c(), battery_pct=health.read(self._battery))

    def _announce(self) -> None:
        """Say ``online`` (retained, replacing the Last Will's ``offline``) with the firmware
        and the first readings; the next heartbeat is due ``heartbeat_s`` later."""
        self._next_heartbeat = self.monotonic() + self.config.heartbeat_s
        status = StatusMessage(device=self.config.device_id, state=STATUS_ONLINE,
                               at=int(self.clock() * 1000), firmware=FIRMWARE_VERSION,
                               health=self.health())
        self.client.publish(self.topics.status(self.config.device_id), status.to_json(), qos=1,
                            retain=True)

    def _heartbeat(self) -> None:
        """The periodic readings (not retained: a heartbeat is news only when it is sent)."""
        if self.monotonic() < self._legacy_until:
            self._announce()  # the broker refused the heartbeat topic: say it as before 0.3
            return
        self._next_heartbeat = self.monotonic() + self.config.heartbeat_s
        beat = Heartbeat(device=self.config.device_id, at=int(self.clock() * 1000),
                         health=self.health())
        self._refused_mids.clear()  # ids wrap at 65,535: only refusals from here on count
        info = self.client.publish(self.topics.heartbeat(self.config.device_id), beat.to_json(),
                                   qos=1)
        self._heartbeat_mid = info.mid
        if info.mid in self._refused_mids:  # refused before the line above ran
            self._heartbeat_refused("refused before its id was noted")

    def _refresh(self) -> None:
        """Show the persistent signal if it changed (from any thread).

        Deciding and showing happen under one lock, so two threads cannot show
        their decisions in the opposite order (the player never calls back).
        """
        with self._lock:
            signal = persistent_signal(connected=self.connected.is_set(), tracks=self.tracks,
                                       now_mono=self.monotonic(),
                                       not_delivered_after_s=self.config.not_delivered_after_s,
                                       alerting=bool(self.alerts))
            previous, self._shown = self._shown, signal
            if signal == previous:
                return
            if signal is Signal.NOT_DELIVERED:
                log.error("an alarm is NOT confirmed by the hub: the wearer is told to use "
                          "the phone")
            if previous in (Signal.NOT_DELIVERED, Signal.FAULT):
                self.feedback.clear(previous)  # the player never lets IDLE hide these
            self.feedback.show(signal)

    def _event(self, event: str, alarm_id: str) -> None:
        self.on_event(event, alarm_id)

    def _report_selftest(self) -> None:
        results = run_selftest(self.config, running=Running(self.connected.is_set(),
                                                            self.outbox))
        ok = all(r.ok for r in results)
        detail = "; ".join(f"{r.name}: {r.detail}" for r in results if not r.ok) or "all passed"
        self._send_event(EVENT_SELFTEST, ok=ok, detail=detail)
        if ok:
            self.feedback.show(Signal.TEST_OK)

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (reconnecting on its own) and start the ticker."""
        self._connect_async(self.client, self.brokers.current)
        self.client.loop_start()
        self._ticker.start()
        if len(self.brokers.endpoints) > 1:
            self._prober.start()
        self._refresh()
        sdnotify.notify("READY=1")

    def stop(self) -> None:
        """Say ``offline`` (a clean stop sends no Last Will), disconnect, release the pins."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        if self.connected.is_set():
            status = StatusMessage(device=self.config.device_id, state=STATUS_OFFLINE,
                                   at=int(self.clock() * 1000))
            info = self.client.publish(self.topics.status(self.config.device_id),
                                       status.to_json(), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        if self._ticker.is_alive():
            self._ticker.join(2)
        if self._prober.is_alive():
            self._prober.join(3)
        for device, _ in self.inputs:
            device.close()
        self.feedback.close()
        for output in self._output_devices:  # the player turns them off; we release the pins
            output.close()
        self.outbox.close()
