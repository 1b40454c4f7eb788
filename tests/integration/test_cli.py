"""The command line as a user runs it: exit codes and one-line errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import (
    ROOT,
    RedisServer,
    assert_a_taken_port_fails_the_start,
    free_port,
    http_status,
    wait_until,
)

pytestmark = pytest.mark.integration


def gateway_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_config_accepts_the_shipped_example() -> None:
    result = gateway_cli("check-config", "--config", "config/gateway.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok (1 sources, 1 targets, 1 routes)" in result.stdout


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "sources:\n  s: {kind: inboxcomponents, path: /x}\nlisten: {port: 99999}\n",
            "listen.port: expected an integer 1-65535",
        ),
        (
            "sources:\n  s: {kind: inboxcomponents, path: /x}\n"
            "routes:\n  - {source: s, targets: [nope]}\n",
            'routes[0].targets[0]: unknown target "nope"',
        ),
        ("sources: [\n", "invalid YAML at line"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_key_and_exit_2(
    tmp_path: Path, command: str, yaml_text: str, expected: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    result = gateway_cli(command, "--config", str(bad))
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_a_missing_config_file_is_exit_2() -> None:
    result = gateway_cli("check-config", "--config", "/nonexistent.yaml")
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr


def test_a_taken_port_is_one_error_line_and_exit_1(redis_server: RedisServer) -> None:
    stdout = assert_a_taken_port_fails_the_start({"STORE_URL": redis_server.url})
    assert "error while attempting to bind on address ('0.0.0.0', " in stdout  # which port


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) not found")
def test_as_pid_1_in_its_own_pid_namespace_sigterm_still_stops_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    admin_port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(free_port()), "GATEWAY_ADMIN_PORT": str(admin_port)}
    env["STORE_URL"] = redis_server.url
    # --kill-child: if the test kills unshare, the namespace's PID 1 goes with it.
    args = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
    args += [sys.executable, "-m", "gateway", "run"]
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_until(
                lambda: (
                    http_status(f"http://127.0.0.1:{admin_port}/readyz") == 200
                    or proc.poll() is not None
                ),
                timeout=15,
                what="gateway as PID 1",
            )
        except TimeoutError:
            proc.kill()
            raise
        if proc.poll() is not None:
            pytest.skip(f"cannot make a PID namespace here: {log.read_text()[:200]}")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        (pid1,) = children  # the gateway: PID 1 inside the namespace
        assert "NSpid:" in (status := Path(f"/proc/{pid1}/status").read_text())
        assert status.split("NSpid:")[1].split("\n")[0].split()[-1] == "1"
        os.kill(int(pid1), signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
