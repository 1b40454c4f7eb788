"""TLS for the public port, with the certificate reloaded when its files change.

One SSLContext serves every connection; loading a new chain into it affects
the handshakes that follow, so a renewed certificate (cert-manager, a mounted
Secret) is picked up without a restart and without dropping connections.
"""

from __future__ import annotations

import asyncio
import os
import ssl

import structlog

log = structlog.get_logger("gateway.tls")

CHECK_INTERVAL = 5.0  # seconds between looks at the files' modification times


class ReloadingCertificate:
    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        self._stamp = self._mtimes()
        self.context.load_cert_chain(cert, key)

    def _mtimes(self) -> tuple[float, float]:
        return os.stat(self.cert).st_mtime, os.stat(self.key).st_mtime

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; keep serving the old chain if
        the new one is unreadable or half-written (the next look retries)."""
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return False
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.error("tls_reload_failed", cert=self.cert, error=str(exc))
            return False
        self._stamp = stamp
        log.info("tls_certificate_reloaded", cert=self.cert)
        return True

    async def watch(self, interval: float = CHECK_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()
