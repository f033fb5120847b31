"""Celery workers that run agent turns (see issue: distributed runtime)."""
