"""Clients that enqueue agent runs: ``from producer import Producer``."""

from producer.client import Producer, Run, RunCancelled, RunError, RunFailed, RunRejected

__all__ = ["Producer", "Run", "RunCancelled", "RunError", "RunFailed", "RunRejected"]
