"""Runs one hub worker: site config, Redis store, notifier, MQTT, until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from device.protocol import Topics

from .commands import CommandForwarder
from .mqtt import BrokerAddress, HubMqtt
from .notify import ConsoleNotifier, Notifier, TwilioNotifier
from .service import AlarmService
from .settings import HubSettings
from .site import load_site
from .store import Store

log = logging.getLogger("haven.hub")

#: Concurrent sends: a step to many contacts must not take contacts x API latency.
SENDER_THREADS = 32


def make_notifier(settings: HubSettings) -> Notifier:
    if settings.twilio is None:
        log.warning("no Twilio credentials: SMS are printed by the console notifier, not sent")
        return ConsoleNotifier()
    t = settings.twilio
    log.info("sending SMS through Twilio%s", f" at {t.api_base}" if t.api_base else "")
    return TwilioNotifier(t.account_sid, t.auth_token, from_number=t.from_number,
                          messaging_service_sid=t.messaging_service_sid, api_base=t.api_base)


def run_hub(settings: HubSettings) -> None:
    """Serve until a signal; raises ConfigError for a bad site file before connecting."""
    site = load_site(settings.site_path)
    topics = Topics(settings.topic_prefix)
    store = Store.from_url(settings.redis_url)
    notifier = make_notifier(settings)
    senders = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="sender")
    mqtt_box: list[HubMqtt] = []
    service = AlarmService(site, store, notifier, lambda t, p: mqtt_box[0].publish(t, p),
                           senders, topics=topics)
    mqtt = HubMqtt(BrokerAddress.parse(settings.broker), service.handle,
                   client_id=settings.hub_id, topics=topics)
    mqtt_box.append(mqtt)
    forwarder = CommandForwarder(Store.from_url(settings.redis_url), mqtt.publish,
                                 consumer=settings.hub_id, topics=topics)

    def stop(signum, frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        mqtt.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("hub %s: site %r (%d branches, %d devices), broker %s, redis %s, notifier %s",
             settings.hub_id, site.name, len(site.branches), len(site.devices), settings.broker,
             settings.redis_url, notifier.name)
    forwarder.start()
    try:
        mqtt.run()
    finally:
        forwarder.stop()
        senders.shutdown(wait=True)  # let pages already going out finish
        store.r.close()
        log.info("hub stopped")
