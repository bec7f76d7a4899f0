"""Refuse request bodies over a byte limit with 413, before they are buffered.

A declared ``Content-Length`` over the limit is refused without reading the body. Bodies
without one (chunked uploads) are counted as they stream in; once past the limit the
application's reads fail, whatever it answers is discarded, and the client gets the 413.
"""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyTooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """Pure ASGI middleware enforcing ``max_bytes`` on every HTTP request body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, f"the request body has {int(declared):,} bytes")
            return
        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                return  # the app's answer to a failed read; the 413 replaces it
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not response_started:
            await self._refuse(send, f"the request body exceeds {self.max_bytes:,} bytes")

    async def _refuse(self, send: Send, what: str) -> None:
        body = json.dumps(
            {
                "error": "payload_too_large",
                "detail": f"{what}; the limit is {self.max_bytes:,} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
