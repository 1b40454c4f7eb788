"""Command line: `webhook-gateway run|check-config --config FILE`.

Exit codes: 0 ok, 1 runtime failure (e.g. the port is taken), 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import structlog
import uvloop

from gateway import __version__
from gateway.config import Config, load
from gateway.errors import ConfigError
from gateway.logs import configure

DEFAULT_CONFIG = "config/gateway.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhook-gateway", description="Durable, deduplicating webhook edge."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the gateway"),
        ("check-config", "validate a config file and exit"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"webhook-gateway: {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(
            f"{args.config}: ok ({len(config.sources)} sources, {len(config.targets)} targets, "
            f"{len(config.routes)} routes)"
        )
        return 0
    return _run(config)


def _run(config: Config) -> int:
    from gateway.service import Gateway  # imports the I/O stack only when running

    configure(config.log_level)
    log = structlog.get_logger("gateway")
    try:
        return uvloop.run(Gateway(config).run())
    except OSError as exc:
        log.error("cannot_start", error=str(exc))
        return 1
    except KeyboardInterrupt:  # a signal before the loop installed its handlers
        return 0
