"""Launching the gateway: ``serve`` under uvicorn, and ``python -m producer.gateway``.

Without bearer tokens auth is off, which is only safe when nothing but this machine
can connect: ``serve`` refuses any other address.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

from fence.settings import InvalidSettingsError, Settings, get_settings
from producer.gateway.app import create_app
from producer.gateway.errors import GatewayConfigError


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    host: str,
    port: int,
    settings: Settings | None = None,
    *,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the gateway with uvicorn until interrupted; ``GatewayConfigError`` instead of
    serving without tokens on an address other machines can reach."""
    settings = settings or get_settings()
    if not settings.api_tokens and not is_loopback(host):
        raise GatewayConfigError(
            f"refusing to serve on {host}:{port} without authentication: set FENCE_API_TOKENS "
            "to one or more comma-separated bearer tokens, or bind to 127.0.0.1"
        )
    import uvicorn

    app = create_app(settings, require_auth=bool(settings.api_tokens))
    auth = f"on, {len(settings.api_tokens)} token(s)" if settings.api_tokens else "off (loopback)"
    print(f"fence gateway: auth {auth}", file=sys.stderr, flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m producer.gateway``: settings come from ``FENCE_*`` variables."""
    parser = argparse.ArgumentParser(
        prog="python -m producer.gateway",
        description="Serve the Fence HTTP gateway (settings from FENCE_* variables).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--no-access-log", action="store_true", help="do not log each request (load tests)"
    )
    args = parser.parse_args(argv)
    try:
        serve(
            args.host,
            args.port,
            get_settings(),
            log_level=args.log_level,
            access_log=not args.no_access_log,
        )
    except (GatewayConfigError, InvalidSettingsError) as error:
        print(f"fence gateway: {error}", file=sys.stderr)
        return 2
    return 0
