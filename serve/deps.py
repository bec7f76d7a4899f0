"""Request dependencies: the running service and the optional API key check.

Both are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency
in its thread pool, two thread hops per request that cost the event loop more than the
checks themselves.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from prodet.serve.errors import ApiError
from prodet.serve.service import Service

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


async def get_service(request: Request) -> Service:
    """The app's ``Service``; 503 before start-up finished or after shutdown began."""
    service: Service | None = getattr(request.app.state, "service", None)
    if service is None or not service.ready:
        raise ApiError(503, "not_ready", "the model is not loaded yet", {"Retry-After": "1"})
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def require_api_key(
    service: ServiceDep,
    header_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Refuse with 401 unless the configured API key (if any) came with the request.

    The key is accepted as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY`` and compared
    in constant time.
    """
    expected = service.settings.api_key
    if expected is None:
        return
    supplied = header_key or (bearer.credentials if bearer is not None else None)
    if supplied is None or not secrets.compare_digest(
        supplied.encode(), expected.get_secret_value().encode()
    ):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong API key; send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
            {"WWW-Authenticate": "Bearer"},
        )


ApiKeyDep = Depends(require_api_key)
