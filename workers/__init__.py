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
    from workers.app import create_app

    built = globals()["app"] = create_app()  # once: later lookups find the global
    return built
