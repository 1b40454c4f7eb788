"""Token auth: the shared secret itself is sent, in a header or as the last
path segment. Weaker than a signature (a captured request reveals the
secret, and the body is not authenticated), for senders that can do no more.

For `path_segment: true` the listener routes `POST <path>/<secret>` to the
source, strips the segment from the path and passes it as the pseudo header
`b":path-token"` (PATH_TOKEN), so this module stays free of routing.
"""

from __future__ import annotations

import hashlib
from hmac import compare_digest
from typing import TYPE_CHECKING, Final

from gateway.errors import Rejection
from gateway.sources.base import Headers, Source, missing_signature
from gateway.sources.fields import header

if TYPE_CHECKING:
    from collections.abc import Iterable

    from gateway.config_sources import Secret, SourceConfig, TokenAuth

PATH_TOKEN: Final = b":path-token"


class TokenCheck:
    __slots__ = ("_digests", "_header", "_label")

    def __init__(self, auth: TokenAuth, secrets: Iterable[Secret]) -> None:
        self._header = PATH_TOKEN if auth.path_segment else auth.header.lower().encode("ascii")
        self._label = "path token" if auth.path_segment else f"{auth.header} header"
        # Comparing fixed-size digests keeps the comparison constant-time even
        # when the offered token's length differs from the secret's.
        self._digests = tuple(hashlib.sha256(s.reveal()).digest() for s in secrets)

    def check(self, headers: Headers) -> Rejection | None:
        value = header(headers, self._header)
        if not value:
            return missing_signature(self._label)
        offered = hashlib.sha256(value).digest()
        matched = False
        for digest in self._digests:  # all of them: the time says nothing about which
            matched |= compare_digest(offered, digest)
        return None if matched else Rejection("token mismatch", status=401, code="bad_token")


class TokenSource(Source):
    __slots__ = ("_token",)

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        if config.token is None:
            raise ValueError("kind token needs a token")
        self._token = TokenCheck(config.token, config.secrets)

    def early_check(self, headers: Headers, now: float) -> Rejection | None:
        return self._token.check(headers)

    def authenticate(self, headers: Headers, body: bytes, now: float) -> None:
        rejection = self._token.check(headers)
        if rejection is not None:
            raise rejection
