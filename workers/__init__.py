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

__all__ = ["app", "celery_app"]

_built: Celery | None = None


def celery_app() -> Celery:
    """The app, built once. Modules of this package get it here rather than as
    ``workers.app``: once the submodule ``workers.app`` has been imported (as a test or
    benchmark may do first), that name is the module."""
    global _built
    if _built is None:
        from fence.settings import InvalidSettingsError
        from workers.app import create_app  # the submodule first: ``app`` is set after it

        try:
            _built = create_app()
        except InvalidSettingsError as error:  # `celery -A workers` would print a traceback
            raise SystemExit(f"fence: error: {error}") from None
        globals()["app"] = _built  # later lookups of ``workers.app`` find it
    return _built


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    return celery_app()
