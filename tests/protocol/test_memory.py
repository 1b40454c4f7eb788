"""Streaming bodies far past max_body leaves the server's memory where it was."""

from __future__ import annotations

import selectors
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.protocol.wire import HEAD, chunked, connect
from tests.support.rawhttp import post

ROOT = Path(__file__).resolve().parents[2]
MAX_BODY = 1024 * 1024
CLIENTS = 20
STREAM = 64 * 1024 * 1024  # what each client would send if never cut off
MIB = 1024 * 1024


def memory(pid: int, field: str) -> int:
    """VmRSS (resident now) or VmHWM (resident at peak) of `pid`, in bytes."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1]) * 1024
    raise KeyError(field)


@pytest.fixture
def echo_server() -> Iterator[tuple[int, int]]:
    """(pid, port) of an echo server in its own process."""
    command = [sys.executable, "-m", "tests.protocol.echo_server", str(MAX_BODY)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the echo server exited before it listened"
    port = int(line)
    yield process.pid, port
    process.terminate()
    process.wait(10)
    process.stdout.close()


def stream_until_cut(port: int, results: list[tuple[int, int]]) -> None:
    """Stream a chunked body of STREAM bytes, stopping as soon as the server answers."""
    client = connect(port, timeout=20)
    piece = chunked(b"x" * 65536)[: -len(b"0\r\n\r\n")]  # one 64 KiB chunk
    sent = 0
    try:
        client.send(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        with selectors.DefaultSelector() as selector:
            selector.register(client.sock, selectors.EVENT_READ)
            while sent < STREAM and not selector.select(0):
                client.send(piece)
                sent += 65536
        status = client.read_response().status
    except OSError:
        status = 0  # reset before the answer could be read
    finally:
        client.close()
    results.append((status, sent))


def test_streams_past_max_body_leave_rss_where_it_was(echo_server: tuple[int, int]) -> None:
    pid, port = echo_server
    warm = connect(port)  # allocate what serving a full-size body needs, once
    warm.send(post("/echo", b"x" * MAX_BODY))
    assert warm.read_response().status == 200
    warm.close()
    before = memory(pid, "VmRSS")
    results: list[tuple[int, int]] = []
    threads = [
        threading.Thread(target=stream_until_cut, args=(port, results)) for _ in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(25)
    peak, after = memory(pid, "VmHWM"), memory(pid, "VmRSS")
    sent = max(s for _, s in results)
    print(
        f"RSS before {before / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB "
        f"(+{(peak - before) / MIB:.1f}), after {after / MIB:.1f} MiB; "
        f"most any client sent {sent / MIB:.1f} MiB"
    )
    assert sorted(status for status, _ in results) == [413] * CLIENTS
    assert sent < STREAM  # every one was cut off, none streamed it all
    assert peak - before < 100 * MIB
