"""Advertise this worker's agents in Redis (``fence.runs.advertised``) while it consumes.

Written when the worker is ready, refreshed from the consumer's event heartbeat (so a
worker whose consumer stopped stops being advertised once ``FENCE_AGENTS_TTL_S``
passes), and withdrawn when the worker shuts down.
"""

from __future__ import annotations

import logging
import time

from celery.signals import heartbeat_sent, worker_ready, worker_shutdown

from fence.runs import advertised, load_registry
from fence.settings import get_settings
from workers.tasks import store

log = logging.getLogger(__name__)

_hostname: str | None = None
_last = 0.0


def _advertise() -> None:
    global _last
    settings = get_settings()
    assert _hostname is not None
    try:
        names = list(load_registry(settings.agents))
        advertised.advertise(store().redis, _hostname, names, settings.agents_ttl_s)
        _last = time.monotonic()
    except Exception as error:  # Redis down: the next heartbeat tries again
        log.warning("advertising agents failed: %s: %s", type(error).__name__, error)


@worker_ready.connect
def on_ready(sender: object = None, **_: object) -> None:
    global _hostname
    _hostname = getattr(sender, "hostname", None)
    if _hostname:
        _advertise()


@heartbeat_sent.connect
def on_heartbeat(**_: object) -> None:
    if _hostname and time.monotonic() - _last >= get_settings().agents_ttl_s / 3:
        _advertise()


@worker_shutdown.connect
def on_shutdown(**_: object) -> None:
    if _hostname:
        try:
            advertised.withdraw(store().redis, _hostname)
        except Exception as error:  # its advertisement expires instead
            log.warning("withdrawing agents failed: %s: %s", type(error).__name__, error)
