"""Serve the dashboard with waitress (pure Python, threaded, fine behind nginx).

Each open /events stream holds one waitress thread for as long as the browser
keeps the board open, so ``threads`` must exceed the number of open dashboards
plus a few for page loads and snapshots. Waitress 3 sends every write at once
(``send_bytes=1``), so events are not held back in a buffer. Behind a proxy,
keep its buffering off for /events (the app sends ``X-Accel-Buffering: no``).

In a thread (tests, the demo)::

    server = make_server(app, "127.0.0.1", 0)       # port 0: any free port
    threading.Thread(target=server.run).start()
    ...                                              # http://127.0.0.1:{server.effective_port}/
    stop(server)                                     # the run loop returns
"""

from __future__ import annotations

import logging
import threading

from flask import Flask
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer

log = logging.getLogger(__name__)

#: Worker threads: open dashboards + headroom for page loads.
DEFAULT_THREADS = 64

Server = BaseWSGIServer | MultiSocketServer


def make_server(app: Flask, host: str, port: int, threads: int = DEFAULT_THREADS) -> Server:
    """A bound, not yet running waitress server for ``app``.

    Run it with ``server.run()`` (blocking); stop it from another thread with
    :func:`stop`. A single address has ``server.effective_host`` and
    ``server.effective_port``; a host name with several addresses gives a
    ``MultiSocketServer`` listing them in ``server.effective_listen``.
    """
    return create_server(app, host=host, port=port, threads=threads, ident="haven-dashboard")


def serve(app: Flask, host: str, port: int, *, threads: int = DEFAULT_THREADS) -> None:
    """Serve ``app`` on ``host:port`` until interrupted (Ctrl-C or SIGINT)."""
    server = make_server(app, host, port, threads)
    addresses = getattr(server, "effective_listen", None) or \
        [(server.effective_host, server.effective_port)]
    log.info("dashboard on %s (%d threads)",
             ", ".join(f"http://{h}:{p}/" for h, p in addresses), threads)
    server.run()  # returns on KeyboardInterrupt, after stopping its worker threads


def stop(server: Server, timeout: float = 5.0) -> None:
    """Stop a server whose ``run()`` loop runs in another thread.

    Closes the listening sockets and every open connection inside the loop's
    own thread, so the loop returns; then waits up to ``timeout`` seconds for
    the worker threads. An event stream's thread ends at its next write (at
    most one heartbeat later), closing its Redis subscription.
    """
    sockets = server.map if isinstance(server, MultiSocketServer) else server._map
    done = threading.Event()

    def close_all() -> None:
        for dispatcher in list(sockets.values()):
            if isinstance(dispatcher, HTTPChannel):
                dispatcher.handle_close()  # marks it disconnected for the worker thread
            else:
                dispatcher.close()
        sockets.clear()
        done.set()

    listeners = [d for d in list(sockets.values()) if isinstance(d, BaseWSGIServer)]
    if listeners:
        listeners[0].trigger.pull_trigger(close_all)
    if not done.wait(timeout):  # the loop is not running: no thread to race with
        close_all()
    server.task_dispatcher.shutdown(timeout=timeout)
