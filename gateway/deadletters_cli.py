"""Dead letters, operable: `webhook-gateway dead-letters list|show|replay|purge`.

An event the forwarder gave up on waits in its target's dead-letter store
until an operator looks at it (`list`, `show`), sends it again (`replay`:
back on the target's queue with a fresh attempt count, so the running
gateway delivers it) or drops it (`purge`).

The commands speak to the small `DeadLetters` interface of gateway.deadletters,
implemented over the Redis and the SQLite store.

Output: the command's results on stdout, one line each, then a count line;
errors on stderr as one `webhook-gateway: ...` line. Exit codes: 0 done (also
when there was nothing to do), 1 the store is unreachable (or a dead letter
could not be replayed), 2 bad usage or config, 3 no dead letter with that --id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from gateway.config import Config
from gateway.deadletters import DeadLetter, DeadLetters, Unreplayable, dead_letters_for
from gateway.errors import StoreUnavailable

OK, FAILED, USAGE, NOT_FOUND = 0, 1, 2, 3  # FAILED: the store is unreachable
_ERROR_WIDTH: Final = 80  # characters of the error shown by `list`
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


# --- the commands -------------------------------------------------------------


class _Failed(Exception):
    """Ends a command with one stderr line and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def command(args: argparse.Namespace, config: Config) -> int:
    """Run `dead-letters <action>` against the config's store; the exit code."""
    try:
        targets = _targets(config, args.target)
        return asyncio.run(_run(args, dead_letters_for(config), targets))
    except _Failed as exc:
        _error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... list | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK


def _targets(config: Config, wanted: str | None) -> list[str]:
    names = [target.name for target in config.targets]
    if wanted is None:
        return names
    if wanted not in names:
        known = ", ".join(names) or "none"
        raise _Failed(USAGE, f"--target {_quoted(wanted)} is not a configured target ({known})")
    return [wanted]


async def _run(args: argparse.Namespace, letters: DeadLetters, targets: list[str]) -> int:
    action = {"list": _list, "show": _show, "replay": _replay, "purge": _purge}[args.action]
    try:
        return await action(letters, targets, args)
    except StoreUnavailable as exc:
        raise _Failed(FAILED, f"store unreachable: {exc}") from None
    finally:
        await letters.close()


async def _list(letters: DeadLetters, targets: list[str], args: argparse.Namespace) -> int:
    found = await letters.list_all(targets)
    now_ms = _now_ms()
    for letter in found:
        print(list_line(letter, now_ms))
    print(_count(len(found)))
    return OK


async def _show(letters: DeadLetters, targets: list[str], args: argparse.Namespace) -> int:
    letter = await _one(letters, args.id, targets)
    for name, value in show_fields(letter):
        print(f"{name + ':':<11}{value}")
    print(f"body:      {len(letter.body)} bytes follow, as received")
    sys.stdout.flush()
    sys.stdout.buffer.write(letter.body + b"\n")
    return OK


async def _replay(letters: DeadLetters, targets: list[str], args: argparse.Namespace) -> int:
    chosen = await _chosen(letters, targets, args)
    replayed, code = 0, OK
    for letter in chosen:
        try:
            queued = await letters.replay(letter)
        except Unreplayable as exc:
            _error(f"cannot replay {letter.id} (target {letter.target}): {exc}; left in place")
            code = FAILED
            continue
        if queued is None:
            print(f"{_about(letter)} already gone (replayed or purged meanwhile)")
        else:
            print(f"{_about(letter)} replayed as {queued}")
            replayed += 1
    if chosen:
        print(f"replayed {_plural(replayed)}")
    return code


async def _purge(letters: DeadLetters, targets: list[str], args: argparse.Namespace) -> int:
    chosen = await _chosen(letters, targets, args)
    deleted = await letters.purge(chosen)
    for letter, gone in zip(chosen, deleted, strict=True):
        print(f"{_about(letter)} {'purged' if gone else 'already gone'}")
    if chosen:
        print(f"purged {_plural(sum(deleted))}")
    return OK


async def _chosen(
    letters: DeadLetters, targets: list[str], args: argparse.Namespace
) -> Sequence[DeadLetter]:
    if not args.all:
        return [await _one(letters, args.id, targets)]
    found = await letters.list_all(targets)
    if not found:
        print(_count(0))
    return found


async def _one(letters: DeadLetters, letter_id: str, targets: list[str]) -> DeadLetter:
    found = await letters.find(letter_id, targets)
    if not found:
        where = f" for target {targets[0]}" if len(targets) == 1 else ""
        raise _Failed(NOT_FOUND, f"no dead letter with id {_quoted(letter_id)}{where}")
    if len(found) > 1:
        names = ", ".join(letter.target for letter in found)
        problem = f"id {letter_id} is a dead letter of several targets ({names}); add --target"
        raise _Failed(USAGE, problem)
    return found[0]


# --- formatting -------------------------------------------------------------------


def list_line(letter: DeadLetter, now_ms: int) -> str:
    """One logfmt-style line: id key target attempts status age error."""
    error = letter.error
    if len(error) > _ERROR_WIDTH:
        error = error[:_ERROR_WIDTH] + "..."
    return " ".join(
        (
            letter.id,
            f"key={_logfmt(letter.key)}",
            f"target={letter.target}",
            f"attempts={letter.attempts}",
            f"status={letter.status or '-'}",
            f"age={age((now_ms - letter.failed_at_ms) / 1000)}",
            f"error={_logfmt(error)}",
        )
    )


def show_fields(letter: DeadLetter) -> list[tuple[str, str]]:
    """Every field but the body, printable on one line each."""
    status = str(letter.status) if letter.status else "0 (no HTTP response)"
    return [
        ("id", letter.id),
        ("target", letter.target),
        ("source", _printable(letter.source)),
        ("type", _printable(letter.event_type)),
        ("key", _printable(letter.key)),
        ("attempts", str(letter.attempts)),
        ("status", status),
        ("error", _printable(letter.error)),
        ("failed_at", rfc3339(letter.failed_at_ms)),
        ("since", rfc3339(letter.since_ms)),
        ("queued_id", letter.queued_id),
    ]


def age(seconds: float) -> str:
    """Two units at most: 45s, 3m12s, 2h05m, 4d03h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def rfc3339(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _count(n: int) -> str:
    return "no dead letters" if n == 0 else _plural(n)


def _plural(n: int) -> str:
    return f"{n} dead letter{'' if n == 1 else 's'}"


def _about(letter: DeadLetter) -> str:
    return f"{letter.id} key={_logfmt(letter.key)} target={letter.target}"


def _logfmt(value: str) -> str:
    """A bare value, or a JSON-quoted one when it holds spaces, quotes, = or controls."""
    if value and not re.search(r'[\s"=\\]|[\x00-\x1f\x7f]', value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _printable(value: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error(message: str) -> None:
    print(f"webhook-gateway: {message}", file=sys.stderr)
