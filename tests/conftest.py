"""Shared fixtures: real mosquitto and redis-server processes, stores, the sample site.

Servers start from the Debian packages' binaries on free loopback ports in the
test's temp dir (milliseconds each) and are stopped after the test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import fakeredis
import pytest

from hub.app.localservices import LocalService, start_mosquitto, start_redis
from hub.config.site import Site, load_site
from hub.store.alarms import Store

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SITE = ROOT / "deploy" / "examples" / "site.toml"
#: Where the sample's floor plan paths are relative to (parse_site(..., base_dir=PLANS_DIR)).
PLANS_DIR = SAMPLE_SITE.parent


def write_site(path: Path, text: str) -> Path:
    """Write site TOML ``text`` to ``path`` with the sample's floor plans beside it (a copy
    of the sample needs them: a plan file that is missing is a config mistake)."""
    shutil.copytree(PLANS_DIR / "plans", path.parent / "plans", dirs_exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def pins():
    """gpiozero mock pins, released after the test (or the next one gets GPIOPinInUse)."""
    from gpiozero.pins.mock import MockFactory
    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def sample_site() -> Site:
    return load_site(SAMPLE_SITE)


@pytest.fixture
def mosquitto(tmp_path) -> LocalService:
    service = start_mosquitto(tmp_path / "mosquitto")
    yield service
    service.stop()


@pytest.fixture
def redis_service(tmp_path) -> LocalService:
    service = start_redis(tmp_path / "redis")
    yield service
    service.stop()


@pytest.fixture
def store(redis_service) -> Store:
    """A store on a real redis-server."""
    s = Store.from_url(redis_service.url)
    yield s
    s.r.close()


@pytest.fixture
def fake_store() -> Store:
    """A store on fakeredis, for fast unit tests (no durability, no second process)."""
    return Store(fakeredis.FakeRedis(decode_responses=True))


@pytest.fixture
def fake_twilio():
    """A local fake Twilio REST API on a free loopback port."""
    from tests.fake_twilio import FakeTwilio
    fake = FakeTwilio().start()
    yield fake
    fake.stop()
