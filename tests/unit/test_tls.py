"""The public port's certificate is reloaded when its files change."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from gateway.tls import ReloadingCertificate

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not found")


def make_cert(directory: Path, name: str) -> tuple[str, str]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def served_common_name(context: ssl.SSLContext) -> str:
    """Handshake once against a server using `context`; the CN it presented."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=serve)
        thread.start()
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port)) as raw, client.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        thread.join(5)
    text = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
        input=der, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    return text.strip().rsplit("=", 1)[-1].strip()


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    return tmp_path


def test_a_changed_certificate_is_served_to_the_next_handshake(certs: Path) -> None:
    old_cert, old_key = make_cert(certs, "old")
    new_cert, new_key = make_cert(certs, "new")
    live_cert, live_key = str(certs / "live.crt"), str(certs / "live.key")
    shutil.copy(old_cert, live_cert)
    shutil.copy(old_key, live_key)
    reloading = ReloadingCertificate(live_cert, live_key)
    assert served_common_name(reloading.context) == "old"
    assert not reloading.reload_if_changed()
    shutil.copy(new_cert, live_cert)
    shutil.copy(new_key, live_key)
    stamp = os.stat(live_cert).st_mtime + 1  # mtime resolution: make the change visible
    os.utime(live_cert, (stamp, stamp))
    assert reloading.reload_if_changed()
    assert served_common_name(reloading.context) == "new"


def test_a_broken_new_certificate_keeps_the_old_one(certs: Path) -> None:
    cert, key = make_cert(certs, "good")
    reloading = ReloadingCertificate(cert, key)
    Path(cert).write_text("-----BEGIN CERTIFICATE-----\nhalf written")
    stamp = os.stat(cert).st_mtime + 1
    os.utime(cert, (stamp, stamp))
    assert not reloading.reload_if_changed()
    assert served_common_name(reloading.context) == "good"
