"""The servers the harness measures, one declarative entry each.

To add a baseline, append a `System` to `SYSTEMS`. Strings in `argv`, `env` and the URLs
are templates over the launch values: {python} {repo} {workdir} {port} {admin_port}
{store_url}, plus whatever the entry's `prepare` returns. Every system gets a fresh
`port` and `admin_port`, an empty Redis at `store_url`, and a private `workdir`.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

REPO = Path(__file__).resolve().parent.parent
GATEWAY_CONFIG = REPO / "config" / "gateway.yaml"
# Where the gateway's processes run from: a compiled copy of the checkout (run.py --build
# compiled sets it), else the checkout itself. Every other system runs from the checkout.
GATEWAY_ROOT_ENV = "BENCH_GATEWAY_ROOT"


def gateway_root() -> Path:
    """The directory the gateway runs from (`python -m gateway` imports it from there)."""
    return Path(os.environ.get(GATEWAY_ROOT_ENV) or REPO)


Prepare = Callable[[Path], Mapping[str, str]]


class SystemSetupError(RuntimeError):
    """A system cannot even be launched (its config is missing or invalid)."""


@dataclass(frozen=True, slots=True)
class System:
    name: str
    description: str
    argv: tuple[str, ...]
    ready_url: str
    target_url: str = "http://127.0.0.1:{port}/webhooks/inbox"
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    prepare: Prepare | None = None
    # Modules the system imports beyond the project's own dependencies (the `bench`
    # extra): missing ones fail its start with a clear message instead of a traceback.
    requires: tuple[str, ...] = ()
    # The gateway itself: runs from gateway_root() (the compiled copy, or the checkout).
    is_gateway: bool = False


@dataclass(frozen=True, slots=True)
class Launch:
    """A `System` with every template filled in: what actually runs."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    ready_url: str
    target_url: str
    cwd: Path = REPO


