"""``/console``: the web console, a static page and its script and style, shipped in this
package (``console/``), with no build step and nothing loaded from elsewhere.

The page and its assets are served without a token (they hold no data); the script
asks for the bearer token once and sends it with every API call. The page's Content
Security Policy lets it load and call nothing but this gateway, and run no inline
script, so content that slipped into the page as HTML still could not run.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_URL = "/console"
STATIC_URL = "/console/static"
DIRECTORY = Path(str(files("producer.gateway") / "console"))
CONSOLE_PATHS = frozenset(
    {CONSOLE_URL, *(f"{STATIC_URL}/{path.name}" for path in DIRECTORY.iterdir())}
)
"""Open without a token, like the docs pages: the same for everyone."""
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def install_console(app: FastAPI) -> None:
    app.mount(STATIC_URL, StaticFiles(directory=DIRECTORY), name="console-static")

    async def console() -> FileResponse:
        return FileResponse(
            DIRECTORY / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"},
        )

    app.add_api_route(CONSOLE_URL, console, methods=["GET"], include_in_schema=False)
