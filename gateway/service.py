"""Lifecycle: build the parts, listen, and drain on SIGTERM/SIGINT.

Shutdown order: readiness turns 503 first (so Kubernetes stops routing), the
listener stops accepting, requests in flight get their answers (a 200 only
once persisted), keep-alive connections close, and the process exits 0 within
the grace. A second signal skips the wait.

As worker i of `workers: N > 1` (gateway.workers) the same gateway binds the
public port with SO_REUSEPORT beside its siblings, serves its admin listener
on a private unix socket for the supervisor, records metrics into the
supervisor's multiprocess files, and has its own forwarder consumer name
("<name>-w<i>") and spool file (gateway.spool_files).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

import gateway
import gateway.build
from gateway import listeners
from gateway.admin import AdminRouter, store_readiness
from gateway.admit import AdmitBatcher
from gateway.config import Config, Limits, Listen, redacted, risks
from gateway.endpoints import Router
from gateway.errors import StoreUnavailable
from gateway.forwarder import BLOCK_MS, Forwarder, consumer_name
from gateway.ingest import ClientPolicy, IngestRouter, SourceEndpoint, Tokens
from gateway.metrics import Metrics
from gateway.protocol import Connections, HttpProtocol
from gateway.routing import Routes
from gateway.spool_files import spool_file, warn_of_stranded_spools
from gateway.store import DeliveryStore, Store, sqlite_path
from gateway.store.sqlite import SqliteStore
from gateway.tls import ReloadingCertificate

if TYPE_CHECKING:
    # Imported where a Redis store is built: redis-py is the gateway's largest import
    # (README "What the numbers say"), which a gateway on the SQLite store never needs.
    from gateway.spool import SpoolingStore
    from gateway.store.redis import RedisStore

log = structlog.get_logger("gateway")

_ADMIN_CONNECTIONS = 64  # probes and scrapes only
_STARTUP_CHECK_TIMEOUT = 2.0
_SWEEP_INTERVAL = 60.0  # seconds between deletions of expired dedup markers (SQLite)


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """This gateway is worker `index` of a supervisor (gateway.workers)."""

    index: int
    admin_socket: str  # its admin listener, for the supervisor only


class Gateway:
    def __init__(
        self,
        config: Config,
        worker: WorkerRole | None = None,
        public: list[socket.socket] | None = None,  # listeners.bind(config.listen), done
    ) -> None:
        if worker is not None:
            consumer = consumer_name(config.forwarder, worker.index)
            config = replace(config, forwarder=replace(config.forwarder, consumer=consumer))
        self.config = config
        self.worker = worker
        self._bound = public
        self.metrics = Metrics(worker=None if worker is None else worker.index)
        admit_store, self.delivery_store = _stores(config)
        self.store: Store = admit_store
        self.spooling: SpoolingStore | None = None
        if isinstance(admit_store, SqliteStore):
            self.metrics.set_store_mode("sqlite")
        elif config.store.spool.enabled:
            self.spooling = self.store = self._spooling(admit_store)
        else:
            self.metrics.set_store_mode("redis")
        self.batcher = AdmitBatcher(self.store, config.store.admit_deadline, self.metrics)
        self.stopping = asyncio.Event()
        routes = Routes(config.routes, config.unrouted)
        tokens = Tokens()
        clients = ClientPolicy(config.clients)
        endpoints = [
            SourceEndpoint(s, routes, self.batcher, self.metrics.source(s.name), tokens, clients)
            for s in config.sources
        ]
        self.ingest = IngestRouter(endpoints, self.metrics)
        self.admin = AdminRouter(
            self.metrics.exposition, store_readiness(self.store.ping), self.stopping.is_set
        )
        refused = self.metrics.connections_refused.inc
        self.connections = Connections(config.limits.max_connections, refused)
        self.admin_connections = Connections(_ADMIN_CONNECTIONS)
        self._tasks: set[asyncio.Task[None]] = set()
        self.certificate: ReloadingCertificate | None = None
        if config.listen.tls_cert:
            self.certificate = ReloadingCertificate(config.listen.tls_cert, config.listen.tls_key)
        self.forwarder: Forwarder | None = None
        if self.delivery_store is not None:
            self.forwarder = Forwarder(
                config.targets, config.sources, self.delivery_store, config.forwarder, self.metrics
            )

    def _spooling(self, redis: RedisStore) -> SpoolingStore:
        """Redis with the local spool under data_dir for when Redis is unavailable."""
        from gateway.spool import SpoolingStore

        config = self.config
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)
        worker = None if self.worker is None else self.worker.index
        path = str(Path(config.data_dir) / spool_file(worker))
        spool = SqliteStore(config.store, path=path, max_bytes=config.store.spool.max_size)

        def delivery(store: SqliteStore) -> Forwarder | None:
            if self.delivery_store is None:  # the forwarder is off
                return None
            return Forwarder(
                config.targets, config.sources, store, config.forwarder, self.metrics, False
            )

        return SpoolingStore(
            redis, spool, config.store.spool, self.metrics, delivery, config.shutdown_grace
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        public = await self._listen_public()
        if self.certificate is not None:
            self._tasks.add(loop.create_task(self.certificate.watch()))
        if isinstance(self.store, SqliteStore):
            self._tasks.add(loop.create_task(_sweep_expired_markers(self.store)))
        admin = await self._listen_admin()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        if self.worker is not None:  # the supervisor logged the config
            log.info(
                "worker_started",
                pid=os.getpid(),
                port=_port(public[0]),
                admin_socket=self.worker.admin_socket,
                consumer=self.config.forwarder.consumer,
            )
        else:
            log.info(
                "started",
                version=gateway.__version__,
                build=gateway.build.kind(),
                port=_port(public[0]),
                admin_port=_port(admin),
                config=redacted(self.config),
            )
            warn_of_stranded_spools(self.config)
            for risk in risks(self.config):
                log.warning("config_risk", detail=risk)
        if self.spooling is not None:
            self.spooling.start()
        await self._check_store()
        if self.forwarder is not None:
            self.forwarder.start()
        await self.stopping.wait()
        await asyncio.gather(self._drain(public), self._stop_forwarder())
        if self.spooling is not None:
            await self.spooling.stop()  # after the drain: admits in flight may still spool
        for task in self._tasks:
            task.cancel()
        admin.close()
        self.admin_connections.close_all()
        await self.store.close()
        if self.delivery_store is not None and self.delivery_store is not self.store:
            await self.delivery_store.close()
        log.info("stopped")
        return 0

    async def _listen_public(self) -> list[asyncio.Server]:
        """A server per socket the public address binds (two for a host with an
        IPv4 and an IPv6 address); workers share the port with SO_REUSEPORT."""
        bound = self._bound or listeners.bind(self.config.listen, self.worker is not None)
        self._bound = None  # the servers own them now
        limits = self.config.limits
        tls = self.certificate.context if self.certificate is not None else None
        loop = asyncio.get_running_loop()
        return [
            await loop.create_server(
                lambda: HttpProtocol(self.ingest, limits, self.connections),
                sock=sock,
                backlog=listeners.BACKLOG,  # the loop listens again, with its own default of 100
                ssl=tls,
                ssl_handshake_timeout=limits.header_timeout if tls is not None else None,
            )
            for sock in bound
        ]

    async def _listen_admin(self) -> asyncio.Server:
        if self.worker is None:
            return await _listen(
                self.config.admin, self.admin, self.config.limits, self.admin_connections
            )
        path = self.worker.admin_socket
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's predecessor
        return await asyncio.get_running_loop().create_unix_server(
            lambda: HttpProtocol(self.admin, self.config.limits, self.admin_connections), path
        )

    def _on_signal(self, signum: int) -> None:
        if self.stopping.is_set():
            log.warning("second_signal_closing_now", signal=signal.Signals(signum).name)
            self.connections.close_all()
            return
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        self.stopping.set()

    def stop(self, reason: str) -> None:
        """Shut down as on a first signal (a worker whose supervisor is gone)."""
        if not self.stopping.is_set():
            log.warning("shutdown_requested", reason=reason)
            self.stopping.set()

    async def _check_store(self) -> None:
        try:
            async with asyncio.timeout(_STARTUP_CHECK_TIMEOUT):
                reachable = await self.store.ping()
                warnings = await self.store.durability_warnings() if reachable else []
        except TimeoutError:
            reachable, warnings = False, []
        if not reachable and self.spooling is None:
            log.warning("store_unreachable_at_start", detail="answering 503 until it answers")
        for warning in warnings:
            log.warning("store_durability_risk", detail=warning)

    async def _stop_forwarder(self) -> None:
        if self.forwarder is not None:
            await self.forwarder.stop(self.config.shutdown_grace)

    async def _drain(self, public: list[asyncio.Server]) -> None:
        grace = self.config.shutdown_grace
        for server in public:
            server.close()
        self.connections.drain()
        try:
            async with asyncio.timeout(grace):
                await self.batcher.wait_idle()
                await self.connections.wait_closed()
        except TimeoutError:
            still_open = len(self.connections.open)
            log.warning("shutdown_grace_exceeded", grace_seconds=grace, open=still_open)
            self.connections.close_all()


def _stores(config: Config) -> tuple[SqliteStore | RedisStore, DeliveryStore | None]:
    """The admit store and the forwarder's (None with the forwarder off)."""
    deliver = config.forwarder.enabled and bool(config.targets)
    path = sqlite_path(config.store.url)
    if path is not None:
        # One file, one connection thread: admit and forwarder share the store
        # (its blocking claim wakes on an admit of the same process).
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sqlite = SqliteStore(config.store, path=path)
        return sqlite, (sqlite if deliver else None)
    from gateway.store.redis import RedisStore

    # Redis: the forwarder gets its own pool, so blocking reads and deliveries
    # never make an admit wait for a connection.
    delivery = RedisStore(config.store, block_ms=BLOCK_MS) if deliver else None
    return RedisStore(config.store), delivery


async def _sweep_expired_markers(store: SqliteStore) -> None:
    while True:
        await asyncio.sleep(_SWEEP_INTERVAL)
        try:
            await store.sweep()
        except StoreUnavailable as exc:
            log.warning("store_sweep_failed", error=str(exc))


async def _listen(
    where: Listen, router: Router, limits: Limits, connections: Connections
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HttpProtocol(router, limits, connections),
        where.host,
        where.port,
        backlog=listeners.BACKLOG,
    )


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
