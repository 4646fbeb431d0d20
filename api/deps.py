"""Dependencies: settings, the job store, and the optional API key (sent as a header, or carried by a signed
download link)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.settings import Settings
from api.store import JobStore


def settings(request: Request) -> Settings:
    return request.app.state.settings


def store(request: Request) -> JobStore:
    return request.app.state.store


def key_matches(authorization: str, expected: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <expected>`` (compared in constant time)."""
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


LINK_SECONDS = 600  # how long a signed download link may be started; a download once started runs to its end


def link_signature(key: str, path: str, expires: int) -> str:
    """The signature of a download link for ``path`` valid until ``expires`` (seconds since the epoch): an HMAC
    under the service's key, so only the service can make one and it opens nothing but that path."""
    return hmac.new(key.encode(), f"retouch-download\n{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signed_link(key: str | None, path: str, *, now: float | None = None) -> tuple[str, float | None]:
    """A link to ``path`` a browser can follow without sending the key (a download by ``<a href>`` carries no
    header), and when it stops opening; ``path`` itself, never expiring, where the service has no key."""
    if not key:
        return path, None
    expires = int(now if now is not None else time.time()) + LINK_SECONDS
    return f"{path}?{urlencode({'expires': expires, 'signature': link_signature(key, path, expires)})}", expires


def link_is_signed(path: str, query_string: bytes | str, key: str) -> bool:
    """Whether a request's query holds a valid, unexpired signature for its ``path`` (see :func:`signed_link`)."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    query = parse_qs(query_string)
    expires, signature = query.get("expires", [""])[0], query.get("signature", [""])[0]
    if not expires.isdigit() or not signature or int(expires) < time.time():
        return False
    return hmac.compare_digest(signature.encode(), link_signature(key, path, int(expires)).encode())


# declared so the OpenAPI document (and /docs' "Authorize") shows how the key is sent; checked below
BEARER = HTTPBearer(auto_error=False, description="The service's key (retouch serve --api-key), when it has one")


def require_key(request: Request,
                _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None) -> None:
    """When an API key is configured, every data route needs ``Authorization: Bearer <key>``.

    :class:`api.guard.RequestGuard` already refuses such requests before their body is read; this dependency
    keeps the routes safe (and documented as protected) should they be mounted without it.
    """
    expected = request.app.state.settings.api_key
    if not expected:
        return
    if not key_matches(request.headers.get("authorization", ""), expected):
        raise ApiError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'")


def require_key_or_signed_link(request: Request,
                               _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None) -> None:
    """:func:`require_key`, or a signed link to this very path (downloads the browser page starts)."""
    expected = request.app.state.settings.api_key
    if expected and link_is_signed(request.url.path, request.scope.get("query_string", b""), expected):
        return
    require_key(request)
