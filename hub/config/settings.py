"""Hub and dashboard settings from the environment and the command line, validated once.

Environment (command-line options override):

    HAVEN_SITE              site config file             /etc/haven/site.toml
    HAVEN_BROKER            MQTT broker host:port        127.0.0.1:1883
                            (a pair or more: every one, comma-separated; the worker
                            serves them all, hub/edges/brokerset.py)
    HAVEN_BROKER_CA         the site CA: connect over TLS and check the broker's certificate
    HAVEN_BROKER_CERT, HAVEN_BROKER_KEY   the hub's client certificate and key (both or neither;
                            `haven provision init` writes all three into hub/haven.env)   unset
    HAVEN_REDIS_URL         Redis URL                    redis://127.0.0.1:6379/0
    HAVEN_REDIS_SENTINELS, HAVEN_REDIS_MASTER, HAVEN_REDIS_SENTINEL_PASSWORD,
    HAVEN_REDIS_WAIT_REPLICAS, HAVEN_REDIS_WAIT_MS
                            Redis through Sentinel, and how many replicas hold an alarm
                            before the device hears "received" (hub/config/redistarget.py)
    HAVEN_TOPIC_PREFIX      MQTT topic prefix            haven/v1
    HAVEN_HUB_ID            this worker's MQTT client id haven-hub-<hostname>
    HAVEN_METRICS_PORT      serve Prometheus /metrics on 127.0.0.1:<port>   off
    HAVEN_API_CONNECTIONS   the most Twilio API requests this worker has in flight (one
                            connection and sender thread each, 1-256); with several workers
                            on one account keep their sum within what you allow (e.g. 4
                            workers x 16 = 64)                                 32
    HAVEN_PUBLIC_URL        the dashboard's public https base URL, which Twilio calls back
                            (calls then take keypresses; SMS invite "Reply 1")   unset
    HAVEN_DASHBOARD_URL     the dashboard's base URL as staff open it, for links in texts
                            and e-mails (a report is due: <url>/incidents/<id>)
                                                         HAVEN_PUBLIC_URL
    TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, and TWILIO_FROM_NUMBER (one number, or several
    comma-separated: texts are spread over them) or TWILIO_MESSAGING_SERVICE_SID
                            send real SMS; without them the console notifier prints
    HAVEN_TWILIO_API_BASE   point the twilio SDK at another API host (tests, benchmarks)
    HAVEN_SMTP_HOST (and HAVEN_SMTP_* beside it, see hub/incidents/mail.py)
                            e-mail incident-report reminders; SMS without it   unset
    HAVEN_PLAN_LINK_URL, HAVEN_PLAN_LINK_SECRET   a link to the alarm's floor plan in
                            responders' texts, opened without a login (hub/core/planlink.py) unset
    HAVEN_DASHBOARD_SECRET  the dashboard's session key (32+ characters)   a 0600 file in
    HAVEN_STATE_DIR         ... this directory                              /var/lib/haven
    HAVEN_DEMO_STATE        where a running demo tells `haven press` how to reach it
                                                         $TMPDIR/haven-demo-<uid>.json

This module reads ``os.environ`` (hub/incidents/mail.py reads HAVEN_SMTP_* through
its helper).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from dataclasses import dataclass
from typing import Mapping

from hub.errors import ConfigError, Problem
from hub.config.brokers import parse_brokers
from hub.config.planlinks import plan_links_from_env
from hub.config.redistarget import RedisTarget, target_from_env
from hub.config.site import E164_RE
from hub.core.planlink import PlanLinks

TWILIO_VARS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER",
               "TWILIO_MESSAGING_SERVICE_SID")


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str
    from_number: str | None
    messaging_service_sid: str | None
    api_base: str | None


@dataclass(frozen=True)
class BrokerTls:
    """TLS to the broker: the CA file that signed its certificate, and our client
    certificate and key (``None`` when the broker needs none)."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


#: Default and most sender threads (API connections) per hub worker. 32 lets a step to
#: 20 contacts go out at once even while other alarms' pages are in flight.
API_CONNECTIONS, MAX_API_CONNECTIONS = 32, 256


@dataclass(frozen=True)
class HubSettings:
    site_path: str
    broker: str
    redis_url: str
    topic_prefix: str
    hub_id: str
    twilio: TwilioSettings | None
    metrics_port: int | None = None
    public_url: str | None = None
    #: Where staff open the dashboard, for links (HAVEN_DASHBOARD_URL, else public_url).
    dashboard_url: str | None = None
    broker_tls: BrokerTls | None = None
    #: Sender threads, each with its own keep-alive API connection (HAVEN_API_CONNECTIONS).
    api_connections: int = API_CONNECTIONS
    #: Links to an alarm's floor plan in responders' texts (HAVEN_PLAN_LINK_*), or None.
    plan_links: PlanLinks | None = None
    #: Where Redis is (the URL, or Sentinels), what ``Store.from_url`` connects to.
    redis: RedisTarget | None = None

    def __post_init__(self) -> None:
        if self.redis is None:  # built without hub_settings (tests): the URL alone
            object.__setattr__(self, "redis", RedisTarget(self.redis_url))

    @property
    def redis_url_safe(self) -> str:
        """The Redis URL with any password masked (and the Sentinels), for logs."""
        return self.redis.safe


