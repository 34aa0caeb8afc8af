"""``[arc]`` in the site config (hub.arc.config): each mistake named by file, line, field
and fix; keys come from the environment at hub start, not from the reviewed file."""

from __future__ import annotations

import pytest

from hub.arc.config import key_of, resolve_keys
from hub.errors import ConfigError
from hub.config.site import parse_site
from tests.conftest import PLANS_DIR, SAMPLE_SITE

SAMPLE = SAMPLE_SITE.read_text()
GOOD = """
[arc]
accounts = { main = "1a01", westside = "1002" }
kinds = { emergency = "panic", safe_room = "holdup" }
format = "adm-cid"
supervision_s = 30

[[arc.receiver]]
host = "arc1.example.net"
port = 12000
key_env = "HAVEN_ARC_KEY"

[[arc.receiver]]
host = "10.0.0.2"
port = 12001
protocol = "udp"
receiver = "A1"
line = "3"
"""


def problems(arc: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_site(SAMPLE + arc, "site.toml", PLANS_DIR)
    return [str(p) for p in err.value.problems]


def test_without_arc_the_site_has_none():
    assert parse_site(SAMPLE, "site.toml", PLANS_DIR).arc is None


def test_a_good_arc_table_loads():
    arc = parse_site(SAMPLE + GOOD, "site.toml", PLANS_DIR).arc
    assert arc.accounts == {"main": "1A01", "westside": "1002"}
    assert arc.kinds == {"emergency": "panic", "safe_room": "holdup"}
    assert (arc.format, arc.supervision_s, arc.ack_timeout_s, arc.attempts) == \
        ("adm-cid", 30.0, 3.0, 3)
    primary, backup = arc.receivers
    assert (primary.name, primary.where, primary.key_env) == \
        ("primary", "primary arc1.example.net:12000/tcp", "HAVEN_ARC_KEY")
    assert (backup.name, backup.protocol, backup.receiver, backup.line, backup.key_env) == \
        ("backup", "udp", "A1", "3", None)


@pytest.mark.parametrize("change, field, words", [
    (('main = "1a01"', 'main = "12"'), "arc.accounts.main", "3 to 16 hex digits"),
    (('main = "1a01"', 'eastside = "1a01"'), "arc.accounts.eastside", "unknown branch"),
    (('"panic"', '"fire"'), "arc.kinds.emergency", "one of panic, holdup, duress"),
    (('emergency = "panic"', 'robbery = "panic"'), "arc.kinds.robbery", "unknown alarm kind"),
    (('format = "adm-cid"', 'format = "cid"'), "arc.format", "sia-dcs, adm-cid"),
    (("supervision_s = 30", "supervision_s = 1"), "arc.supervision_s", "10 to 90000 seconds"),
    (("port = 12000", "port = 70000"), "arc.receiver[0].port", "1 to 65535"),
    (('protocol = "udp"', 'protocol = "http"'), "arc.receiver[1].protocol", '"tcp" or "udp"'),
    (('line = "3"', 'line = "L3"'), "arc.receiver[1].line", "1 to 6 hex digits"),
    (('key_env = "HAVEN_ARC_KEY"', 'key_env = "0123abcd"'), "arc.receiver[0].key_env",
     "NAME of an environment variable"),
    (("port = 12000", "port = 12000\nkey = 'x'"), "arc.receiver[0].key", "unknown field"),
])
def test_each_mistake_names_its_field_and_line(change, field, words):
    text = GOOD.replace(*change, 1)
    assert text != GOOD
    found = [p for p in problems(text) if f": {field}: " in p]
    assert found and words in found[0], problems(text)
    assert found[0].startswith("site.toml:") and found[0].split(":")[1].isdigit()


def test_three_receivers_are_refused():
    extra = GOOD + '\n[[arc.receiver]]\nhost = "c"\nport = 1\n'
    assert any("one or two [[arc.receiver]]" in p for p in problems(extra))


@pytest.mark.parametrize("fmt, value, key", [
    ("hex", "00" * 16, bytes(16)),
    ("hex", "ab" * 32, b"\xab" * 32),
    ("text", "0123456789ABCDEF", b"0123456789ABCDEF"),
])
def test_keys_come_from_the_environment(fmt, value, key):
    site = parse_site(SAMPLE + GOOD.replace('key_env = "HAVEN_ARC_KEY"',
                                            f'key_env = "HAVEN_ARC_KEY"\nkey_format = "{fmt}"'),
                      "site.toml", PLANS_DIR)
    addresses = resolve_keys(site.arc, "site.toml", {"HAVEN_ARC_KEY": value})
    assert addresses["primary"].key == key and addresses["backup"].key is None
    assert (addresses["backup"].receiver, addresses["backup"].line) == ("A1", "3")


@pytest.mark.parametrize("env, words", [
    ({}, "HAVEN_ARC_KEY is not set"),
    ({"HAVEN_ARC_KEY": "abc"}, "32, 48 or 64 hex digits"),
    ({"HAVEN_ARC_KEY": "zz" * 16}, "32, 48 or 64 hex digits"),
])
def test_a_missing_or_bad_key_is_a_clear_error(env, words):
    site = parse_site(SAMPLE + GOOD, "site.toml", PLANS_DIR)
    with pytest.raises(ConfigError) as err:
        resolve_keys(site.arc, "site.toml", env)
    assert "arc.receiver[0].key_env" in str(err.value) and words in str(err.value)


def test_a_text_key_must_have_an_aes_length():
    site = parse_site(SAMPLE + GOOD.replace('port = 12000', 'port = 12000\nkey_format = "text"'),
                      "site.toml", PLANS_DIR)
    with pytest.raises(ValueError, match="16, 24 or 32 ASCII characters"):
        key_of(site.arc.receivers[0], {"HAVEN_ARC_KEY": "short"})


def test_rooms_are_zones_in_order_unless_numbered():
    site = parse_site(SAMPLE + GOOD + "\n[arc.zones]\nwestside = { front-desk = 20, "
                                      "safe-room = 21 }\n", "site.toml", PLANS_DIR)
    main = [r.id for r in site.branches["main"].rooms]
    assert [site.arc.zones[("main", r)] for r in main] == list(range(1, len(main) + 1))
    assert (site.arc.zones[("westside", "front-desk")],
            site.arc.zones[("westside", "safe-room")]) == (20, 21)


@pytest.mark.parametrize("zones, field, words", [
    ("eastside = { a = 1 }", "arc.zones.eastside", "unknown branch"),
    ("westside = { attic = 1, front-desk = 2, safe-room = 3 }", "arc.zones.westside.attic",
     "unknown room 'attic'"),
    ("westside = { front-desk = 0, safe-room = 3 }", "arc.zones.westside.front-desk",
     "1 to 999"),
    ("westside = { front-desk = 3, safe-room = 3 }", "arc.zones.westside.front-desk",
     "given to two rooms"),
    ("westside = { front-desk = 3 }", "arc.zones.westside", "no zone for safe-room"),
])
def test_zone_mistakes_name_the_field(zones, field, words):
    found = [p for p in problems(GOOD + f"\n[arc.zones]\n{zones}\n") if f": {field}: " in p]
    assert found and words in found[0]
