"""Celery workers that run agent turns: ``celery -A workers worker``.

``workers.app`` (what ``-A workers`` finds) is built on first use, not at import,
so importing ``workers`` reads no settings: a bad ``FENCE_*`` value is reported
by whatever uses it, as one line, not by a traceback from an import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    from fence.settings import InvalidSettingsError
    from workers.app import create_app

    try:
        built = globals()["app"] = create_app()  # once: later lookups find the global
    except InvalidSettingsError as error:  # `celery -A workers` would print a traceback
        raise SystemExit(f"fence: error: {error}") from None
    return built
