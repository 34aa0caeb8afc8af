"""The ``haven`` command. Each subcommand imports only what it needs, so a Pi
with just the ``device`` extra can run ``haven device``.

    haven hub            run a hub worker (MQTT -> Redis -> SMS)
    haven dashboard      serve the operator dashboard
    haven device run     run the button firmware on a Pi (selftest: check the device)
    haven demo           a whole system on private servers, with simulated devices
    haven press ID       press a simulated button of the running demo (--hold: emergency)
    haven alarm          list, acknowledge, resolve or cancel alarms; make a drill alarm real
    haven tell ID CMD    send a device locate, test or checkin_request
    haven branch ...     drill on/off, lone-worker on/off/auto for a branch
    haven check-config   validate a site config and report every problem
    haven arc test       send the monitoring centre a test event, print its answers
    haven provision ...  init a site (CA, broker, Redis), add/revoke/list devices
    haven user ...       dashboard users: add, remove, passwd, list
"""

from __future__ import annotations

import argparse
import logging
import sys

from hub.app.cliopts import REDIS_HELP, add_redis_option, unreachable

EXIT_CONFIG = 2


def _logging(level: str) -> None:
    """Log lines to stderr (the journal, under systemd). The format names no thread or
    process, so records do not gather them: ~5 µs less per line (a hub worker logs two
    or three per alarm)."""
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def cmd_hub(args) -> int:
    from hub.app.runner import run_hub
    from hub.config.settings import hub_settings
    run_hub(hub_settings(site=args.site, broker=args.broker, redis_url=args.redis,
                         topic_prefix=args.prefix, hub_id=args.hub_id,
                         metrics_port=args.metrics_port))
    return 0


def cmd_dashboard(args) -> int:
    from dashboard import create_app
    from dashboard.auth import load_secret_key
    from dashboard.serve import serve

    from hub.config.push_keys import push_keys_from_env
    from hub.config.settings import env_default, hub_settings
    from hub.config.site import load_site
    from hub.store.alarms import Store
    settings = hub_settings(site=args.site, redis_url=args.redis)
    state_dir = args.state_dir or env_default("HAVEN_STATE_DIR", "/var/lib/haven")
    try:
        secret_key = load_secret_key(env_default("HAVEN_DASHBOARD_SECRET", ""), state_dir)
    except ValueError as exc:
        print(f"haven dashboard: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    app = create_app(load_site(settings.site_path), Store.from_url(settings.redis),
                     demo_control_url=args.demo_control,
                     twilio_auth_token=settings.twilio.auth_token if settings.twilio else None,
                     public_url=settings.public_url, secret_key=secret_key,
                     push_keys=push_keys_from_env(),  # PushKeyError: one line, exit 1
                     plan_links=settings.plan_links)
    if settings.twilio and not settings.public_url:
        logging.getLogger("haven.dashboard").warning(
            "Twilio webhooks are served, but HAVEN_PUBLIC_URL is unset: set it to the URL "
            "Twilio reaches this dashboard at, or signatures cannot be checked behind a proxy")
    logging.getLogger("haven.dashboard").info("dashboard on http://%s:%d/", args.host, args.port)
    serve(app, args.host, args.port)
    return 0


def cmd_device(args) -> int:
    from device.config import load_device_config
    config = load_device_config(args.config)
    if args.device_command == "selftest":
        from device.selftest import run_selftest
        results = run_selftest(config)
        for check in results:
            print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
        return 0 if all(c.ok for c in results) else 1
    from device.run import run_device
    return run_device(config, keyboard=args.keyboard)


def cmd_demo(args) -> int:
    from hub.app.demo import run_demo
    return run_demo(site_path=args.site, port=args.port)


def cmd_press(args) -> int:
    from hub.app.demo import press
    return press(args.device, hold=args.hold, times=args.times, door=args.door)


