"""A TCP relay on loopback whose line can be cut: a device's network, under test control.

``TcpRelay(target_port).start()`` listens on its own free port and relays each
connection to ``127.0.0.1:target_port``. :meth:`TcpRelay.cut` resets every relayed
connection and refuses new ones (the device's Wi-Fi drops); :meth:`TcpRelay.restore`
listens again on the same port.
"""

from __future__ import annotations

import socket
import threading

from hub.app.localservices import free_port


class TcpRelay:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self.connections = 0  # accepted so far

    def start(self) -> "TcpRelay":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        """Reset every relayed connection and stop listening (connections refused)."""
        with self._lock:
            listener, self._listener = self._listener, None
            socks, self._socks = list(self._socks), set()
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            listener.close()
        for sock in socks:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                sock.close()  # linger 0: RST, like a dropped link noticed by the stack
            except OSError:
                pass

    def restore(self) -> None:
        self.start()

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._socks |= {client, upstream}
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
