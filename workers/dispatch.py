"""Publish a run's Celery task. Task id = run id, so Flower shows each turn by its run."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from workers.app import RUN_TURN

Dispatch = Callable[[str, str], None]


def dispatcher(app: Celery) -> Dispatch:
    """A function that publishes ``fence.run_turn`` for (session_id, run_id) on ``app``."""

    def dispatch(session_id: str, run_id: str) -> None:
        app.send_task(RUN_TURN, kwargs={"run_id": run_id, "session_id": session_id}, task_id=run_id)

    return dispatch
