"""A TCP forwarder for tests: one address forwards to another, and can be cut.

Used to put a service that listens on loopback (PostgreSQL, Redis, the simulator) at an
address another network namespace reaches, and to make a service unreachable for a
while (`outage`): every open connection is reset and new ones are refused, which is
what the application's processes see when the server stops.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator


class TcpProxy:
    """Forwards connections made to (listen_host, listen_port) to (target_host, target_port).

    Port 0 picks a free one (see `port`). `start()` serves on a background thread."""

    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:  # fmt: skip
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.port = listen_port
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._down = threading.Event()
        self._closed = threading.Event()
        self.connections = 0  # accepted and forwarded, for tests that count them

    def start(self) -> TcpProxy:
        self._open_listener()
        threading.Thread(target=self._accept_loop, name="tcpproxy-accept", daemon=True).start()
        return self

    def _open_listener(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(256)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            listener = self._listener
            if listener is None:  # down: nothing listens, so connecting is refused
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.add((client, upstream))
                self.connections += 1
            threading.Thread(
                target=self._pump, args=(client, upstream), name="tcpproxy-pump", daemon=True
            ).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while not self._closed.is_set():
                for key, _ in selector.select(timeout=0.5):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            self._drop((a, b))

    def _drop(self, pair: tuple[socket.socket, socket.socket]) -> None:
        with self._lock:
            self._pairs.discard(pair)
        for sock in pair:
            with contextlib.suppress(OSError):
                # A reset, not a polite close: as when the server process is killed.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()

    def cut(self) -> None:
        """Reset every open connection (new ones are still accepted)."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)

    def down(self) -> None:
        """Stop listening and reset every connection: the service is gone."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.cut()

    def up(self) -> None:
        if self._listener is None:
            self._open_listener()

    @contextlib.contextmanager
    def outage(self, seconds: float) -> Iterator[None]:
        """Down for `seconds` (the body runs meanwhile), then up again."""
        started = time.monotonic()
        self.down()
        try:
            yield
        finally:
            remaining = seconds - (time.monotonic() - started)
            if remaining > 0:
                self._closed.wait(remaining)
            self.up()

    def close(self) -> None:
        self._closed.set()
        self.down()
