"""``haven provision`` on disk: what it writes, with which modes, what it refuses, and
what it never prints. Plus Redis started from the generated config."""

from __future__ import annotations

import difflib
import io
import socket
import stat
import tarfile
import tomllib
from pathlib import Path

import pytest
import redis

from hub.app.cli import main
from hub.provision.files import SiteDir
from hub.provision.local import start_site_redis
from hub.config.site import load_site

EXAMPLE_SITE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "site.toml"


def init(root: Path, *extra: str) -> int:
    return main(["provision", "init", "--site", str(root), "--site-file", str(EXAMPLE_SITE),
                 "--broker-host", "haven-hub.local", "--mqtt-port", "8883", *extra])


def provision(root: Path, *args: str) -> int:
    return main(["provision", "device", "--site", str(root), "--no-reload", *args])


@pytest.fixture
def site(tmp_path) -> SiteDir:
    assert init(tmp_path / "site") == 0
    return SiteDir(tmp_path / "site")


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def env_of(site: SiteDir) -> dict[str, str]:
    return dict(line.split("=", 1) for line in site.hub_env.read_text().splitlines()
                if line and not line.startswith("#"))


def test_init_copies_the_site_files_floor_plans_so_the_copy_loads(site):
    plan = site.site_file.parent / "plans" / "main-ground.svg"
    assert plan.read_bytes() == (EXAMPLE_SITE.parent / "plans" / "main-ground.svg").read_bytes()
    assert load_site(site.site_file).branches["main"].floors[0].plan == plan.resolve()


def test_init_keeps_secrets_private_and_never_prints_them(tmp_path, capsys):
    assert init(tmp_path / "s") == 0
    site = SiteDir(tmp_path / "s")
    out = capsys.readouterr()
    password = env_of(site)["HAVEN_REDIS_URL"].split(":")[2].split("@")[0]
    assert len(password) >= 40
    for secret in (password, "PRIVATE KEY"):
        assert secret not in out.out + out.err
    assert mode(site.ca_key) == 0o600 and mode(site.hub_env) == 0o600
    for private in (site.server_key, site.redis_conf, site.hub_key("haven-hub")):
        assert mode(private) == 0o640
    assert f"requirepass {password}" in site.redis_conf.read_text()
    conf = site.mosquitto_conf.read_text()
    for line in ("allow_anonymous false", "max_queued_messages 0", "set_tcp_nodelay true",
                 "require_certificate true", "use_identity_as_username true",
                 f"crlfile {site.crl}", f"acl_file {site.acl}", "listener 8883 0.0.0.0"):
        assert line in conf.splitlines()
    assert [line for line in conf.splitlines() if line.startswith("listener")] == [
        "listener 8883 0.0.0.0"]  # the TLS one only
    assert load_site(site.site_file).name == "Riverside Public Library"


def test_a_provisioned_device_gets_a_bundle_an_acl_block_and_a_site_entry(site, capsys):
    original = site.site_file.read_text()
    assert provision(site.root, "--branch", "westside", "--room", "front-desk", "--kind",
                     "wearable", "--holder", 'Kim "K" Park') == 0
    assert "PRIVATE KEY" not in capsys.readouterr().out
    device_id = "westside-front-desk-01"
    # Only lines were added to the site file: every comment and blank line is still there.
    diff = [line for line in difflib.ndiff(original.splitlines(), site.site_file.read_text()
                                           .splitlines()) if line[:1] in "+-"]
    assert all(line.startswith("+ ") for line in diff)
    assert load_site(site.site_file).devices[device_id].holder == 'Kim "K" Park'
    assert f"user {device_id}\ntopic write haven/v1/dev/{device_id}/alarm" in site.acl.read_text()
    bundle = site.bundle(device_id)
    assert mode(bundle) == 0o600
    with tarfile.open(bundle) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"device.toml", "ca.crt", "device.crt", "device.key"}
        assert stat.S_IMODE(members["device.key"].mode) == 0o600
        config = tomllib.loads(tar.extractfile("device.toml").read().decode())
    assert config["device"]["id"] == device_id
    assert config["broker"] == {"host": "haven-hub.local", "port": 8883,
                                "topic_prefix": "haven/v1", "ca_file": "/etc/haven/ca.crt",
                                "cert_file": "/etc/haven/device.crt",
                                "key_file": "/etc/haven/device.key"}


def test_revoke_puts_the_site_file_back_byte_for_byte(site):
    original = site.site_file.read_text()
    assert provision(site.root, "--branch", "main", "--room", "safe-room", "--kind",
                     "safe_room", "--id", "main-safe-02") == 0
    assert main(["provision", "revoke", "main-safe-02", "--site", str(site.root),
                 "--no-reload"]) == 0
    assert site.site_file.read_text() == original
    assert "main-safe-02" not in site.acl.read_text()
    assert not site.device_dir("main-safe-02").exists()
    registry = (site.root / "pki" / "issued.json").read_text()
    assert '"revoked": [\n        {' in registry


