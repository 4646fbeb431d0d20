"""Dependencies: settings, the job store, and the optional API key."""

from __future__ import annotations

import hmac

from fastapi import Request

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


def require_key(request: Request) -> None:
    """When an API key is configured, every data route needs ``Authorization: Bearer <key>``.

    :class:`api.guard.RequestGuard` already refuses such requests before their body is read; this dependency
    keeps the routes safe (and documented as protected) should they be mounted without it.
    """
    expected = request.app.state.settings.api_key
    if not expected:
        return
    if not key_matches(request.headers.get("authorization", ""), expected):
        raise ApiError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'")
