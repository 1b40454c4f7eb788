"""Every open connection of one listener: the connection cap and draining."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Connection(Protocol):
    def drain(self) -> None:
        """Answer what is in flight, then close; close now if idle."""

    def abort(self) -> None: ...


class Connections:
    """Every open connection of one listener, for the cap and for draining."""

    def __init__(self, limit: int, on_refuse: Callable[[], object] = lambda: None) -> None:
        self.limit = limit
        self._on_refuse = on_refuse
        self.open: set[Connection] = set()
        self.draining = False
        self.refused = 0
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, conn: Connection) -> bool:
        if self.draining or len(self.open) >= self.limit:
            self.refused += 1
            self._on_refuse()
            return False
        self.open.add(conn)
        self._empty.clear()
        return True

    def discard(self, conn: Connection) -> None:
        self.open.discard(conn)
        if not self.open:
            self._empty.set()

    def drain(self) -> None:
        """Answer what is in flight, then close; idle connections close now."""
        self.draining = True
        for conn in list(self.open):
            conn.drain()

    async def wait_closed(self) -> None:
        await self._empty.wait()

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.abort()

    def __repr__(self) -> str:
        return (
            f"<Connections open={len(self.open)} refused={self.refused} draining={self.draining}>"
        )
