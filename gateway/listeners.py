"""The public port's listening sockets, bound before the I/O stack is imported.

A single gateway process binds its public port right after reading its config
and only then imports Redis, metrics and the rest (0.2-0.3 s of imports).
Connections that arrive meanwhile wait in the kernel's accept queue and are
answered once the gateway runs, instead of being refused: after a crash or a
`kill -9`, a provider sees a slower answer, not a failed delivery that counts
toward its disabling the endpoint. Nothing is answered before the gateway is
ready; a 200 still means durably queued. Workers (`workers: N`) bind theirs
only once loaded: with SO_REUSEPORT an early listener would take its share
of connections before it could serve them (README, "Restart time against
the provider's disable rule").

Bound as asyncio's `loop.create_server(host, port)` binds: one socket per
address the host resolves to, SO_REUSEADDR, IPv6 sockets IPv6-only. Standard
library only, so importing this costs nothing.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import Listen

BACKLOG = 2048  # connections the kernel holds unaccepted (a burst, or the start-up)


def bind(where: Listen, reuse_port: bool = False) -> list[socket.socket]:
    """Listening, non-blocking sockets for `where`; OSError names the address."""
    infos = socket.getaddrinfo(
        where.host or None, where.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            _bind_one(sock, address, reuse_port)
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


def _bind_one(sock: socket.socket, address: tuple[Any, ...], reuse_port: bool) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind(address)
    except OSError as exc:  # asyncio's wording, so the log line stays the same
        message = f"error while attempting to bind on address {address!r}: {exc.strerror}"
        raise OSError(exc.errno, message) from None
    sock.listen(BACKLOG)
    sock.setblocking(False)
