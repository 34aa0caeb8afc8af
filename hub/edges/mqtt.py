"""The hub's MQTT edge: subscribe, hand each message to the service, ack after storing.

- Alarms, heartbeats and device events arrive on shared subscriptions
  (``$share/<group>/<prefix>/dev/+/alarm``), so N hub workers split them; statuses
  (presence: ``online`` once per connection, the Last Will's ``offline``) on a plain
  subscription (retained messages are not delivered to shared subscriptions), so
  every worker sees every device's presence. Statuses and heartbeats are stored in
  batches (hub.edges.statusbatch), alarms and events on their own path.
- MQTT v5, QoS 1, a persistent session (``clean_start=False`` plus a
  Session Expiry Interval), so alarms published while the hub restarts wait
  in the broker.
- ``manual_ack``: a message is acknowledged to the broker only once the
  service has handled it. If Redis is unreachable the message is kept and
  retried on a background thread with backoff; a crash meanwhile leaves it
  unacknowledged, and the broker redelivers it to the next session.
- Alarms and events are handled on a thread of their own, in the order they arrived,
  together when several wait (up to ``READ_BATCH``: one Redis round trip for a burst's
  alarms), then acknowledged; paho's network thread only hands them over, so it keeps
  reading while a batch is stored. paho is used through its public API only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.protocol import Topics
from device.transport import tcp_nodelay

from hub.edges.outage import Outage
from hub.edges.statusbatch import StatusBatcher

from hub.config.brokers import BrokerAddress
from hub.config.settings import BrokerTls

log = logging.getLogger("haven.mqtt")

#: How long the broker keeps the hub's session (and queues its alarms) while
#: it is disconnected, in seconds.
SESSION_EXPIRY_S = 24 * 3600
#: Seconds between MQTT keepalive pings: a dead broker is noticed within ~1.5x this.
KEEPALIVE_S = 10
#: The most alarms and events handled together (a burst's); fewer when fewer wait.
READ_BATCH = 64
#: Retry delays of held alarms while the store is unreachable, in seconds (doubling). A
#: worker is one of a few Redis clients: at 5 s, alarms held through a Sentinel failover
#: waited up to 5 s more after the new primary was up (tests/faults/test_sentinel_failover).
RETRY_MIN_S, RETRY_MAX_S = 0.2, 1.0
#: Delays between attempts to reach a lost broker, in seconds (doubling from the first).
#: A worker is one of a few clients, not one of thousands of devices (which back off up
#: to 30 s, jittered): it is back within a second of the broker, whose restart (an
#: upgrade, a revoked certificate) otherwise held devices' resent alarms for up to 3 s.
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.25, 1.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class HubMqtt:
    """Runs the hub's MQTT client. ``handler(topic, payload, retained=...)`` raises
    RedisError to defer the message."""

    def __init__(self, broker: BrokerAddress, handler: Callable[[str, bytes], object], *,
                 client_id: str, topics: Topics = Topics(), share_group: str = "haven-hub",
                 tls: BrokerTls | None = None,
                 status_batch: Callable[[list[tuple[str, bytes, bool]]], object] | None = None,
                 batch_handler: Callable[[list[tuple[str, bytes, bool]]], object] | None = None):
        """``tls``: connect over TLS, checking the broker against ``tls.ca_file`` and
        showing the hub's client certificate (its CN is the hub's broker identity).
        ``status_batch``: store status messages in batches (hub.edges.statusbatch) instead of
        one by one through ``handler``. ``batch_handler``: handle the alarms and events
        waiting together in one call (``hub.engine.service.AlarmService.handle_batch``: a burst
        costs one Redis round trip per batch, not per alarm), on a thread of its own;
        raises like ``handler``."""
        self.broker, self.handler, self.topics = broker, handler, topics
        self._statuses = None if status_batch is None else StatusBatcher(
            status_batch, lambda m: self.client.ack(m.mid, m.qos))
        self.share_group = share_group
        self.batch_handler = batch_handler
        #: Alarms and events handed over by paho's thread, for the batch thread (in order).
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.ready = threading.Event()
        #: ``(connected, since_ms)``: whether the broker connection is up, and since when
        #: (Unix ms, hub clock); down from the start until the first connection. Read by
        #: supervision (hub.engine.supervision, hub.engine.troubletexts) from other threads.
        self.link: tuple[bool, int] = (False, _now_ms())
        self._lost = False  # the connection was up once and then lost
        self._retry: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._stopping = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        self.client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        if tls is not None:
            self.client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file,
                                keyfile=tls.key_file)
        self.client.on_socket_open = tcp_nodelay
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._batcher = threading.Thread(target=self._batch_loop, name="hub-alarms",
                                         daemon=True)
        self._retrier = threading.Thread(target=self._retry_loop, name="hub-store-retry",
                                         daemon=True)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """QoS 1 publish (default); while disconnected paho queues it in memory and sends on
        reconnect. QoS 0 only for what the receiver asks for again if it is lost."""
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.error("publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    # --- callbacks (paho's network thread) ------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%d refused the hub: %s", self.broker.host, self.broker.port,
                      reason_code)
            return
        if self._lost:
            log.warning("broker back: %s:%d reached again after %.1f s", self.broker.host,
                        self.broker.port, (_now_ms() - self.link[1]) / 1000)
        self._lost = False
        self.link = (True, _now_ms())
        log.info("connected to broker %s:%d (session present: %s)", self.broker.host,
                 self.broker.port, flags.session_present)
        client.subscribe([(topic, mqtt.SubscribeOptions(qos=1))
                          for topic in self.subscriptions()])

    def subscriptions(self) -> list[str]:
        """The filters the hub subscribes to, in the order of its SUBSCRIBE."""
        shared = [f"$share/{self.share_group}/{self.topics.device_filter(c)}"
                  for c in ("alarm", "event", "heartbeat")]
        return shared + [self.topics.device_filter("status")]

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [f"{topic} ({rc})" for topic, rc in zip(self.subscriptions(), reason_codes)
                  if rc.is_failure]
        if failed:
            log.error("broker refused the hub's subscriptions: %s; the broker's ACL must let "
                      "the hub read every device channel: on a provisioned site run "
                      "'haven provision acl' (it rewrites the ACL and reloads mosquitto)",
                      ", ".join(failed))
            return
        if not self.ready.is_set():
            log.info("hub ready")
            self.ready.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.link[0]:
            self.link, self._lost = (False, _now_ms()), True
        if not self._stopping.is_set():
            log.error("lost the broker (%s): reconnecting", reason_code)

    def _batch_loop(self) -> None:
        """The batch thread: every alarm and event waiting (up to ``READ_BATCH``), handled
        together in arrival order, then acknowledged (``_settle``)."""
        while not self._stopping.is_set():
            try:
                batch = [self._inbox.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < READ_BATCH:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            self._handle_batch(batch)

    def _handle_batch(self, batch: list[mqtt.MQTTMessage]) -> None:
        self._settle(batch, f"{len(batch)} message(s)", lambda: self.batch_handler(
            [(m.topic, m.payload, bool(m.retain)) for m in batch]))

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self._statuses is not None and msg.topic.endswith(("/status", "/heartbeat")):
            self._statuses.put(msg)
            return
        if self.batch_handler is not None:
            self._inbox.put(msg)
            return
        self._settle([msg], msg.topic,
                     lambda: self.handler(msg.topic, msg.payload, retained=bool(msg.retain)))

    def _settle(self, messages: list[mqtt.MQTTMessage], what: str, handle) -> None:
        """``handle()`` the messages, then acknowledge them; on a store error hold them,
        unacknowledged, for the retry thread; behind messages already held, hold them
        too, so order is kept."""
        if not self._retry.empty():
            for msg in messages:
                self._retry.put(msg)
            return
        try:
            handle()
        except redis.RedisError as exc:
            log.error("store unreachable (%s): holding %s unacknowledged and retrying",
                      exc, what)
            for msg in messages:
                self._retry.put(msg)
            return
        except Exception:
            log.exception("handling %s failed; left unacknowledged", what)
            return
        for msg in messages:
            self.client.ack(msg.mid, msg.qos)

    def _retry_loop(self) -> None:
        delay = RETRY_MIN_S
        store = Outage("store", log, "held messages")
        while not self._stopping.is_set():
            try:
                msg = self._retry.queue[0] if self._retry.qsize() else None
            except IndexError:
                msg = None
            if msg is None:
                time.sleep(RETRY_MIN_S)
                continue
            try:
                self.handler(msg.topic, msg.payload, retained=bool(msg.retain))
                store.up()
            except redis.RedisError:
                store.down()  # _settle said it went, once; the back line is ours
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            except Exception:
                log.exception("handling %s failed; message left unacknowledged", msg.topic)
            else:
                self.client.ack(msg.mid, msg.qos)
            self._retry.get_nowait()
            delay = RETRY_MIN_S

    # --- lifecycle --------------------------------------------------------------

    def run(self) -> None:
        """Connect and serve until :meth:`stop`; reconnects on its own."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._retrier.start()
        if self.batch_handler is not None:
            self._batcher.start()
        if self._statuses is not None:
            self._statuses.start()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S,
                                  clean_start=False, properties=props)
        self.client.loop_forever(retry_first_connection=True)

    def stop(self) -> None:
        self._stopping.set()
        if self._statuses is not None:
            self._statuses.stop()
        self.client.disconnect()
