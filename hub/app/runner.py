"""Runs one hub worker: site config, Redis store, notifier, MQTT, until SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from device.protocol import Topics
from device.signals import SignalPipe

from hub.arc.config import resolve_keys
from hub.arc.queue import ArcQueue
from hub.arc.sender import ArcSender
from hub.edges.push import push_from_env
from hub.engine.checkins import CheckinScheduler
from hub.engine.clockwatch import ClockWatch
from hub.incidents.jobs import IncidentJobs, run_jobs
from hub.incidents.mail import Mailer, smtp_from_env
from hub.incidents.store import IncidentStore
from hub.engine.commands import CommandForwarder
from hub.config.brokers import parse_brokers
from hub.edges.brokerset import BrokerSet
from hub.edges.notify import ConsoleNotifier, Notifier, TwilioNotifier
from hub.engine.senders import PrioritySenders
from hub.engine.service import TICK_S, WARM_SENDERS, AlarmService
from hub.config.settings import HubSettings
from hub.config.site import load_site
from hub.errors import ConfigError
from hub.edges.metrics import Metrics
from hub.edges.outage import Outage
from hub.store.alarms import Store
from hub.engine.replication import replicated_confirm
from hub.engine.supervision import Supervisor
from hub.engine.troubletexts import TroubleTexts

log = logging.getLogger("haven.hub")

#: Threads for the escalation work that runs off the timer: a missed check-in's first
#: attempt, and finishing an attempt whose pages had all gone out (a re-run).
ESCALATION_THREADS = 8


#: On SIGTERM, how long sends and attempts already going out may take to finish, in
#: seconds. Whatever is still running then is left to its lease: another worker (or this
#: one, restarted) runs it again, and page claims keep it from paging twice.
SHUTDOWN_GRACE_S = 6.0

#: How often lone-worker check-ins are looked at, in seconds.
CHECKIN_TICK_S = 5.0


def _followup_loop(service: AlarmService, store: Store, consumer: str,
                   stop: threading.Event) -> None:
    """Acts on pages that finally failed (Twilio status callbacks, queued by the dashboard):
    each follow-up goes to one worker; one a dead worker took is claimed after 5 s."""
    outage = Outage("store", log, "follow-ups")
    while not stop.is_set():
        try:
            for entry_id, fields in store.pages.read_followups(consumer, block_ms=1000):
                try:
                    service.followup(fields["key"], fields["status"])
                except (KeyError, ValueError) as exc:
                    log.error("bad follow-up %s: %s", fields, exc)
                store.pages.ack_followup(entry_id)
            outage.up()
        except redis.RedisError as exc:
            outage.down(exc)
            stop.wait(1.0)


def device_counts(site, store: Store) -> tuple[int, int]:
    """(online, offline) devices, from the supervisor's trouble sets."""
    current = store.troubles.current(list(site.devices))
    offline = sum(1 for troubles in current if {"offline", "never_seen"} & troubles)
    return len(site.devices) - offline, offline


def _timer_loop(service: AlarmService, checkins: CheckinScheduler,
                stop: threading.Event) -> None:
    """Runs due escalation attempts every TICK_S and check-ins every CHECKIN_TICK_S; a dead
    Redis is logged, not fatal."""
    next_checkin = 0.0
    clock = ClockWatch()
    store = Outage("store", log, "escalation timers")
    while not stop.wait(TICK_S):
        try:
            step_ms = clock.step()
            if step_ms:
                _clock_stepped(service.store, step_ms, clock.offset_ms)
            service.claims.renew(int(time.time() * 1000))
            while service.run_due():
                pass
            service.run_call_retries()
            service.run_page_retries()
            if time.monotonic() >= next_checkin:
                next_checkin = time.monotonic() + CHECKIN_TICK_S
                checkins.tick(int(time.time() * 1000))
                service.metrics.set_devices(*device_counts(service.site, service.store))
            store.up()
        except redis.RedisError as exc:
            store.down(exc)
            stop.wait(1.0)


def _exit_after(grace_s: float) -> None:
    """Bound the stop: a send stuck on a slow API must not keep a stopping hub (and
    systemd, or a test) waiting; its lease hands it to another worker."""
    def hard_exit():
        log.warning("still busy %.0f s after the stop signal: exiting; unfinished attempts "
                    "run again elsewhere when their leases end", grace_s)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(grace_s, hard_exit)
    timer.daemon = True
    timer.start()


