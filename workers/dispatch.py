"""Publish a run's Celery task. Task id = run id, so Flower shows each turn by its run."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from celery import Celery

from workers.app import RUN_TURN

Dispatch = Callable[[str, str], None]


def dispatcher(app: Celery) -> Dispatch:
    """A function that publishes ``fence.run_turn`` for (session_id, run_id) on ``app``.

    Every turn after a session's first is published by the worker that ran the
    turn before it, so this is on the turn's path. It builds and sends the
    message with the two halves of ``Celery.send_task`` (``create_task_message``,
    ``send_task_message``) and skips what ``send_task`` would repeat per message:
    the route (``task_routes`` are honoured) is resolved once, on first use; the
    queue is not declared again (workers declare their queues when they start,
    and a direct exchange's message goes straight to the queue's list); the
    reprs Flower shows are built exactly, where Celery would run its truncating
    ``saferepr``. A turn is not a child of the turn that published it, so no
    parent id is set.
    """
    amqp = app.amqp

    @cache
    def route() -> dict[str, Any]:
        return amqp.router.route({}, RUN_TURN)

    def dispatch(session_id: str, run_id: str) -> None:
        kwargs = {"run_id": run_id, "session_id": session_id}
        message = amqp.create_task_message(
            run_id,
            RUN_TURN,
            (),
            kwargs,
            reply_to=app.thread_oid,
            ignore_result=None,  # as send_task: the task's own setting applies
            argsrepr="()",
            kwargsrepr=repr(kwargs),
        )
        with app.producer_or_acquire() as producer:
            amqp.send_task_message(producer, RUN_TURN, message, declare=[], **route())

    return dispatch
