"""Importing the packages has no side effects: no settings are read, so a bad
``FENCE_*`` value is reported by what uses it, as one line, never by a traceback
from an import."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import REPO

MODULES = [
    "fence",
    "workers",
    "producer",
    "producer.cli.main",
    "producer.gateway",
    "producer.http",
    "producer.stack.command",
]


def test_importing_every_package_reads_no_settings():
    done = subprocess.run(
        [sys.executable, "-c", f"import {', '.join(MODULES)}"],
        env={**os.environ, "FENCE_LEASE_MS": "not-a-number", "FENCE_REDIS_URL": "redis://x:1"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
