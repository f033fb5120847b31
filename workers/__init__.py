"""Celery workers that run agent turns: ``celery -A workers worker``."""

from workers.app import create_app

app = create_app()

__all__ = ["app"]
