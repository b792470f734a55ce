"""A TCP proxy a test can cut: in front of Redis, it makes the connection fail on cue.

`cut()` drops every open connection and refuses new ones (they are accepted and closed at
once) until `restore()`; `cut_after(n)` lets n more bytes through, in either direction, then
cuts in the middle of whatever is flowing: half a pipeline reaches Redis, or its replies are
lost after Redis has run the commands. `blackhole()` is the other kind of outage: a network
that drops packets. Connections are accepted but nothing is forwarded either way (data is
held, as TCP retransmits it) until `restore()`, when everything held goes through: a client
waits for its own timeout, not for a refusal.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class CuttableProxy:
    """Forwards 127.0.0.1:`port` to `target` until told to cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cuts = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._down = False
        self._budget: int | None = None
        self._black = False
        self._gate = threading.Condition(self._lock)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def __enter__(self) -> CuttableProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until `restore()`."""
        with self._lock:
            self._cut_locked()

    def cut_after(self, nbytes: int) -> None:
        """Cut once `nbytes` more bytes have passed (0: at the next byte)."""
        with self._lock:
            self._budget = nbytes

    def blackhole(self) -> None:
        """Stop forwarding anything (open connections and new ones) until `restore()`."""
        with self._lock:
            if not self._black and not self._down:
                self.cuts += 1
            self._black = True

    def restore(self) -> None:
        """Accept and forward connections again (and forget any armed `cut_after`); what a
        blackhole held goes through now."""
        with self._lock:
            self._down = False
            self._black = False
            self._budget = None
            self._gate.notify_all()

    @property
    def is_down(self) -> bool:
        return self._down

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._black = False
            self._gate.notify_all()
            self._cut_locked()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._server.close()
        self._acceptor.join(timeout=5)

    def _cut_locked(self) -> None:
        if not self._down:
            self.cuts += 1
        self._down = True
        self._budget = None
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            self._open.add(client)
            self._gate.wait_for(lambda: not self._black)  # a blackhole holds the connection
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._open.add(upstream)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                # One side hung up: hang up the other, so neither waits on a dead peer.
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                self._gate.wait_for(lambda: not self._black)  # held, as if retransmitted
                budget = self._budget
                if budget is not None:
                    if len(data) > budget:
                        with contextlib.suppress(OSError):
                            dst.sendall(data[:budget])
                        self._cut_locked()
                        return
                    self._budget = budget - len(data)
            try:
                dst.sendall(data)
            except OSError:
                return