def _clock_stepped(store: Store, step_ms: int, offset_ms: int) -> None:
    """Move the escalation schedule with a wall-clock step (once across the workers of
    this host: they see the same new offset)."""
    moved = store.shift_schedule(step_ms, step_id=str(round(offset_ms / 5000)))
    log.warning("the wall clock stepped %+.1f s: %s", step_ms / 1000,
                "another worker moved the escalation schedule" if moved is None
                else f"moved {moved} escalation and call-retry due times with it")


def make_notifier(settings: HubSettings) -> Notifier:
    if settings.twilio is None:
        log.warning("no Twilio credentials: SMS are printed by the console notifier, not sent")
        return ConsoleNotifier()
    t = settings.twilio
    log.info("sending SMS through Twilio%s", f" at {t.api_base}" if t.api_base else "")
    return TwilioNotifier(t.account_sid, t.auth_token, from_number=t.from_number,
                          messaging_service_sid=t.messaging_service_sid, api_base=t.api_base)


#: Allocations of container objects (net) between two young-generation collections; the
#: interpreter's default is 700 (gc.get_threshold).
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once start-up is done: leave what it built (the site, the SDKs' modules, ~60,000
    objects) out of every later garbage collection (``gc.freeze``), and collect the
    young generation less often. The objects of an alarm rarely form cycles, so the
    collector's default pace mostly re-walks live objects: in a 5,000-alarm burst it took
    0.15-0.24 s of each worker's ~2.4 s of CPU (~8 %), and 0.04-0.06 s after this
    (bench/profile notes in docs/performance.md). Garbage without cycles is freed at once
    either way; cyclic garbage waits at most ``GC_YOUNG_THRESHOLD`` allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def run_hub(settings: HubSettings) -> None:
    """Serve until a signal; raises ConfigError for a bad site file before connecting."""
    site = load_site(settings.site_path)
    topics = Topics(settings.topic_prefix)
    store = Store.from_url(settings.redis)
    notifier = make_notifier(settings)
    # Concurrent sends (a step to many contacts must not take contacts x API latency),
    # each thread on its own keep-alive connection: HAVEN_API_CONNECTIONS bounds both.
    # When they are the limit, the most urgent kind's pages go first (hub.core.urgency).
    senders = PrioritySenders(settings.api_connections, thread_name_prefix="sender")
    escalators = ThreadPoolExecutor(ESCALATION_THREADS, thread_name_prefix="escalation")
    mqtt_box: list[BrokerSet] = []
    metrics = Metrics()
    confirm = replicated_confirm(settings.redis, lambda t, p: mqtt_box[0].publish(t, p, qos=0),
                                 metrics.registry)
    service = AlarmService(site, store, notifier, lambda t, p: mqtt_box[0].publish(t, p),
                           senders, escalators=escalators, topics=topics, metrics=metrics,
                           public_url=settings.public_url, confirm=confirm.confirm,
                           replication=confirm.replication, plan_links=settings.plan_links)
    metrics_server = None
    if settings.metrics_port is not None:
        metrics_server = metrics.serve("127.0.0.1", settings.metrics_port)
        log.info("metrics on http://127.0.0.1:%d/metrics", metrics_server.port)
    # one client per broker of the site (hub.edges.brokerset): an alarm reaching either is handled
    mqtt = BrokerSet.connect(parse_brokers(settings.broker), service.handle,
                             client_id=settings.hub_id, topics=topics, tls=settings.broker_tls,
                             status_batch=service.handle_statuses,
                             batch_handler=service.handle_batch)
    mqtt_box.append(mqtt)
    forwarder = CommandForwarder(Store.from_url(settings.redis), mqtt.publish,
                                 consumer=settings.hub_id, topics=topics,
                                 on_command=service.command_forwarded)

    stop_timers = threading.Event()
    checkins = CheckinScheduler(site, store, branch_state=service.branch_state,
                                raise_alarm=service.raise_from_hub)
    texts = TroubleTexts(site, store, notifier, broker=lambda: mqtt.link)
    supervisor = Supervisor(site, store, texts.queue, broker=lambda: mqtt.link,
                            after_check=texts.after_check)
    smtp = smtp_from_env()  # a mistake in HAVEN_SMTP_* stops the hub before it connects
    service.push = push_from_env(site, store)  # Web Push (hub.edges.push), when keys are there
    arc = None
    if site.arc is not None:  # the monitoring centre (hub.arc); keys from the environment
        service.arc = ArcQueue(site, Store.from_url(settings.redis), clock=time.time)
        arc = ArcSender(service.arc, resolve_keys(site.arc, site.source),
                        worker=settings.hub_id, tell_it=texts.tell_it)
    incident_jobs = IncidentJobs(site, IncidentStore(Store.from_url(settings.redis), site),
                                 notifier, consumer=settings.hub_id,
                                 mailer=Mailer(smtp) if smtp else None,
                                 public_url=settings.dashboard_url)

    def reload() -> None:
        """SIGHUP: read the site config again. Alarms and timers live in Redis and carry
        on; a config with mistakes is refused and the running one kept."""
        try:
            new_site = load_site(settings.site_path)
        except ConfigError as exc:
            log.error("SIGHUP: keeping the running site config; %s", exc)
            return
        service.site = checkins.site = supervisor.site = texts.site = new_site
        if service.arc is not None:
            if new_site.arc is not None and new_site.arc.receivers == site.arc.receivers:
                service.arc.site = new_site
            else:
                log.error("SIGHUP: the [arc] receivers changed or were removed: restart the "
                          "hub to use them; the running ARC link is kept")
        incident_jobs.site = incident_jobs.incidents.site = new_site
        log.info("SIGHUP: site config reloaded: %d branches, %d devices, %d contacts",
                 len(new_site.branches), len(new_site.devices), len(new_site.contacts))

    signals = SignalPipe(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    failed: list[BaseException] = []

    def serve_mqtt() -> None:
        try:
            mqtt.run()
        except BaseException as exc:  # noqa: BLE001 - reported, then the hub stops
            log.exception("MQTT loop died")
            failed.append(exc)
            signals.raise_signal(signal.SIGTERM)

    log.info("hub %s: site %r (%d branches, %d devices), broker %s, redis %s, notifier %s "
             "(%d API connections)", settings.hub_id, site.name, len(site.branches),
             len(site.devices), settings.broker, settings.redis_url_safe, notifier.name,
             settings.api_connections)
    service.warm_up(min(WARM_SENDERS, settings.api_connections))
    forwarder.start()
    timers = threading.Thread(target=_timer_loop, args=(service, checkins, stop_timers),
                              name="escalation-timers", daemon=True)
    timers.start()
    supervision = threading.Thread(target=supervisor.run, args=(stop_timers,),
                                   name="supervisor", daemon=True)
    supervision.start()
    followups = threading.Thread(target=_followup_loop, name="followups", daemon=True,
                                 args=(service, Store.from_url(settings.redis),
                                       settings.hub_id, stop_timers))
    followups.start()
    incidents = threading.Thread(target=run_jobs, args=(incident_jobs, stop_timers),
                                 name="incidents", daemon=True)
    incidents.start()
    arc_threads = [threading.Thread(target=work, args=(stop_timers,), name=name, daemon=True)
                   for work, name in ((arc.run, "arc"), (arc.run_supervision, "arc-supervision"))
                   ] if arc is not None else []
    for thread in arc_threads:
        thread.start()
    network = threading.Thread(target=serve_mqtt, name="mqtt", daemon=True)
    settle_heap()
    network.start()
    try:
        while (signum := signals.wait()) == signal.SIGHUP:
            reload()
        if not failed:
            log.info("signal %s: stopping", signal.Signals(signum).name)
    finally:
        _exit_after(SHUTDOWN_GRACE_S)
        mqtt.stop()
        network.join(5)
        stop_timers.set()
        timers.join(5)
        supervision.join(5)
        followups.join(5)
        incidents.join(5)
        for thread in arc_threads:
            thread.join(5)
        forwarder.stop()
        escalators.shutdown(wait=True)  # let attempts and pages already going out finish
        senders.shutdown(wait=True)
        texts.senders.shutdown(wait=True)
        if metrics_server is not None:
            metrics_server.close()
        store.r.close()
        signals.close()
        log.info("hub stopped")
    if failed:
        raise RuntimeError("the hub's MQTT loop died") from failed[0]
