"""Limits on a request's head, enforced where uvicorn parses it: before the application sees the request.

uvicorn (with httptools) accepts headers of any size and number, and waits for them for ever: a client can hold
a connection open by sending a header a byte at a time, or make the server buffer megabytes of headers. The
request body is guarded by :class:`api.guard.RequestGuard`; the head, which arrives before any application code
runs, is guarded here, by a subclass of uvicorn's httptools protocol that ``retouch serve`` hands to uvicorn
(its ``http`` setting takes a protocol class):

* the request line and headers must arrive within ``RETOUCH_HEADER_TIMEOUT_S`` (10 s) of the connection's
  opening or of the request's first byte: else ``408 request_timeout`` and the connection is closed (a connection
  that sends nothing at all is closed then too);
* at most ``RETOUCH_MAX_HEADER_BYTES`` (64 KiB) of request line and headers, and at most ``RETOUCH_MAX_HEADERS``
  (100) header fields: else ``431 headers_too_large``. The bytes are counted as they arrive, so no more than one
  network read beyond the limit is ever held.

Answers are the API's JSON errors, with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import error_body

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def guarded_protocol(*, header_timeout_s: float, max_header_bytes: int,
                     max_headers: int) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the limits above (pass it as ``uvicorn.run(..., http=...)``)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0  # of the request line's target and the headers, as the parser hands them over
            self._head_read = 0  # bytes read while the head was incomplete (it may buffer a header not yet whole)
            self._head_fields = 0
            self._in_head = True  # between a request's first byte (or the connection's opening) and its body
            self._messages = 0  # requests begun on this connection
            self._begun = False  # a request's first byte has arrived, and the request is not complete
            self._head_timer: asyncio.TimerHandle | None = None
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._in_head and self._head_timer is None:  # a new request on a kept-alive connection
                self._arm()
            # a read is counted when it lies wholly inside one request's head: it began there and the head is
            # still not complete (a read that ends a head, or holds a body, is not; the head's exact size is
            # then checked as it completes); so at most one read beyond the limit is ever held
            inside = (self._messages, self._begun and self._in_head)
            super().data_received(data)
            if inside == (self._messages, True) and self._in_head and not self._refused:
                self._head_read += len(data)
                if self._head_read > max_header_bytes:
                    self._refuse(431, "headers_too_large", f"the request's headers are larger than "
                                 f"{max_header_bytes} bytes (RETOUCH_MAX_HEADER_BYTES)")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes, self._head_read, self._head_fields = True, 0, 0, 0
            self._messages += 1
            self._begun = True

        def on_url(self, url: bytes) -> None:
            self._head_bytes += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_bytes += len(name) + len(value) + 4
            self._head_fields += 1
            if self._head_fields > max_headers:
                self._refuse(431, "headers_too_large", f"the request has more than {max_headers} header fields "
                             "(RETOUCH_MAX_HEADERS)")
                raise _Refused
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            if self._head_bytes > max_header_bytes:  # the exact size, known now
                self._refuse(431, "headers_too_large", f"the request's headers are larger than "
                             f"{max_header_bytes} bytes (RETOUCH_MAX_HEADER_BYTES)")
                raise _Refused
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._begun = True, False

        def send_400_response(self, msg: str) -> None:
            if not self._refused:  # (a parse stopped by a refusal is no malformed request)
                super().send_400_response(msg)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                self._refuse(408, "request_timeout", f"the request's headers did not arrive within "
                             f"{header_timeout_s:g} s (RETOUCH_HEADER_TIMEOUT_S)")

        def _refuse(self, status: int, code: str, message: str) -> None:
            self._refused = True
            self._disarm()
            if self.cycle is None or self.cycle.response_complete:  # no answer of an earlier request under way
                body = json.dumps(error_body(code, message)).encode()
                self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                                     b"connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body))
            self.transport.close()

    return GuardedHttpToolsProtocol


class _Refused(Exception):
    """Stops httptools' parse of a refused request (raised from a parser callback)."""