def test_list_shows_each_device_with_its_room_and_state(site, capsys):
    assert provision(site.root, "--branch", "main", "--room", "workroom", "--kind", "wall",
                     "--id", "main-work-02") == 0
    capsys.readouterr()
    assert main(["provision", "list", "--site", str(site.root),
                 "--redis", "redis://127.0.0.1:1/0"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "main/workroom" in rows["main-work-02"] and "until 20" in rows["main-work-02"]
    assert "none (not provisioned)" in rows["main-circ-01"]


@pytest.mark.parametrize("args, message", [
    (["--branch", "nowhere", "--room", "x", "--kind", "wall"], "--branch: unknown branch"),
    (["--branch", "main", "--room", "attic", "--kind", "wall"], "--room: unknown room 'attic'"),
    (["--branch", "main", "--room", "children", "--kind", "wall", "--id", "main-circ-01"],
     "device 'main-circ-01' already exists"),
    (["--branch", "main", "--room", "children", "--kind", "wall", "--id", "bad/id"],
     "--id: 'bad/id' must be"),
])
def test_bad_input_is_refused_with_the_field_named_and_nothing_written(site, capsys, args,
                                                                       message):
    before = snapshot(site.root)
    assert provision(site.root, *args) == 2
    assert message in capsys.readouterr().err
    assert snapshot(site.root) == before


def test_a_duplicate_provisioned_device_is_refused(site, capsys):
    args = ["--branch", "main", "--room", "children", "--kind", "wall", "--id", "main-kid-02"]
    assert provision(site.root, *args) == 0
    before = snapshot(site.root)
    assert provision(site.root, *args) == 2
    assert "--id: 'main-kid-02' already has a certificate" in capsys.readouterr().err
    assert snapshot(site.root) == before


def test_a_missing_ca_is_named_with_the_fix(site, capsys):
    site.ca_key.unlink()
    before = snapshot(site.root)
    assert provision(site.root, "--branch", "main", "--room", "children", "--kind", "wall") == 2
    err = capsys.readouterr().err
    assert f"{site.ca_key}: missing" in err and "haven provision init" in err
    assert snapshot(site.root) == before


def test_init_refuses_to_replace_a_site_ca(site, capsys):
    before = snapshot(site.root)
    assert main(["provision", "init", "--site", str(site.root), "--broker-host", "x"]) == 2
    assert "already initialised" in capsys.readouterr().err
    assert snapshot(site.root) == before


def test_init_refuses_a_broken_site_file_and_writes_nothing(tmp_path, capsys):
    broken = tmp_path / "broken.toml"
    broken.write_text(EXAMPLE_SITE.read_text().replace('room = "reference"', 'room = "attic"'))
    assert main(["provision", "init", "--site", str(tmp_path / "s"), "--site-file", str(broken),
                 "--broker-host", "x"]) == 2
    assert "unknown room 'attic'" in capsys.readouterr().err
    assert list((tmp_path / "s").iterdir()) == []


def test_redis_from_the_generated_config_refuses_a_client_without_the_password(site, tmp_path):
    server = start_site_redis(site.root, tmp_path / "redis")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"PING\r\nSET haven:x 1\r\n")  # what any client without it gets
            answer = b""
            while answer.count(b"\r\n") < 2:
                answer += raw.recv(256)
        assert answer.splitlines() == [b"-NOAUTH Authentication required."] * 2
        url = env_of(site)["HAVEN_REDIS_URL"].replace(":6379/", f":{server.port}/")
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        server.stop()


def test_bundle_is_a_valid_tar_gz(site):
    assert provision(site.root, "--branch", "main", "--room", "children", "--kind", "wall") == 0
    data = site.bundle("main-children-01").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert b"BEGIN CERTIFICATE" in tar.extractfile("device.crt").read()


def test_provision_acl_outside_a_site_names_the_fix_and_writes_nothing(tmp_path, capsys):
    assert main(["provision", "acl", "--site", str(tmp_path), "--no-reload"]) == 2
    err = capsys.readouterr().err
    assert "haven provision acl" in err and "not a provisioned site directory" in err
    assert list(tmp_path.iterdir()) == []


def test_provision_acl_keeps_every_identity_and_adds_what_this_version_reads(site, capsys):
    """An ACL from before firmware 0.3 (no heartbeat lines) is rewritten with them; the
    device and hub blocks are otherwise the same, and a second run changes nothing."""
    assert provision(site.root, "--branch", "main", "--room", "children", "--kind", "wall",
                     "--id", "main-kid-03") == 0
    capsys.readouterr()
    current = site.acl.read_text()
    old = "".join(line for line in current.splitlines(keepends=True)
                  if not line.rstrip().endswith("/heartbeat"))
    site.acl.write_text(old)
    assert main(["provision", "acl", "--site", str(site.root), "--no-reload"]) == 0
    assert "rewritten for 1 hub(s) and 1 device(s)" in capsys.readouterr().out
    assert site.acl.read_text() == current
    assert "topic write haven/v1/dev/main-kid-03/heartbeat" in current
    assert "topic read haven/v1/dev/+/heartbeat" in current
    assert main(["provision", "acl", "--site", str(site.root), "--no-reload"]) == 0
    assert "already up to date" in capsys.readouterr().out