def env_default(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(name) or default


def demo_state_file(env: Mapping[str, str] | None = None) -> str:
    return env_default("HAVEN_DEMO_STATE",
                       os.path.join(tempfile.gettempdir(), f"haven-demo-{os.getuid()}.json"), env)


def twilio_from_env(env: Mapping[str, str] | None = None) -> TwilioSettings | None:
    """Twilio credentials, or ``None`` when none are set; a partial set is an error."""
    env = os.environ if env is None else env
    given = {name: env.get(name, "").strip() for name in TWILIO_VARS}
    if not any(given.values()):
        return None
    problems = []
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        if not given[name]:
            problems.append(Problem("environment", None, name,
                                    "missing: set it too, or unset every TWILIO_* variable "
                                    "to use the console notifier"))
    sender = given["TWILIO_FROM_NUMBER"] or None
    service = given["TWILIO_MESSAGING_SERVICE_SID"] or None
    if not (sender or service):
        problems.append(Problem("environment", None, "TWILIO_FROM_NUMBER",
                                "missing: set the sending number (E.164) or "
                                "TWILIO_MESSAGING_SERVICE_SID"))
    for number in (sender or "").split(","):
        if not E164_RE.match(number.strip()):
            problems.append(Problem("environment", None, "TWILIO_FROM_NUMBER",
                                    f"{number.strip()!r} is not E.164, e.g. +15550100123 "
                                    "(several: comma-separated)"))
    if problems:
        raise ConfigError(problems)
    return TwilioSettings(given["TWILIO_ACCOUNT_SID"], given["TWILIO_AUTH_TOKEN"], sender, service,
                          env.get("HAVEN_TWILIO_API_BASE") or None)


def hub_settings(*, site: str | None = None, broker: str | None = None,
                 redis_url: str | None = None, topic_prefix: str | None = None,
                 hub_id: str | None = None, metrics_port: int | None = None,
                 env: Mapping[str, str] | None = None) -> HubSettings:
    if metrics_port is None:
        raw = env_default("HAVEN_METRICS_PORT", "", env)
        if raw and not (raw.isdigit() and int(raw) < 65536):
            raise ConfigError([Problem("environment", None, "HAVEN_METRICS_PORT",
                                       f"{raw!r} is not a TCP port number")])
        metrics_port = int(raw) if raw else None
    raw = env_default("HAVEN_API_CONNECTIONS", str(API_CONNECTIONS), env).strip()
    if not (raw.isdigit() and 1 <= int(raw) <= MAX_API_CONNECTIONS):
        raise ConfigError([Problem("environment", None, "HAVEN_API_CONNECTIONS",
                                   f"{raw!r} must be a whole number from 1 to "
                                   f"{MAX_API_CONNECTIONS} (default {API_CONNECTIONS}): how "
                                   "many Twilio requests one worker may have in flight")])
    broker = broker or env_default("HAVEN_BROKER", "127.0.0.1:1883", env)
    parse_brokers(broker)  # a ConfigError naming HAVEN_BROKER before anything starts
    redis_url = redis_url or env_default("HAVEN_REDIS_URL", "redis://127.0.0.1:6379/0", env)
    return HubSettings(
        site_path=site or env_default("HAVEN_SITE", "/etc/haven/site.toml", env),
        broker=broker,
        redis_url=redis_url,
        redis=target_from_env(redis_url, os.environ if env is None else env),
        topic_prefix=topic_prefix or env_default("HAVEN_TOPIC_PREFIX", "haven/v1", env),
        hub_id=hub_id or env_default("HAVEN_HUB_ID", f"haven-hub-{socket.gethostname()}", env),
        twilio=twilio_from_env(env),
        metrics_port=metrics_port,
        public_url=public_url_from_env(env),
        dashboard_url=base_url_from_env("HAVEN_DASHBOARD_URL", env) or public_url_from_env(env),
        broker_tls=broker_tls_from_env(env),
        api_connections=int(raw),
        plan_links=plan_links_from_env(env),
    )


def broker_tls_from_env(env: Mapping[str, str] | None = None) -> BrokerTls | None:
    """TLS settings from HAVEN_BROKER_CA/CERT/KEY, each file checked readable; ``None``
    when none is set."""
    names = ("HAVEN_BROKER_CA", "HAVEN_BROKER_CERT", "HAVEN_BROKER_KEY")
    ca, cert, key = (env_default(name, "", env) or None for name in names)
    if not (ca or cert or key):
        return None
    problems = []
    if not ca:
        problems.append(Problem("environment", None, "HAVEN_BROKER_CA",
                                "missing: a client certificate needs TLS; set it to the site "
                                "CA (e.g. /etc/haven/pki/ca.crt)"))
    if (cert is None) != (key is None):
        problems.append(Problem("environment", None,
                                "HAVEN_BROKER_KEY" if key is None else "HAVEN_BROKER_CERT",
                                "missing: the hub's certificate needs both HAVEN_BROKER_CERT "
                                "and HAVEN_BROKER_KEY"))
    for name, path in zip(names, (ca, cert, key)):
        if path and not os.access(path, os.R_OK):
            problems.append(Problem("environment", None, name,
                                    f"{path} does not exist or cannot be read by this user"))
    if problems:
        raise ConfigError(problems)
    return BrokerTls(ca, cert, key)


def public_url_from_env(env: Mapping[str, str] | None = None) -> str | None:
    return base_url_from_env("HAVEN_PUBLIC_URL", env)


def base_url_from_env(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The http(s) base URL in variable ``name``, without a trailing slash; ``None`` if
    unset; a ConfigError naming the variable for anything else."""
    raw = env_default(name, "", env).rstrip("/")
    if raw and not (raw.startswith(("https://", "http://")) and "://" in raw
                    and raw.split("://", 1)[1]):
        raise ConfigError([Problem("environment", None, name,
                                   f"{raw!r} must be a URL such as https://haven.example.org")])
    return raw or None
