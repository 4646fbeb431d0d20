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


def require_key(request: Request) -> None:
    """When an API key is configured, every data route needs ``Authorization: Bearer <key>``."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'")
