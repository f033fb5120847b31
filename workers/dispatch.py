"""Publish a run's Celery task. Task id = run id, so Flower shows each turn by its run."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from workers.app import RUN_TURN

Dispatch = Callable[[str, str], None]


def dispatcher(app: Celery) -> Dispatch:
    """A function that publishes ``fence.run_turn`` for (session_id, run_id) on ``app``.

    Every turn after a session's first is published by the worker that ran the
    turn before it, so this is on the turn's path. Two costs Celery would pay
    per message are paid up front: the argument reprs Flower shows (two short
    identifiers: exact, where Celery would run its truncating ``saferepr``), and
    the queue declaration (``declare=[]``): Celery routes a task for a direct
    exchange's queue straight to the queue's Redis list, and workers declare
    their queues when they start.
    """

    def dispatch(session_id: str, run_id: str) -> None:
        kwargs = {"run_id": run_id, "session_id": session_id}
        app.send_task(
            RUN_TURN,
            kwargs=kwargs,
            task_id=run_id,
            argsrepr="()",
            kwargsrepr=repr(kwargs),
            declare=[],
        )

    return dispatch