def cmd_alarm(args) -> int:
    import time

    from hub.core.alarmref import resolve_alarm_id
    from hub.core.lifecycle import AlarmEvent, IllegalTransition
    from hub.config.settings import hub_settings
    from hub.store.alarms import Store
    store = Store.from_url(hub_settings(redis_url=args.redis).redis)
    if args.alarm_command == "list":
        for alarm in store.active_alarms():
            print(f"{alarm.id}  {alarm.state:<12} {alarm.kind:<14} {alarm.branch}/{alarm.room}"
                  f"  {alarm.device}{'  DRILL' if alarm.drill else ''}")
        return 0
    args.alarm_id = resolve_alarm_id(args.alarm_id, store.alarm_ids_starting)
    if args.alarm_command == "real":
        try:
            alarm = store.make_real(args.alarm_id, by=args.by, via="cli",
                                    now_ms=int(time.time() * 1000))
        except (KeyError, IllegalTransition) as exc:
            print(f"haven alarm real: {exc.args[0]}", file=sys.stderr)
            return 1
        print(f"alarm {alarm.id}: made REAL by {args.by}; the hub pages it now with the real "
              "policy (police wherever the policy has them)")
        return 0
    event = {"ack": AlarmEvent.ACKNOWLEDGE, "resolve": AlarmEvent.RESOLVE,
             "cancel": AlarmEvent.CANCEL_OPERATOR}[args.alarm_command]
    try:
        alarm = store.transition(args.alarm_id, event, by=args.by,
                                 now_ms=int(time.time() * 1000),
                                 reason=getattr(args, "reason", None))
    except (KeyError, IllegalTransition) as exc:
        print(f"haven alarm {args.alarm_command}: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"alarm {alarm.id}: {alarm.state} by {args.by}")
    return 0


def cmd_branch(args) -> int:
    import time

    from hub.core.drill import MAX_DRILL_MIN
    if args.switch == "drill" and args.state == "on" and not 1 <= args.minutes <= MAX_DRILL_MIN:
        print(f"haven branch drill: --minutes {args.minutes}: give 1 to {MAX_DRILL_MIN} "
              "(a drill ends by itself; start another if it must run longer)", file=sys.stderr)
        return 1
    from hub.config.settings import hub_settings
    from hub.store.alarms import Store
    settings = hub_settings(site=args.site, redis_url=args.redis)
    from hub.config.site import load_site
    site = load_site(settings.site_path)
    if args.branch not in site.branches:
        print(f"haven branch: unknown branch {args.branch!r}; known: {', '.join(site.branches)}",
              file=sys.stderr)
        return 1
    store = Store.from_url(settings.redis)
    now_ms = int(time.time() * 1000)
    if args.switch == "drill":
        until = now_ms + args.minutes * 60_000 if args.state == "on" else None
        store.branches.set_branch_switches(args.branch, by=args.by, now_ms=now_ms,
                                           drill_until_ms=until)
        detail = (f"on for {args.minutes} min: messages marked DRILL, police never called"
                  if until else "off")
        print(f"{args.branch}: drill {detail}")
    elif args.switch == "on-duty":
        contact = next((c for c in site.contacts if c.phone == args.phone
                        or c.name.lower().startswith(args.phone.lower())), None)
        if contact is None or args.branch not in contact.branches:
            print(f"haven branch on-duty: no contact {args.phone!r} at {args.branch}",
                  file=sys.stderr)
            return 1
        store.branches.set_override(args.branch, contact.phone, on_duty=args.state == "on",
                                    until_ms=now_ms + int(args.hours * 3600_000), by=args.by)
        print(f"{contact.name}: {'on' if args.state == 'on' else 'off'} duty at {args.branch} "
              f"for {args.hours:g} h")
    elif args.switch == "lone-worker":
        value = {"on": True, "off": False, "auto": None}[args.state]
        store.branches.set_branch_switches(args.branch, by=args.by, now_ms=now_ms,
                                           lone_worker=value)
        print(f"{args.branch}: lone worker {args.state}"
              f"{' (from the schedule)' if value is None else ''}")
    return 0


def cmd_tell(args) -> int:
    from hub.config.settings import hub_settings
    from hub.store.alarms import Store
    Store.from_url(hub_settings(redis_url=args.redis).redis).devices.queue_device_command(
        args.device, args.command_name)
    print(f"queued {args.command_name} for {args.device}; a hub worker sends it")
    return 0


def cmd_check_config(args) -> int:
    from hub.config.site import load_site
    site = load_site(args.site)
    print(f"{args.site}: OK: site {site.name!r}, {len(site.branches)} branches, "
          f"{sum(len(b.rooms) for b in site.branches.values())} rooms, "
          f"{(plans := sum(len(b.floors) for b in site.branches.values()))} floor "
          f"plan{'' if plans == 1 else 's'}, "
          f"{len(site.devices)} devices, {len(site.contacts)} contacts, "
          f"kinds {', '.join(site.kinds)}")
    return 0


def cmd_arc(args) -> int:
    from hub.arc.commission import report, run_test
    from hub.config.settings import hub_settings
    from hub.config.site import load_site
    text, status = report(run_test(load_site(hub_settings(site=args.site).site_path),
                                   branch=args.branch))
    print(text)
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="haven", description="Haven staff panic alarms.")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--redis", metavar="URL", default=None, help=REDIS_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    hub = sub.add_parser("hub", help="run a hub worker")
    hub.add_argument("action", nargs="?", choices=["run"], default="run",
                     help="'haven hub run' and 'haven hub' are the same")
    hub.add_argument("--site", "--config", dest="site", help="site config (env HAVEN_SITE)")
    hub.add_argument("--broker", help="MQTT broker host:port, or every broker of the site "
                     "comma-separated (env HAVEN_BROKER)")
    add_redis_option(hub)
    hub.add_argument("--prefix", help="MQTT topic prefix (env HAVEN_TOPIC_PREFIX)")
    hub.add_argument("--hub-id", help="MQTT client id of this worker (env HAVEN_HUB_ID)")
    hub.add_argument("--metrics-port", type=int,
                     help="serve Prometheus /metrics on 127.0.0.1:PORT, 0 = any free port "
                          "(env HAVEN_METRICS_PORT)")
    hub.set_defaults(func=cmd_hub)

    dash = sub.add_parser("dashboard", help="serve the operator dashboard")
    dash.add_argument("action", nargs="?", choices=["run"], default="run",
                      help="'haven dashboard run' and 'haven dashboard' are the same")
    dash.add_argument("--site", help="site config (env HAVEN_SITE)")
    add_redis_option(dash)
    dash.add_argument("--host", default="127.0.0.1",
                      help="address to listen on: 0.0.0.0 for every interface, behind a TLS "
                           "proxy (default 127.0.0.1: this machine only)")
    dash.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    dash.add_argument("--state-dir",
                      help="where the session key is kept (file dashboard-secret, made 0600 "
                           "if absent) unless HAVEN_DASHBOARD_SECRET is set "
                           "(env HAVEN_STATE_DIR, default /var/lib/haven)")
    dash.add_argument("--demo-control", help=argparse.SUPPRESS)
    dash.set_defaults(func=cmd_dashboard)

    dev = sub.add_parser("device", help="the button firmware: run it, or test the device")
    dev_sub = dev.add_subparsers(dest="device_command", required=True)
    run = dev_sub.add_parser("run", help="run the firmware (under systemd: Type=notify)")
    run.add_argument("--config", default="/etc/haven/device.toml")
    run.add_argument("--keyboard", action="store_true",
                     help="simulate the inputs with mock pins driven from the keyboard")
    test = dev_sub.add_parser("selftest", help="check pins, broker, TLS, clock and outbox")
    test.add_argument("--config", default="/etc/haven/device.toml")
    dev.set_defaults(func=cmd_device)

    demo = sub.add_parser("demo", help="run a whole demo system")
    demo.add_argument("--site", help="site config (default: the sample library system)")
    demo.add_argument("--port", type=int, default=8080,
                      help="dashboard port (a free one if taken)")
    demo.set_defaults(func=cmd_demo)

    press = sub.add_parser("press", help="press a simulated button of the running demo")
    press.add_argument("device", help="device id, e.g. main-circ-01")
    how = press.add_mutually_exclusive_group()
    how.add_argument("--hold", action="store_true", help="hold 2 s: an emergency alarm")
    how.add_argument("--times", type=int, default=1,
                     help="quick presses (a wearable: 3 = assist, 2 = cancel, 1 = test)")
    how.add_argument("--door", choices=["close", "open"],
                     help="a safe-room door contact: close (staff sheltering) or open")
    press.set_defaults(func=cmd_press)

    alarm = sub.add_parser("alarm", help="list, acknowledge, resolve or cancel alarms")
    add_redis_option(alarm)
    alarm_sub = alarm.add_subparsers(dest="alarm_command", required=True)
    add_redis_option(alarm_sub.add_parser("list", help="active alarms, newest first"))
    for name, text in (("ack", "a person is responding: the device shows help is coming"),
                       ("resolve", "the situation is over (needs --reason: the outcome)"),
                       ("cancel", "a false alarm (needs --reason)"),
                       ("real", "a drill alarm is not a drill: page it as real (police "
                                "included) at once")):
        action = alarm_sub.add_parser(name, help=text)
        action.add_argument("alarm_id", help="the alarm id, any unique start of it, or the "
                                             "Ref of a text (86bce38e-2)")
        add_redis_option(action)
        action.add_argument("--by", required=True, help="who does it (name or role)")
        if name in ("resolve", "cancel"):
            action.add_argument("--reason", required=True)
    alarm.set_defaults(func=cmd_alarm)

    branch = sub.add_parser("branch", help="switch a branch's drill or lone-worker mode")
    branch.add_argument("--site", help="site config (env HAVEN_SITE)")
    add_redis_option(branch)
    branch_sub = branch.add_subparsers(dest="switch", required=True)
    drill = branch_sub.add_parser("drill", help="a rehearsal: real flow, DRILL messages, "
                                                "no police")
    drill.add_argument("branch")
    drill.add_argument("state", choices=["on", "off"])
    drill.add_argument("--minutes", type=int, default=30,
                       help="the drill ends by itself after this many minutes (at most "
                       "12 hours)")
    drill.add_argument("--by", required=True)
    add_redis_option(drill)
    drill.add_argument("--site", default=argparse.SUPPRESS, help="site config (env HAVEN_SITE)")
    duty = branch_sub.add_parser("on-duty", help="put a contact on or off duty for a while")
    duty.add_argument("branch")
    duty.add_argument("phone", help="the contact's phone, or the start of their name")
    duty.add_argument("state", choices=["on", "off"])
    duty.add_argument("--hours", type=float, default=4)
    duty.add_argument("--by", required=True)
    add_redis_option(duty)
    duty.add_argument("--site", default=argparse.SUPPRESS, help="site config (env HAVEN_SITE)")
    lone = branch_sub.add_parser("lone-worker", help="alarms go to police first")
    lone.add_argument("branch")
    lone.add_argument("state", choices=["on", "off", "auto"])
    lone.add_argument("--by", required=True)
    add_redis_option(lone)
    lone.add_argument("--site", default=argparse.SUPPRESS, help="site config (env HAVEN_SITE)")
    branch.set_defaults(func=cmd_branch)

    tell = sub.add_parser("tell", help="send a device a command (locate, test, checkin_request)")
    add_redis_option(tell)
    tell.add_argument("device")
    tell.add_argument("command_name", choices=["locate", "test", "checkin_request"])
    tell.set_defaults(func=cmd_tell)

    check = sub.add_parser("check-config", help="validate a site config")
    check.add_argument("site")
    check.set_defaults(func=cmd_check_config)

    arc = sub.add_parser("arc", help="the monitoring centre (SIA DC-09) link")
    arc_sub = arc.add_subparsers(dest="arc_command", required=True)
    arc_test = arc_sub.add_parser("test", help="send each receiver a test event and print "
                                               "its answer (commissioning)")
    arc_test.add_argument("--site", help="site config (env HAVEN_SITE)")
    arc_test.add_argument("--branch", help="only this branch's account")
    arc.set_defaults(func=cmd_arc)

    from hub.provision.cli import register as register_provision
    register_provision(sub)
    from hub.app.usercli import add_parser as register_user
    register_user(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from device.config import DeviceConfigError

    from hub.errors import ConfigError, HubError
    args = build_parser().parse_args(argv)
    _logging(args.log_level)
    try:
        return args.func(args)
    except (ConfigError, DeviceConfigError) as exc:
        print(f"haven {args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HubError as exc:
        print(f"haven {_said(args)}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        line = unreachable(exc)
        if line is None:
            raise
        print(f"haven {_said(args)}: {line}", file=sys.stderr)
        return 1


def _said(args: argparse.Namespace) -> str:
    """The command as typed, for error lines: ``alarm resolve``, ``branch drill``."""
    verb = next((getattr(args, name) for name in ("alarm_command", "switch", "user_command",
                                                  "device_command", "provision_command")
                 if getattr(args, name, None)), None)
    return f"{args.command} {verb}" if verb else args.command


if __name__ == "__main__":
    sys.exit(main())
