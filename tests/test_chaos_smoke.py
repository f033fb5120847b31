"""The chaos benchmark's promise on every CI run, at its smoke size: under worker
SIGKILL and SIGSTOP past the lease, Redis SIGKILL and restart, and a stalled memory
backend, no turn is lost, duplicated or reordered, no failed or cancelled run's turn
is in memory, and every run ends."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.slow
def test_the_chaos_benchmark_meets_its_targets_in_every_fault_mode():
    done = subprocess.run(
        [sys.executable, "bench/chaos.py", "--smoke", "--strict"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    verdicts = [line for line in done.stdout.splitlines() if "| 0/0/0/0/0 |" in line]
    modes = ("baseline", "kill", "stop", "redis", "memory-stall")
    assert {line.split("(")[0].strip("| ") for line in verdicts} == set(modes)
    assert len(verdicts) == 6 and all(line.rstrip(" |").endswith("PASS") for line in verdicts)
