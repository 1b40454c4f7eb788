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
    """A request the gateway refuses: a 4xx with a short JSON reason.

    `reason` is for the sender (it names the problem); `code` is a short,
    bounded machine word for a metric label, e.g. "bad_signature".
    """

    status: int = 400
    code: str = "invalid_payload"

    def __init__(self, reason: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class StoreUnavailable(Exception):
    """The store did not answer in time or refused; nothing was acked."""
