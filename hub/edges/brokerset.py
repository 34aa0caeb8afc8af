"""A hub worker on every broker of the site: no single broker (issue #17).

``HAVEN_BROKER`` (or ``--broker``) may list several brokers, comma-separated
(``hub-a.local:8883,hub-b.local:8883``). Devices use the first they can reach
(device.brokers); each worker keeps one :class:`hub.edges.mqtt.HubMqtt` client on every one
of them, in the same shared-subscription group, so an alarm reaching either broker is
handled by one worker. Confirmations and commands go to every broker: the device
hears them on the one it is on, and a copy queued for it on the other (its session is
kept) arrives as a duplicate it ignores, as the hub ignores an alarm id it already has.

Wiring (hub.app.runner)::

    mqtt = BrokerSet.connect(parse_brokers(settings.broker)  # hub.config.brokers, service.handle,
                             client_id=settings.hub_id, ...HubMqtt's keywords...)
    mqtt.publish(topic, payload)      # to every broker
    mqtt.link                         # (connected, since_ms), for supervision
    mqtt.run()                        # blocks until stop(); raises if a client died
"""

from __future__ import annotations

import logging
import threading

from hub.edges.mqtt import HubMqtt

log = logging.getLogger("haven.mqtt")


class BrokerSet:
    """One HubMqtt per broker, used as one: publish to all, up while any is up."""

    def __init__(self, clients: list[HubMqtt]):
        if not clients:
            raise ValueError("a BrokerSet needs at least one client")
        self.clients = clients
        self._failed: list[BaseException] = []

    @classmethod
    def connect(cls, brokers: tuple[BrokerAddress, ...], handler, *, client_id: str,
                **options) -> "BrokerSet":
        """A client per broker (not yet connected: :meth:`run`). The first keeps
        ``client_id`` (a single-broker site's session is unchanged); the others add
        ``-2``, ``-3``, ...: a broker keeps one session per client id."""
        return cls([HubMqtt(broker, handler, client_id=client_id if i == 0
                            else f"{client_id}-{i + 1}", **options)
                    for i, broker in enumerate(brokers)])

    @property
    def broker(self) -> BrokerAddress:
        return self.clients[0].broker

    @property
    def ready(self) -> threading.Event:
        return self.clients[0].ready

    @property
    def link(self) -> tuple[bool, int]:
        """``(connected, since_ms)``: up while any broker is (since the earliest of those
        still up), else down since the last was lost: devices move to the broker that is
        up, so their silence is news only when this worker reaches none."""
        links = [client.link for client in self.clients]
        up = [since for connected, since in links if connected]
        if up:
            return True, min(up)
        return False, max(since for _, since in links)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """To every broker (the device is on one of them)."""
        for client in self.clients:
            client.publish(topic, payload, qos=qos)

    def run(self) -> None:
        """Serve every broker until :meth:`stop` (the first on this thread); if one
        client's loop dies, stop them all and raise its error."""
        threads = [threading.Thread(target=self._serve, args=(client,), daemon=True,
                                    name=f"mqtt-{client.broker.host}:{client.broker.port}")
                   for client in self.clients[1:]]
        for thread in threads:
            thread.start()
        try:
            self.clients[0].run()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others stop
            self._failed.append(exc)
        self.stop()
        for thread in threads:
            thread.join(5)
        if self._failed:
            raise self._failed[0]

    def _serve(self, client: HubMqtt) -> None:
        try:
            client.run()
        except BaseException as exc:  # noqa: BLE001 - the whole set stops, run() raises
            log.exception("MQTT loop of broker %s:%d died", client.broker.host,
                          client.broker.port)
            self._failed.append(exc)
            self.stop()

    def stop(self) -> None:
        for client in self.clients:
            client.stop()
