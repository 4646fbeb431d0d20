"""Errors the API returns: ``{"error": {"code": ..., "message": ...}}`` with the right status, never a trace."""

from __future__ import annotations

import errno
import logging
import shutil
import sqlite3

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("retouch.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


FULL_DISK = {errno.ENOSPC, errno.EDQUOT}
DISK_FULL_MESSAGE = ("the service's disk is full, so nothing was stored; try again later (the operator must free "
                     "space in the data folder)")
RETRY = {"Retry-After": "10"}

# what Starlette's multipart parser says when a body holds more parts than it reads (1,000 files, 1,000 fields)
MULTIPART_LIMITS = {
    "Too many files": ("too_many_files", "the request holds more than 1,000 files, the most one request may send; "
                                         "send the scans in a zip archive, or in several batches"),
    "Too many fields": ("invalid_request", "the request holds more than 1,000 form fields; a submission takes "
                                           "its files and a 'detectors' field"),
}


def store_failure(error: sqlite3.Error, request: Request) -> ApiError:
    """The answer for a job-store failure: 507 when the data folder's disk is full, 503 while the database is
    locked by another process or cannot be written (the request can be sent again)."""
    text = str(error)
    settings = getattr(request.app.state, "settings", None)
    low = False
    if settings is not None:
        try:
            low = shutil.disk_usage(settings.data_dir).free < max(settings.min_free_bytes, 1)
        except OSError:
            pass
    if "full" in text or low:
        return ApiError(507, "insufficient_storage", DISK_FULL_MESSAGE)
    if "locked" in text or "busy" in text:
        return ApiError(503, "store_busy", "the job database is busy (another process holds it); try again in a "
                        "few seconds")
    return ApiError(503, "store_unavailable", f"the job database cannot be used now ({text}); try again later")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        headers = RETRY if error.status in (503, 507) else None
        return JSONResponse(error_body(error.code, error.message), status_code=error.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = getattr(error, "code", None) or {404: "not_found", 405: "method_not_allowed",
                                                 401: "unauthorized"}.get(error.status_code, "http_error")
        message = str(error.detail)
        if error.status_code == 400 and code == "http_error":  # a body the parsers refused
            known = next((mapped for start, mapped in MULTIPART_LIMITS.items() if message.startswith(start)), None)
            code, message = known or ("invalid_request", f"the request body cannot be parsed ({message})")
        return JSONResponse(error_body(code, message), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(sqlite3.Error)
    async def _store_error(request: Request, error: sqlite3.Error) -> JSONResponse:
        log.warning("job store: %s", error)
        return await _api_error(request, store_failure(error, request))

    @app.exception_handler(OSError)
    async def _os_error(request: Request, error: OSError) -> JSONResponse:
        if error.errno in FULL_DISK:
            log.warning("disk full: %s", error)
            return await _api_error(request, ApiError(507, "insufficient_storage", DISK_FULL_MESSAGE))
        return await _internal(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", []))
        message = first.get("msg", "invalid request")
        if "Expected UploadFile" in message:  # a part without filename= is a text field to the multipart parser
            field = where.removeprefix("body.")
            message = (f"{field} must be a file: send it as a multipart part with a file name "
                       f'(Content-Disposition: form-data; name="{field}"; filename="scan.jpg")')
            return JSONResponse(error_body("invalid_request", message), status_code=422)
        return JSONResponse(error_body("invalid_request", f"{where}: {message}"), status_code=422)

    @app.exception_handler(Exception)
    async def _internal(_: Request, error: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse(error_body("internal", "internal error; see the server log"), status_code=500)
