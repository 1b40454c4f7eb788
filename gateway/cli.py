"""Command line: `webhook-gateway run|check-config --config FILE`, and
`webhook-gateway dead-letters list|show|replay|purge --config FILE [--target T]
[--id ID | --all]` (gateway.deadletters_cli).

With `workers: N > 1`, `run` supervises N worker processes (gateway.workers).

Exit codes: 0 ok, 1 runtime failure (e.g. the port is taken, the store is
unreachable), 2 bad config or usage, 3 `dead-letters --id` found nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from gateway import __version__, build, listeners
from gateway.config import Config, load
from gateway.errors import ConfigError

DEFAULT_CONFIG = "config/gateway.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webhook-gateway", description="Durable, deduplicating webhook edge."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__} ({build.kind()})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the gateway"),
        ("check-config", "validate a config file and exit"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
        if name == "run":  # worker I of `workers: N`, started by the supervisor only
            command.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    _dead_letters_parser(commands)
    return parser


def _dead_letters_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dead = commands.add_parser("dead-letters", help="list, show, replay or purge dead letters")
    actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("list", "one line per dead letter, oldest first, then the count"),
        ("show", "every field of one dead letter, the body as received"),
        ("replay", "put dead letters back on their target's queue, attempts reset"),
        ("purge", "delete dead letters"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--config", default=DEFAULT_CONFIG, help="YAML config file")
        action.add_argument("--target", help="only this target's dead letters (default: all)")
        if name == "show":
            action.add_argument("--id", required=True, help="the dead letter's id (from list)")
        elif name in ("replay", "purge"):
            which = action.add_mutually_exclusive_group(required=True)
            which.add_argument("--id", help="the dead letter's id (from list)")
            which.add_argument("--all", action="store_true", help="every dead letter")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run" and args.worker is not None:
        from gateway.workers import worker_main  # its config comes from the supervisor

        return run_process(lambda: worker_main(args.worker))
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
    if args.command == "dead-letters":
        from gateway.deadletters_cli import command  # the store client only when needed

        return command(args, config)
    return _run(config)


def _run(config: Config) -> int:
    if config.workers > 1:
        from gateway.logs import configure
        from gateway.workers import supervise  # a supervisor, without the I/O stack

        configure(config.log_level)
        return run_process(lambda: supervise(config))
    return run_process(lambda: _serve(config))


def _serve(config: Config) -> int:
    """One gateway process. Its public port listens before the I/O stack is
    imported (gateway.listeners says why): 0.2-0.3 s of imports pass while
    connections wait to be accepted instead of being refused."""
    try:
        public = listeners.bind(config.listen)
    finally:
        from gateway.logs import configure  # a failed bind is logged as JSON too

        configure(config.log_level)
    import uvloop

    from gateway.service import Gateway

    return uvloop.run(Gateway(config, public=public).run())


def run_process(run: Callable[[], int]) -> int:
    """The exit code of a gateway, supervisor or worker process: `run`'s, 1 after a
    start-up OSError (a taken port, an unwritable data dir: one log line, no
    traceback), 0 after a signal that came before the loop installed its handlers."""
    try:
        return run()
    except OSError as exc:
        import structlog

        structlog.get_logger("gateway").error("cannot_start", error=str(exc))
        return 1
    except KeyboardInterrupt:  # a signal before the loop installed its handlers
        return 0
