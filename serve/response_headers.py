"""``ResponseHeadersMiddleware``: fixed headers on every HTTP response of an app.

A Ray Serve replica names itself this way (``X-Prodet-Replica``), so operators and tests
can tell which replica answered, errors included; responses that Ray's proxy makes up
itself (a replica died mid-request) carry no such header.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ResponseHeadersMiddleware:
    """Pure ASGI middleware adding ``headers`` to each HTTP response."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    response_headers[name] = value
            await send(message)

        await self.app(scope, receive, add_headers)
