"""Clients that enqueue agent runs: Python API, HTTP gateway, CLI."""
