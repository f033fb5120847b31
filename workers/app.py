"""The Celery app: ``celery -A workers worker`` / ``beat`` / ``flower``."""

from __future__ import annotations

from celery import Celery

from fence.runs.keys import TURN_QUEUE
from fence.settings import Settings, get_settings

SWEEP = "fence.sweep"


def create_app(settings: Settings | None = None) -> Celery:
    """Build the app with the settings the runtime's guarantees rely on."""
    settings = settings or get_settings()
    app = Celery("fence", broker=settings.redis_url, include=["workers.tasks", "workers.advertise"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=TURN_QUEUE,  # where fence.runs.turn_message publishes turns
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=False,  # publishing is on the turn's path; Flower shows turns
        # from "received" on, and queue wait is in the fence_queue_wait_seconds metric.
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": int(settings.turn_timeout_s * 2) + 60},
        task_soft_time_limit=settings.turn_timeout_s,
        task_time_limit=settings.turn_timeout_s + 30,
        beat_schedule={
            "fence-sweeper": {"task": SWEEP, "schedule": settings.sweep_interval_s},
        },
    )
    app.conf.broker_use_ssl = settings.broker_use_ssl
    return app
