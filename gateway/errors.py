"""The project's exception families, each translated once at its boundary.

Rejections carry the HTTP status they map to, so the listener never decides
a status code by inspecting an exception's type.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, reported as one line naming the key path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class Rejection(Exception):
    """A request the gateway refuses: a 4xx with a short JSON reason."""

    status: int = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class StoreUnavailable(Exception):
    """The store did not answer in time or refused; nothing was acked."""
