"""A worker whose memory or agents cannot be used stops at start-up, saying why,
instead of starting and failing every turn."""

from __future__ import annotations

import pytest

from producer.stack.launch import launch_worker
from tests.support import REPO

from .conftest import Runtime


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("FENCE_MEMORY", "dynamodb://t1?region=us-east-1", "FENCE_MEMORY: table_name"),
        ("FENCE_MEMORY", "fleeting://", "FENCE_MEMORY: fleeting:// keeps history"),
        ("FENCE_AGENTS", "no.such.module:registry", "FENCE_AGENTS"),
    ],
)
def test_a_worker_with_unusable_settings_exits_at_start_naming_them(
    runtime: Runtime, tmp_path, variable, value, rule
):
    worker = launch_worker(
        "bad", {**runtime.env, variable: value}, cwd=REPO, log_path=tmp_path / "bad.log"
    )
    try:
        worker.wait_for(f"fence worker: {rule}", timeout=60)
        assert worker.process.wait(timeout=30) == 2
    finally:
        worker.stop()
