"""A `workers: N` gateway's workers, as its log tells them (worker_started lines)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.support.processes import GatewayProcess


@dataclass(frozen=True)
class Worker:
    index: int
    pid: int
    admin_socket: str


def events(gw: GatewayProcess, name: str) -> list[dict[str, object]]:
    """The gateway's log lines (JSON) of one event, in order."""
    lines = [json.loads(line) for line in gw.logs().splitlines() if f'"{name}"' in line]
    return [doc for doc in lines if doc.get("event") == name]


def workers(gw: GatewayProcess) -> dict[int, Worker]:
    """The latest `worker_started` line of each worker in the gateway's log."""
    found: dict[int, Worker] = {}
    for doc in events(gw, "worker_started"):
        index, pid, path = doc["worker"], doc["pid"], doc["admin_socket"]
        assert isinstance(index, int)
        assert isinstance(pid, int)
        assert isinstance(path, str)
        found[index] = Worker(index, pid, path)
    return found
