"""Which targets an event goes to: routes by source and event-type pattern."""

from __future__ import annotations

from fnmatch import fnmatchcase

from gateway.config import RouteConfig

_CACHE_LIMIT = 1024  # event types come from the sender: keep the memo bounded


class Routes:
    """Pure lookup from (source, event type) to a tuple of target names."""

    def __init__(self, routes: tuple[RouteConfig, ...], unrouted: str | None) -> None:
        self._routes = routes
        self._fallback: tuple[str, ...] = (unrouted,) if unrouted else ()
        self._memo: dict[tuple[str, str], tuple[tuple[str, ...], bool]] = {}

    def targets(self, source: str, event_type: str) -> tuple[tuple[str, ...], bool]:
        """The targets, and whether any route matched (False: unrouted)."""
        found = self._memo.get((source, event_type))
        if found is None:
            found = self._match(source, event_type)
            if len(self._memo) >= _CACHE_LIMIT:
                self._memo.clear()
            self._memo[(source, event_type)] = found
        return found

    def _match(self, source: str, event_type: str) -> tuple[tuple[str, ...], bool]:
        names: list[str] = []
        for route in self._routes:
            if route.source != source:
                continue
            if any(fnmatchcase(event_type, pattern) for pattern in route.events):
                names += [t for t in route.targets if t not in names]
        if names:
            return tuple(names), True
        return self._fallback, False
