"""The HTTP gateway: enqueue and follow agent runs from any language.

``create_app`` builds the FastAPI app over a ``Producer`` (so validation,
idempotency and double-texting behave exactly as in the Python client);
``serve`` runs it with uvicorn and refuses to listen beyond loopback without
bearer tokens; ``python -m producer.gateway --host 127.0.0.1 --port 8000``
does that from the command line. FastAPI is the optional ``api`` extra, so
only this package imports it.

One module per job: ``errors`` (the one error shape and what turns failures
into it), ``guard`` (auth, body limit and metrics before routing), ``routes``
(the ``/v1`` API), ``streams`` (its event streams, Server-Sent Events), ``probes``
(``/healthz``, ``/metrics``), ``state`` (what the routes share, as a dependency),
``metrics``, ``app`` (``create_app``) and ``serve``. The bodies, as the OpenAPI
document shows them, are ``producer.api_models``, shared with the client libraries.
"""

from producer.gateway.app import create_app
from producer.gateway.errors import GatewayConfigError, GatewayError
from producer.gateway.routes import MAX_WAIT_S
from producer.gateway.serve import is_loopback, main, serve

__all__ = [
    "MAX_WAIT_S",
    "GatewayConfigError",
    "GatewayError",
    "create_app",
    "is_loopback",
    "main",
    "serve",
]
