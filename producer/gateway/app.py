"""``create_app``: the gateway's FastAPI app, wired from its parts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from fence.settings import Settings, get_settings
from producer.client import Producer
from producer.gateway import probes, routes, streams
from producer.gateway.console import install_console
from producer.gateway.docs import install_docs
from producer.gateway.errors import GatewayConfigError, documented, install_error_handlers
from producer.gateway.guard import Guard
from producer.gateway.state import GatewayState

BEARER = "HTTPBearer"
"""The security scheme's name in the document."""

DESCRIPTION = (
    "Enqueue agent runs keyed by session and follow them. Errors always have "
    "the shape {error: {code, message, field, run_id, details}}."
)


def create_app(
    settings: Settings | None = None,
    producer: Producer | None = None,
    *,
    require_auth: bool | None = None,
) -> FastAPI:
    """Build the gateway. ``require_auth`` defaults to "tokens are configured"; whether it
    may be off is the launcher's decision (``serve`` allows that only on loopback)."""
    settings = settings or (producer.settings if producer else get_settings())
    if require_auth is None:
        require_auth = bool(settings.api_tokens)
    if require_auth and not settings.api_tokens:
        raise GatewayConfigError("auth is required but FENCE_API_TOKENS names no token")
    if producer is None:
        producer = Producer(settings=settings)
    app = FastAPI(
        title="Fence gateway",
        version="1",
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # install_docs serves them with their assets, for offline use
        redoc_url=None,
    )
    install_docs(app)
    install_console(app)
    app.state.gateway = GatewayState.build(settings, producer)
    for api in (routes.router, streams.router):
        app.include_router(
            api,
            responses=documented(400, 401, 413, 422, 503)
            if require_auth
            else documented(400, 413, 422, 503),
        )
    app.include_router(probes.router)
    # Every route with its full path, to match a request that routing never saw or missed.
    declared = [
        *routes.router.routes,
        *streams.router.routes,
        *probes.router.routes,
        *app.router.routes,
    ]
    app.add_middleware(
        Guard,
        tokens=settings.api_tokens,
        require_auth=require_auth,
        max_body=settings.api_max_body_bytes,
        metrics=app.state.gateway.metrics,
        routes=declared,
    )
    install_error_handlers(app, declared)
    _document(app, producer, settings.webhook_allow, require_auth)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await app.state.gateway.aclose()


def _document(
    app: FastAPI, producer: Producer, webhook_prefixes: list[str], require_auth: bool
) -> None:
    """Name the agents this deployment runs, and the webhooks it takes, in the document, so
    clients (and schemathesis) know which values are valid: the agents live workers
    advertise when the document is first asked for (any agent name, if none does yet),
    and ``FENCE_WEBHOOK_ALLOW``. A webhook is documented as an allowed prefix and a plain
    path after it (a subset of what is accepted); none when none is allowed.

    With auth on, every ``/v1`` operation is documented as needing the bearer token. The
    ``Guard`` checks it; a FastAPI security dependency would only repeat that check on
    every request."""
    build = app.openapi
    webhook_forms: list[dict[str, Any]] = [{"type": "null"}]
    if webhook_prefixes:
        starts = "|".join(re.escape(prefix) for prefix in webhook_prefixes)
        webhook_forms.insert(0, {"type": "string", "pattern": f"^({starts})[A-Za-z0-9_~/-]*$"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            properties = document["components"]["schemas"]["SubmitBody"]["properties"]
            agents = sorted(producer.agents)
            if agents:
                properties["agent"]["anyOf"] = [
                    {"type": "string", "enum": agents},
                    {"type": "null"},
                ]
            properties["webhook"].pop("maxLength", None)
            properties["webhook"]["anyOf"] = webhook_forms
            if require_auth:
                _require_bearer(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _require_bearer(document: dict[str, Any]) -> None:
    document["components"]["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from FENCE_API_TOKENS.",
        }
    }
    for path, operations in document["paths"].items():
        if path.startswith(routes.router.prefix):
            for operation in operations.values():
                operation["security"] = [{BEARER: []}]
