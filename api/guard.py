"""Checks that must run before a request body is read: the API key and the upload size.

FastAPI parses (and spools to disk) a whole multipart body before any dependency or route code runs, so a size
check or key check there comes after the server has already received everything the client chose to send. This
pure ASGI middleware sits in front of the application instead:

* ``/v1`` requests without the right key (or, for a download, a signed link) get ``401`` before a byte of the
  body is read;
* a request whose ``Content-Length`` is beyond its route's limit gets ``413`` before the body is read;
* a body without ``Content-Length`` (chunked) is counted as it streams in, and reading stops with ``413`` as soon
  as the count passes the limit;
* an upload that the data folder's disk has no room for (its ``Content-Length``, plus the free space the service
  keeps, ``RETOUCH_MIN_FREE_BYTES``) gets ``507`` before the body is read;
* a body that arrives too slowly is cut off with ``408``: it must keep up with ``RETOUCH_BODY_TIMEOUT_S`` (20 s)
  plus one second per ``RETOUCH_BODY_MIN_RATE`` bytes (500) received, the rule of Apache's ``mod_reqtimeout``
  (``body=20,MinRate=500``). A client announcing 100 MB and sending a byte a second is cut off after 20 s; a
  200 MB upload at 100 kB/s is never troubled. Headers have their own limits (:mod:`api.http`).

Early answers carry ``Connection: close``, so the server drops the connection instead of reading (and
discarding) the rest of the body to reach the next request.
"""

from __future__ import annotations

import asyncio
import shutil

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import key_matches, link_is_signed
from api.errors import DISK_FULL_MESSAGE, error_body
from api.settings import Settings

# Multipart framing around the files: boundaries, part headers (file names, content types) and form fields such
# as ``detectors``. A few hundred bytes per part; 1 MiB leaves room for a batch of the maximum number of files.
MULTIPART_ALLOWANCE = 1 << 20
CLOSE = {"Connection": "close"}


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body passes its limit; FastAPI lets HTTP exceptions through."""

    code = "upload_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message, headers=CLOSE)


class BodyTooSlow(StarletteHTTPException):
    """Raised from ``receive`` when a body falls behind its deadline (see the module's docstring)."""

    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(status_code=408, detail=message, headers=CLOSE)


def megabytes(size: int) -> str:
    """A byte count for messages: whole megabytes (MiB) from 1 MiB, else bytes."""
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size} bytes"


class RequestGuard:
    """ASGI middleware: API key and body-size limits, enforced before the application reads the body."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def body_limit(self, method: str, path: str) -> tuple[int, str]:
        """The most bytes a request body may hold on this route, and the limit's description for messages."""
        config = self.settings
        if method == "POST" and path == "/v1/analyses":
            return config.max_upload_bytes + MULTIPART_ALLOWANCE, (
                f"the {megabytes(config.max_upload_bytes)} upload limit (RETOUCH_MAX_UPLOAD_BYTES)")
        if method == "POST" and path == "/v1/comparisons":
            return 2 * config.max_upload_bytes + MULTIPART_ALLOWANCE, (
                f"the upload limit of two files of {megabytes(config.max_upload_bytes)} "
                "(RETOUCH_MAX_UPLOAD_BYTES)")
        if method == "POST" and path == "/v1/batches":
            return config.max_batch_upload_bytes + MULTIPART_ALLOWANCE, (
                f"the {megabytes(config.max_batch_upload_bytes)} batch upload limit "
                "(RETOUCH_MAX_BATCH_UPLOAD_BYTES)")
        # no other route takes a body: anything beyond the framing allowance is refused
        return MULTIPART_ALLOWANCE, f"the {megabytes(MULTIPART_ALLOWANCE)} limit for this route"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        expected_key = self.settings.api_key
        if expected_key and (path == "/v1" or path.startswith("/v1/")) \
                and not key_matches(headers.get("authorization", ""), expected_key) \
                and not (scope["method"] == "GET" and link_is_signed(path, scope["query_string"], expected_key)):
            await self._reject(scope, receive, send, 401, "unauthorized",
                               "missing or wrong API key: send 'Authorization: Bearer <key>'")
            return
        limit, limit_text = self.body_limit(scope["method"], path)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._reject(scope, receive, send, 400, "invalid_request",
                                   "the Content-Length header is not a number")
                return
            if int(declared) > limit:
                await self._reject(scope, receive, send, 413, "upload_too_large",
                                   f"the request body ({megabytes(int(declared))}) is larger than {limit_text}; "
                                   "send fewer or smaller files")
                return
        if limit > MULTIPART_ALLOWANCE:  # an upload: is there room for it?
            try:
                free = shutil.disk_usage(self.settings.data_dir).free
            except OSError:
                free = None
            needed = int(declared or 0) + self.settings.min_free_bytes
            if free is not None and free < needed:
                await self._reject(scope, receive, send, 507, "insufficient_storage", DISK_FULL_MESSAGE)
                return
        if (declared is None or int(declared) == 0) and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: nothing to count or to wait for (status calls)
            return
        await self._forward_counting(scope, receive, send, limit, limit_text)

    async def _forward_counting(self, scope: Scope, receive: Receive, send: Send, limit: int,
                                limit_text: str) -> None:
        """Pass the request on, stopping the body with 413 as soon as more than ``limit`` bytes have arrived, and
        with 408 when it falls behind its deadline."""
        received = 0
        response_started = False
        body_done = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        timeout, rate = self.settings.body_timeout_s, max(self.settings.body_min_rate, 1)

        async def counting_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, receive() waits for a disconnect for as long as the response takes
                return await receive()
            remaining = started + timeout + received / rate - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.0))
            except asyncio.TimeoutError:
                spent = loop.time() - started
                raise BodyTooSlow(f"the request body arrived too slowly ({received} bytes in {spent:.0f} s; a body "
                                  f"must keep up with {timeout:.0f} s plus 1 s per {rate} bytes); send it again "
                                  "over a faster connection") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    raise BodyTooLarge(f"the request body is larger than {limit_text}; "
                                       "send fewer or smaller files")
            else:
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow) as error:
            # normally FastAPI's exception handler has answered already; this covers reads outside a route
            if response_started:
                raise
            await self._reject(scope, receive, send, error.status_code, error.code, str(error.detail))

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
        response = JSONResponse(error_body(code, message), status_code=status, headers=CLOSE)
        await response(scope, receive, send)
