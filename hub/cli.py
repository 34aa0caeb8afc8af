"""The ``haven`` command. Each subcommand imports only what it needs, so a Pi
with just the ``device`` extra can run ``haven device``.

    haven hub            run a hub worker (MQTT -> Redis -> SMS)
    haven dashboard      serve the operator dashboard
    haven device         run the button firmware on a Pi
    haven demo           a whole system on private servers, with simulated devices
    haven press ID       press a simulated button of the running demo (--hold: emergency)
    haven check-config   validate a site config and report every problem
"""

from __future__ import annotations

import argparse
import logging
import sys

EXIT_CONFIG = 2


def _logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def cmd_hub(args) -> int:
    from .runner import run_hub
    from .settings import hub_settings
    run_hub(hub_settings(site=args.site, broker=args.broker, redis_url=args.redis,
                         topic_prefix=args.prefix, hub_id=args.hub_id))
    return 0


def cmd_dashboard(args) -> int:
    from dashboard import create_app
    from dashboard.serve import serve

    from .settings import hub_settings
    from .site import load_site
    from .store import Store
    settings = hub_settings(site=args.site, redis_url=args.redis)
    app = create_app(load_site(settings.site_path), Store.from_url(settings.redis_url),
                     demo_control_url=args.demo_control)
    logging.getLogger("haven.dashboard").info("dashboard on http://%s:%d/", args.host, args.port)
    serve(app, args.host, args.port)
    return 0


def cmd_device(args) -> int:
    import signal
    import threading

    from device.config import load_device_config
    from device.firmware import DeviceApp
    app = DeviceApp(load_device_config(args.config))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    app.start()
    done.wait()
    app.stop()
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(site_path=args.site, port=args.port)


def cmd_press(args) -> int:
    from .demo import press
    return press(args.device, hold=args.hold)


def cmd_check_config(args) -> int:
    from .site import load_site
    site = load_site(args.site)
    print(f"{args.site}: OK: site {site.name!r}, {len(site.branches)} branches, "
          f"{sum(len(b.rooms) for b in site.branches.values())} rooms, "
          f"{len(site.devices)} devices, {len(site.contacts)} contacts, "
          f"kinds {', '.join(site.kinds)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="haven", description="Haven staff panic alarms.")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)

    hub = sub.add_parser("hub", help="run a hub worker")
    hub.add_argument("--site", help="site config (env HAVEN_SITE)")
    hub.add_argument("--broker", help="MQTT broker host:port (env HAVEN_BROKER)")
    hub.add_argument("--redis", help="Redis URL (env HAVEN_REDIS_URL)")
    hub.add_argument("--prefix", help="MQTT topic prefix (env HAVEN_TOPIC_PREFIX)")
    hub.add_argument("--hub-id", help="MQTT client id of this worker (env HAVEN_HUB_ID)")
    hub.set_defaults(func=cmd_hub)

    dash = sub.add_parser("dashboard", help="serve the operator dashboard")
    dash.add_argument("--site", help="site config (env HAVEN_SITE)")
    dash.add_argument("--redis", help="Redis URL (env HAVEN_REDIS_URL)")
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8080)
    dash.add_argument("--demo-control", help=argparse.SUPPRESS)
    dash.set_defaults(func=cmd_dashboard)

    dev = sub.add_parser("device", help="run the button firmware")
    dev.add_argument("--config", default="/etc/haven/device.toml")
    dev.set_defaults(func=cmd_device)

    demo = sub.add_parser("demo", help="run a whole demo system")
    demo.add_argument("--site", help="site config (default: the sample library system)")
    demo.add_argument("--port", type=int, default=8080,
                      help="dashboard port (a free one if taken)")
    demo.set_defaults(func=cmd_demo)

    press = sub.add_parser("press", help="press a simulated button of the running demo")
    press.add_argument("device", help="device id, e.g. main-circ-01")
    press.add_argument("--hold", action="store_true", help="hold 2 s: an emergency alarm")
    press.set_defaults(func=cmd_press)

    check = sub.add_parser("check-config", help="validate a site config")
    check.add_argument("site")
    check.set_defaults(func=cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    from device.config import DeviceConfigError

    from .errors import ConfigError, HubError
    args = build_parser().parse_args(argv)
    _logging(args.log_level)
    try:
        return args.func(args)
    except (ConfigError, DeviceConfigError) as exc:
        print(f"haven {args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HubError as exc:
        print(f"haven {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
