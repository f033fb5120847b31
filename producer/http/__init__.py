"""Client libraries for the HTTP gateway: ``FenceClient`` (sync) and ``AsyncFenceClient``.

    from producer.http import FenceClient

    with FenceClient("http://127.0.0.1:8000", token="...") as fence:  # or FENCE_API_URL/TOKEN
        run = fence.submit("alice", "hello", agent="demo")
        print(fence.wait(run.run_id).result)

They need httpx and pydantic, not FastAPI, Redis credentials or any worker code. Results
are the gateway's own response models (``producer.api_models``); errors are
``FenceAPIError`` subclasses (``producer.http.errors``). ``calls`` holds what both clients
send and how they retry, so the two behave alike.
"""

from producer.http.async_client import AsyncFenceClient
from producer.http.client import FenceClient
from producer.http.errors import (
    Conflict,
    FenceAPIError,
    GatewayUnreachable,
    IdempotencyConflict,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    NotWaiting,
    Rejected,
    TooLarge,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)

__all__ = [
    "AsyncFenceClient",
    "Conflict",
    "FenceAPIError",
    "FenceClient",
    "GatewayUnreachable",
    "IdempotencyConflict",
    "InternalError",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "NotWaiting",
    "Rejected",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
]
