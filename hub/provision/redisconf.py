"""Redis settings for Haven, as text, and the hub/dashboard environment file.

``redis/haven.conf`` is included at the end of Debian's ``/etc/redis/redis.conf``
(``include /etc/haven/redis/haven.conf``); in Redis the last value of a setting
wins, so these override Debian's defaults and the rest (dir, log, pid file,
systemd supervision) stays Debian's.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from hub.provision.files import ProvisionSettings, SiteDir

#: Random bytes in a new Redis password (rendered as 43 URL-safe characters).
PASSWORD_BYTES = 32


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def render_redis(s: ProvisionSettings, password: str) -> str:
    return f"""\
# Haven's Redis settings, included at the end of /etc/redis/redis.conf.
# Written by 'haven provision init' (mode 0640, group redis: it holds the password).

# Only the hub and dashboard on this machine (or a private interface) reach it.
bind {s.redis_bind}
port {s.redis_port}
protected-mode yes
# Every client must authenticate; the hub's URL in haven.env carries the password.
requirepass {password}

# Alarms, timelines and timers survive a crash or power cut: append-only file,
# fsync on every write. The hub tells a device "received" only after storing its
# alarm, so a confirmed alarm must be on disk; Haven's write rate is small
# (presses, heartbeats), well within an SD card's fsync budget.
appendonly yes
appendfsync always
# No RDB snapshots on top of the AOF (they fork and write the whole dataset).
save ""
# Keys are never evicted: a full Redis must fail loudly, not forget alarms.
maxmemory-policy noeviction
"""


def redis_url(s: ProvisionSettings, password: str, db: int = 0) -> str:
    host = "127.0.0.1" if s.redis_bind in ("0.0.0.0", "::") else s.redis_bind.split()[0]
    return f"redis://:{quote(password, safe='')}@{host}:{s.redis_port}/{db}"


def render_env(site: SiteDir, s: ProvisionSettings, password: str) -> str:
    """``EnvironmentFile`` of haven-hub and haven-dashboard (mode 0600: systemd reads it
    as root before it drops privileges)."""
    host = "127.0.0.1" if s.listen in ("0.0.0.0", "::", "127.0.0.1") else s.broker_host
    return f"""\
# Environment of haven-hub and haven-dashboard. Written by 'haven provision init'.
# Mode 0600: it holds the Redis password.
HAVEN_SITE={site.site_file}
HAVEN_TOPIC_PREFIX={s.topic_prefix}
HAVEN_BROKER={host}:{s.mqtt_port}
HAVEN_BROKER_CA={site.ca_cert}
HAVEN_BROKER_CERT={site.hub_cert(s.hub_name)}
HAVEN_BROKER_KEY={site.hub_key(s.hub_name)}
HAVEN_REDIS_URL={redis_url(s, password)}
# Twilio (without these, pages are printed by the console notifier, not sent):
#TWILIO_ACCOUNT_SID=
#TWILIO_AUTH_TOKEN=
#TWILIO_FROM_NUMBER=
#HAVEN_PUBLIC_URL=https://haven.example.org
"""
