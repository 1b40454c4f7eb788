"""The container image, built from the Dockerfile and run for real with podman (or docker).

The seed posted to the container reaches a sink on the host, on Redis and on SQLite in the
data volume; the gateway is PID 1 as user 10001 on a read-only root filesystem; SIGTERM
(`podman stop`) ends it with exit code 0 long before the engine would resort to SIGKILL.

Where no registry can be reached (this project's CI), the base image is
localhost/bookworm-python, made once by deploy/local-base-image.sh with debootstrap and
reused by later runs. WEBHOOK_GATEWAY_BASE_IMAGE picks another base (python:3.12-slim on a
machine that can pull it). Skips, with the reason, without a usable engine, as non-root, or
when the local base must be made but debootstrap is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ROOT, RedisServer, free_port, http_status, wait_until
from tests.support.secrecy import GATEWAY_LOGS
from tests.support.sink import Sink
from tests.support.webhooks import post_once, seed
from tests.unit.test_delivery_rules import data_bytes

# Cold (debootstrap, then every wheel downloaded) takes about 80 s here, warm about 8 s.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

IMAGE = "localhost/webhook-gateway:test"
LOCAL_BASE = "localhost/bookworm-python"
USER = "10001:10001"  # the Dockerfile's USER
DATA = "/var/lib/webhook-gateway"  # the Dockerfile's GATEWAY_DATA_DIR and VOLUME
CONFIG = "/etc/webhook-gateway/gateway.yaml"
# The wrapper for machines whose kernel refuses setrlimit in containers (see its README).
OCI_WRAPPER = ROOT.parent / "shared" / "tools" / "oci-runtime" / "runc"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STOP_TIMEOUT = 30  # seconds `stop` waits after SIGTERM before it sends SIGKILL
# The Dockerfile installs the gateway into a venv on top of the base; more than this
# means something that has no place in the image (wheels, a build tree, a compiler).
MAX_ADDED_BYTES = 64 * 1024 * 1024
# The Dockerfile's MYPYC build argument: 1 (its default) compiles the gateway in the build
# stage, about 3 minutes more when cold. CI sets WEBHOOK_GATEWAY_IMAGE_MYPYC=0 for time: its
# compiled leg builds the same compiled wheel through pip (./dev.sh compiled-copy).
COMPILED = os.environ.get("WEBHOOK_GATEWAY_IMAGE_MYPYC", "1")


@dataclass
class Engine:
    command: list[str]  # e.g. ["podman", "--runtime", ".../runc"]
    podman: bool

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args], capture_output=True, text=True, timeout=timeout
        )

    def check(self, *args: str, timeout: float = 60) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = json.loads(self.check(kind, "inspect", name))
        return dict(found)

    def exists(self, image: str) -> bool:
        return self.run("image", "inspect", image).returncode == 0


def _engine_or_reason() -> Engine | str:
    """podman (through the rlimit wrapper where it exists), else a docker whose daemon
    answers; or why neither can run the test."""
    podman, docker = shutil.which("podman"), shutil.which("docker")
    if podman is not None:
        command = [podman]
        runtime = os.environ.get("WEBHOOK_GATEWAY_OCI_RUNTIME")
        if runtime is None and OCI_WRAPPER.is_file():
            runtime = str(OCI_WRAPPER)
        if runtime:
            command += ["--runtime", runtime]
        engine = Engine(command, podman=True)
    elif docker is None:
        return "no container engine: neither podman nor docker is installed"
    elif subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        return "no container engine: docker is installed but its daemon does not answer"
    else:
        engine = Engine([docker], podman=False)
    if os.geteuid() != 0:
        return "not root: the container test runs rootful podman (or docker) and debootstrap"
    return engine


@dataclass
class Built:
    engine: Engine
    base: str
    size: int
    base_size: int


def _base_image(engine: Engine) -> str:
    """The base to build on: WEBHOOK_GATEWAY_BASE_IMAGE, else the local bookworm one,
    made by deploy/local-base-image.sh when it does not exist yet."""
    chosen = os.environ.get("WEBHOOK_GATEWAY_BASE_IMAGE")
    if chosen:
        return chosen  # pulled by the build when not present
    if not engine.exists(LOCAL_BASE):
        if shutil.which("debootstrap") is None:
            pytest.skip(f"{LOCAL_BASE} does not exist and debootstrap is not installed")
        started = time.monotonic()
        env = {**os.environ, "ENGINE": engine.command[0]}
        script = str(ROOT / "deploy" / "local-base-image.sh")
        made = subprocess.run(
            [script, LOCAL_BASE], capture_output=True, text=True, timeout=400, env=env
        )
        assert made.returncode == 0, f"{script} failed:\n{made.stdout}\n{made.stderr}"
        print(f"\nmade {LOCAL_BASE} in {time.monotonic() - started:.1f} s")
    return LOCAL_BASE


@pytest.fixture(scope="module")
def image() -> Built:
    engine = _engine_or_reason()
    if isinstance(engine, str):
        pytest.skip(engine)
    base = _base_image(engine)
    args = ["build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE]
    args += ["--build-arg", f"MYPYC={COMPILED}"]
    if engine.podman and HOST_CA_BUNDLE.is_file():
        # pip in the build then trusts what the host trusts (e.g. a TLS-inspecting egress
        # proxy's CA); Debian's pip reads this bundle. The image itself is unchanged.
        args += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    started = time.monotonic()
    built = engine.run(*args, "-f", str(ROOT / "Dockerfile"), str(ROOT), timeout=400)
    assert built.returncode == 0, f"build failed:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}"
    size = int(engine.inspect("image", IMAGE)["Size"])
    base_size = int(engine.inspect("image", base)["Size"])
    print(
        f"\nbuilt {IMAGE} on {base} in {time.monotonic() - started:.1f} s: "
        f"{size / 1e6:.1f} MB ({(size - base_size) / 1e6:.1f} MB over the base)"
    )
    return Built(engine, base, size, base_size)


def test_the_image_is_configured_to_run_as_a_non_root_gateway(image: Built) -> None:
    config = image.engine.inspect("image", IMAGE)["Config"]
    assert config.get("User") == USER
    assert re.fullmatch(r"[1-9][0-9]*:[0-9]+", config["User"]), "a numeric, non-root user"
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9102/tcp"}
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["/opt/venv/bin/webhook-gateway"]
    assert config["Cmd"] == ["run", "--config", CONFIG]
    assert f"GATEWAY_DATA_DIR={DATA}" in config["Env"]
    assert DATA in config["Volumes"]


def test_the_image_runs_the_build_it_was_asked_for(image: Built) -> None:
    """By default the Dockerfile's default, compiled with mypyc (what the README's
    performance numbers measure; the whole list or none of it, tests/unit/test_build.py)."""
    out = image.engine.check("run", "--rm", "--network", "host", IMAGE, "--version")
    build = "mypyc" if COMPILED == "1" else "interpreted"
    assert out.strip() == f"webhook-gateway 0.1.0 ({build})"


def test_the_final_stage_has_no_compilers_pip_or_build_leftovers(image: Built) -> None:
    probe = (
        "import importlib.util, os, shutil; "
        "print(sorted(c for c in ('cc', 'gcc', 'c++', 'g++', 'clang', 'ld', 'make') "
        "if shutil.which(c))); "
        "print(importlib.util.find_spec('pip') is not None); "
        "print(sorted(p for p in ('/wheels', '/src', '/root/.cache') if os.path.exists(p)))"
    )
    out = image.engine.check(
        "run", "--rm", "--network", "host", "--entrypoint", "/opt/venv/bin/python3", IMAGE,
        "-c", probe,
    )  # fmt: skip
    assert out.split("\n")[:3] == ["[]", "False", "[]"], out
    added = image.size - image.base_size
    assert added < MAX_ADDED_BYTES, f"the image adds {added / 1e6:.1f} MB to {image.base}"


@pytest.mark.parametrize("store", ["redis", "sqlite"])
def test_the_seed_posted_to_the_container_reaches_a_sink_on_the_host(
    image: Built, sink: Sink, tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    """As PID 1, user 10001, on a read-only root with only /tmp and the data volume
    writable; then `stop` (SIGTERM) ends it with exit code 0."""
    engine = image.engine
    data = tmp_path / "data"
    data.mkdir()
    uid, gid = (int(n) for n in USER.split(":"))
    os.chown(data, uid, gid)
    if store == "redis":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        store_url = redis_server.url
    else:
        store_url = f"sqlite:///{DATA}/gateway.db"  # an absolute path in the volume
    port, admin_port = free_port(), free_port()
    env = {
        "GATEWAY_PORT": str(port),
        "GATEWAY_ADMIN_PORT": str(admin_port),
        "STORE_URL": store_url,
        "FORWARD_URL": sink.url,
    }
    name = f"webhook-gateway-test-{uuid.uuid4().hex[:12]}"
    args = ["run", "--detach", "--name", name, "--network", "host"]
    args += ["--read-only", "--tmpfs", "/tmp", "--volume", f"{data}:{DATA}"]
    if engine.podman:  # podman also mounts /run and /var/tmp writable unless told not to
        args += ["--read-only-tmpfs=false"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    engine.check(*args, IMAGE)  # the image's own ENTRYPOINT and CMD
    try:
        _wait_ready(engine, name, admin_port)

        assert post_once(port, seed()).json()["status"] == "accepted"
        assert post_once(port, seed()).json()["status"] == "duplicate"
        sink.wait_for(lambda s: len(s.received()) == 1, what="the seed at the sink")
        (delivered,) = sink.received()
        assert delivered.body == data_bytes(seed())
        assert delivered.headers["ce-id"] == json.loads(seed())["idempotency_key"]
        assert delivered.headers["ce-type"] == "com.inboxcomponents.message.received"

        host_pid = int(engine.inspect("container", name)["State"]["Pid"])
        _assert_pid_1_not_root(host_pid, uid)
        _assert_only_tmp_and_data_are_writable(host_pid)
        if store == "sqlite":
            assert (data / "gateway.db").stat().st_uid == uid, "the store is in the volume"

        started = time.monotonic()
        engine.check("stop", "--time", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 30)
        took = time.monotonic() - started
        print(f"\n{store}: `stop` (SIGTERM) took {took:.2f} s")
        state = engine.inspect("container", name)["State"]
        logs = _logs(engine, name)
        assert state["ExitCode"] == 0, logs
        assert '"signal":"SIGTERM","event":"shutdown_requested"' in logs
        assert '"event":"stopped"' in logs
        # An ignored SIGTERM would end in SIGKILL after STOP_TIMEOUT (exit code 137).
        assert took < STOP_TIMEOUT / 2, f"stop took {took:.1f} s"
    finally:
        GATEWAY_LOGS.append(_logs(engine, name))
        engine.run("rm", "--force", name)


def _wait_ready(engine: Engine, name: str, admin_port: int) -> None:
    def ready() -> bool:
        if http_status(f"http://127.0.0.1:{admin_port}/readyz") == 200:
            return True
        state = engine.inspect("container", name)["State"]
        if not state["Running"]:
            raise AssertionError(f"the container exited:\n{_logs(engine, name)}")
        return False

    wait_until(ready, timeout=30, what="the container's /readyz")


def _assert_pid_1_not_root(host_pid: int, uid: int) -> None:
    """The container's main process, seen from the host (`podman exec` cannot run where
    the rlimit wrapper is needed: it strips rlimits from the bundle, not from exec's
    process): PID 1 in its namespace is the gateway itself, no shell or init in between,
    running as the image's user."""
    status = Path(f"/proc/{host_pid}/status").read_text()
    assert _field(status, "NSpid")[-1] == "1", status
    assert _field(status, "Uid") == [str(uid)] * 4, status
    cmdline = Path(f"/proc/{host_pid}/cmdline").read_text().split("\0")
    assert cmdline[1:5] == ["/opt/venv/bin/webhook-gateway", "run", "--config", CONFIG]


def _assert_only_tmp_and_data_are_writable(host_pid: int) -> None:
    """From the container's mount table: the root filesystem is read-only, and the only
    writable file systems besides the kernel's own (/dev, /proc, /sys) and the files the
    engine provides (/etc/hosts and the like) are /tmp and the data volume."""
    mounts = {}
    for line in Path(f"/proc/{host_pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        mounts[fields[4]] = set(fields[5].split(","))  # mount point -> its options
    assert "ro" in mounts["/"], mounts["/"]
    engine_files = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv"}
    writable = {
        point
        for point, options in mounts.items()
        if "rw" in options
        and point not in engine_files
        and not point.startswith(("/dev", "/proc", "/sys"))
    }
    assert writable == {"/tmp", DATA}


def _field(status: str, name: str) -> list[str]:
    (line,) = (line for line in status.splitlines() if line.startswith(f"{name}:"))
    return line.split()[1:]


def _logs(engine: Engine, name: str) -> str:
    result = engine.run("logs", name)
    return result.stdout + result.stderr
