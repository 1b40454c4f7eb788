"""Real processes for tests: redis-server, the gateway, free ports, polling."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.support.secrecy import GATEWAY_LOGS

ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m module args...` from the checkout's root, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


SEEDS = ROOT / "tests" / "fixtures" / "inboxcomponents"  # copies of the provider docs


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free TCP port below the kernel's ephemeral range.

    A port from bind(0) is an ephemeral one: after its server dies (kill -9 in
    a test), an outgoing connection may be handed the same number before the
    server restarts on it. Ports below the range are never handed out that way.
    """
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _HANDED_OUT:  # not bound yet by whoever got it: still taken
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll `condition` until it holds: synchronization on state, not a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def failed_start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`gateway run` with the example config and `env`, to its exit: a start that must fail."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", "config/gateway.yaml"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def assert_a_taken_port_fails_the_start(env: dict[str, str]) -> str:
    """`gateway run` with the example config and `env` while a plain socket (no
    SO_REUSEPORT) holds its public port: exit 1, a `cannot_start` log line and no
    traceback. Returns its stdout for what a caller checks besides."""
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = failed_start({**env, "GATEWAY_PORT": port, "GATEWAY_ADMIN_PORT": str(free_port())})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert '"event":"cannot_start"' in result.stdout, output
    assert "Traceback" not in output, output
    return result.stdout


class RedisServer:
    """A real redis-server on a free port, with AOF on, in a temp dir."""

    def __init__(self, *extra_args: str) -> None:
        self.extra_args = list(extra_args)
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="gw-redis-")
        self.port = free_port()
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
        args += ["--maxmemory-policy", "noeviction", "--daemonize", "no", "--logfile", ""]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers, what=f"redis-server on port {self.port}")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(16)  # NOAUTH: a --requirepass server, answering
                return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# Gateways started and not yet closed, and the log tails of those closed during the
# current test: a failed test's report shows both (tests/conftest.py).
RUNNING: list[GatewayProcess] = []
CLOSED_TAILS: list[tuple[int, str]] = []
LOG_TAIL_LINES = 80


class GatewayProcess:
    """The gateway started the way the README starts it, on free ports."""

    def __init__(self, env: dict[str, str], config: str = "config/gateway.yaml") -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="gw-data-")
        self.log_path = Path(self.data_dir) / "gateway.log"
        self.env = {
            **os.environ,
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_ADMIN_PORT": str(self.admin_port),
            "GATEWAY_DATA_DIR": self.data_dir,
            **env,
        }
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> GatewayProcess:
        self.spawn()
        if wait_ready:
            wait_until(self.ready, timeout=15, what="gateway /readyz")
        else:
            wait_until(self.healthy, timeout=15, what="gateway /healthz")
        return self

    def spawn(self) -> None:
        """Start the process and return at once."""
        log = self.log_path.open("ab")
        args = [sys.executable, "-m", "gateway", "run", "--config", self.config]
        self.proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        log.close()
        if self not in RUNNING:
            RUNNING.append(self)

    def url(self, path: str = "/webhooks/inbox") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def admin(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def ready(self) -> bool:
        self._check_alive()
        return http_status(self.admin("/readyz")) == 200

    def healthy(self) -> bool:
        self._check_alive()
        return http_status(self.admin("/healthz")) == 200

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self) -> str:
        return "\n".join(self.logs().splitlines()[-LOG_TAIL_LINES:])

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def close(self) -> None:
        self.stop()
        if self in RUNNING:
            RUNNING.remove(self)
            CLOSED_TAILS.append((self.port, self.log_tail()))
        GATEWAY_LOGS.append(self.logs())
        shutil.rmtree(self.data_dir, ignore_errors=True)
