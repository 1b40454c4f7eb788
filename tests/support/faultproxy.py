"""A TCP proxy in front of Redis that can drop one reply: the lost-reply fault.

Armed, it forwards the next client command containing `trigger` to Redis,
lets Redis execute it, and then closes the client's connection instead of
passing the reply on, exactly as a network blip after the write would.
"""

from __future__ import annotations

import select
import socket
import threading

from tests.support.processes import free_port


class DropReplyProxy:
    def __init__(self, upstream_port: int, trigger: bytes) -> None:
        self.upstream_port = upstream_port
        self.trigger = trigger
        self.port = free_port()
        self.armed = threading.Event()
        self.dropped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        """One thread per connection pair, so 'the reply to that command' is unambiguous."""
        swallow_reply = False
        with client, upstream:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 30)
                if not readable:
                    return
                if client in readable:
                    data = _recv(client)
                    if not data:
                        return
                    if self.armed.is_set() and self.trigger in data:
                        self.armed.clear()
                        swallow_reply = True
                    upstream.sendall(data)
                if upstream in readable:
                    data = _recv(upstream)
                    if not data:
                        return
                    if swallow_reply:
                        self.dropped.set()
                        return  # closes the client side: the reply is lost
                    client.sendall(data)

    def close(self) -> None:
        self._listener.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""
