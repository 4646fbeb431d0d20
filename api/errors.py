"""Errors the API returns: ``{"error": {"code": ..., "message": ...}}`` with the right status, never a trace."""

from __future__ import annotations

import logging

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


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.code, error.message), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = getattr(error, "code", None) or {404: "not_found", 405: "method_not_allowed",
                                                 401: "unauthorized"}.get(error.status_code, "http_error")
        return JSONResponse(error_body(code, str(error.detail)), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

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