def resolve(system: System, values: Mapping[str, str], workdir: Path) -> Launch:
    """Fill the templates; runs `prepare` first, which may raise `SystemSetupError`."""
    missing = [name for name in system.requires if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemSetupError(
            f"{system.name} needs {', '.join(missing)}: pip install -e '.[bench]'"
        )
    extra = system.prepare(workdir) if system.prepare else {}
    values = {**values, **extra}
    try:
        return Launch(
            name=system.name,
            argv=tuple(arg.format_map(values) for arg in system.argv),
            env={key: value.format_map(values) for key, value in system.env.items()},
            ready_url=system.ready_url.format_map(values),
            target_url=system.target_url.format_map(values),
            cwd=gateway_root() if system.is_gateway else REPO,
        )
    except KeyError as exc:
        raise SystemSetupError(f"{system.name}: unknown template value {exc}") from None


def http_ok(url: str) -> bool:
    """True once `url` answers GET with 200; any connection error means "not yet"."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def ingest_only_config(workdir: Path) -> dict[str, str]:
    """A copy of config/gateway.yaml with the forwarder paused.

    The ingest scenarios have no application behind the gateway: a running forwarder
    would spend the measured core on connection errors and retries, so the run would
    measure neither ingest nor forwarding. Forwarding has its own scenarios (delivery.py).
    """
    return {"config": str(_config_copy(workdir, "gateway.ingest.yaml", forwarder=False))}


def forwarding_config(workdir: Path) -> dict[str, str]:
    """A copy of config/gateway.yaml with the forwarder on (FORWARD_URL: the sink)."""
    return {"config": str(_config_copy(workdir, "gateway.forwarding.yaml", forwarder=True))}


def _config_copy(workdir: Path, name: str, *, forwarder: bool) -> Path:
    if not GATEWAY_CONFIG.is_file():
        raise SystemSetupError(f"{GATEWAY_CONFIG.relative_to(REPO)} does not exist")
    doc = yaml.safe_load(GATEWAY_CONFIG.read_text()) or {}
    section = doc.setdefault("forwarder", {}) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise SystemSetupError(f"{GATEWAY_CONFIG.relative_to(REPO)}: no 'forwarder' mapping")
    section["enabled"] = forwarder
    copy = workdir / name
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy


_GATEWAY_ENV = MappingProxyType(
    {
        "GATEWAY_PORT": "{port}",
        "GATEWAY_ADMIN_PORT": "{admin_port}",
        "STORE_URL": "{store_url}",
        "GATEWAY_DATA_DIR": "{workdir}",
        "LOG_LEVEL": "warning",
    }
)


def _argv(words: str) -> tuple[str, ...]:
    """An argv template written as one line (no argument contains a space)."""
    return tuple(words.split())


SYSTEMS: tuple[System, ...] = (
    System(
        name="bare",
        description="uvloop + httptools, canned 200, no work: the ceiling of our stack",
        argv=("{python}", "-m", "benchmarks.bare_server", "--port", "{port}"),
        ready_url="http://127.0.0.1:{port}/",
    ),
    System(
        name="bare_admit",
        description="bare + admit: the bare server, each POST's key found with bytes.find,"
        " all POSTs of one loop tick admitted in ONE EVALSHA (per event SET NX PX + XADD of"
        " the body; benchmarks/bare_redis.py's own script, not the gateway's) before their"
        " 200s: the cost of durability alone",
        argv=_argv(
            "{python} -m benchmarks.bare_redis --mode admit --port {port} --store-url {store_url}"
        ),
        ready_url="http://127.0.0.1:{port}/",
    ),
    System(
        name="bare_call",
        description="bare + one awaited Redis call: the bare server awaiting its own"
        " SET NX PX per POST (redis.asyncio) before the 200: one round trip's latency",
        argv=_argv(
            "{python} -m benchmarks.bare_redis --mode call --port {port} --store-url {store_url}"
        ),
        ready_url="http://127.0.0.1:{port}/",
    ),
    System(
        name="gateway",
        description="the gateway, ingest only (forwarder paused), Redis store",
        argv=("{python}", "-m", "gateway", "run", "--config", "{config}"),
        env=_GATEWAY_ENV,
        ready_url="http://127.0.0.1:{admin_port}/readyz",
        prepare=ingest_only_config,
        is_gateway=True,
    ),
    System(
        name="fastapi",
        description="FastAPI (pydantic model of the body) on uvicorn with uvloop + httptools"
        " (uvicorn[standard]'s defaults), 1 process, no access log; one awaited SET NX"
        " (redis.asyncio) per POST",
        argv=_argv(
            "{python} -m uvicorn benchmarks.fastapi_app:app --host 127.0.0.1 --port {port}"
            " --loop uvloop --http httptools --no-access-log --log-level warning"
        ),
        env=MappingProxyType({"STORE_URL": "{store_url}"}),
        ready_url="http://127.0.0.1:{port}/healthz",
        requires=("fastapi", "uvicorn"),
    ),
    System(
        name="aiohttp",
        description="aiohttp.web (await request.json()) on uvloop, 1 process, no access log;"
        " one awaited SET NX (redis.asyncio) per POST",
        argv=_argv("{python} -m benchmarks.aiohttp_app --port {port} --store-url {store_url}"),
        ready_url="http://127.0.0.1:{port}/healthz",
        requires=("aiohttp",),
    ),
)

# The delivery scenarios' gateway (not in SYSTEMS: it needs a sink, see delivery.py).
FORWARDING_GATEWAY = System(
    name="gateway",
    description="the gateway, forwarder on, delivering to the sink; Redis store",
    argv=("{python}", "-m", "gateway", "run", "--config", "{config}"),
    env=MappingProxyType({**_GATEWAY_ENV, "FORWARD_URL": "{forward_url}"}),
    ready_url="http://127.0.0.1:{admin_port}/readyz",
    prepare=forwarding_config,
    is_gateway=True,
)

# The app behind the gateway in the delivery scenarios: counts POSTs, answers 200.
SINK = System(
    name="sink",
    description="uvloop + httptools, counts POSTs and answers 200 (GET /count: the count)",
    argv=("{python}", "-m", "benchmarks.sink_server", "--port", "{port}"),
    ready_url="http://127.0.0.1:{port}/count",
    target_url="http://127.0.0.1:{port}/events",
)


def select(names: str | None) -> tuple[System, ...]:
    """The systems named in a comma-separated list, in the list's order; all if None."""
    if names is None:
        return SYSTEMS
    by_name = {system.name: system for system in SYSTEMS}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_name]
    if unknown or not wanted:
        raise ValueError(f"unknown system(s) {unknown}; known: {', '.join(by_name)}")
    return tuple(by_name[name] for name in wanted)
