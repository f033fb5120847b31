"""The Celery task message that asks a worker to run a turn, built without Celery.

Producers, the CLI, the sweeper and the worker that chains a session's next
turn all publish a turn the same way: ``RunStore.publish`` pushes this message
onto the broker's list, as kombu's Redis transport would. So a producer needs
neither Celery nor the workers' code, and there is one way to publish a turn.

The message is Celery's task protocol version 2 (documented by Celery for
producers in other languages) in kombu's Redis envelope, field for field what
``Celery.send_task`` sends for ``fence.run_turn(session_id=…, run_id=…)`` with
the task id set to the run id, so Flower shows each turn by its run, and its
session first in the kwargs, where Flower's search finds a session's turns
exactly (``kwargs:session_id=<id>``). A turn is not a child of the turn that
published it, so it has no parent id.
``tests/runtime/test_turn_message.py`` compares it with Celery's own.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from functools import cache

from fence.runs.keys import TURN_QUEUE

TURN_TASK = "fence.run_turn"
"""The Celery task name of a turn (``workers.tasks.run_turn``)."""

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@cache
def _origin(pid: int) -> str:
    """Who published, as Celery names a process that is not a worker."""
    return f"gen{pid}@{socket.gethostname()}"


def turn_message(session_id: str, run_id: str) -> str:
    """The JSON text to push onto ``TURN_QUEUE`` for one delivery of ``run_id``.

    Each call has a fresh delivery tag: kombu keys a message it delivered and
    is waiting to be acknowledged by that tag, so two deliveries of one run
    (the sweeper's and a chained one, say) must not share it.
    """
    kwargs = {"session_id": session_id, "run_id": run_id}  # the session first, as shown
    body = json.dumps([[], kwargs, _EMBED])
    return json.dumps(
        {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": TURN_TASK,
                "id": run_id,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": run_id,
                "parent_id": None,
                "argsrepr": "()",
                "kwargsrepr": repr(kwargs),
                "origin": _origin(os.getpid()),
                "ignore_result": None,  # as send_task: the task's own setting applies
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": run_id,
                "reply_to": None,  # turns store no Celery result, so nobody waits for a reply
                "delivery_mode": 2,  # persistent
                "delivery_info": {"exchange": "", "routing_key": TURN_QUEUE},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )
