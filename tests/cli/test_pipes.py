"""Output to a reader that went away (``| head``, a ``| tee`` that died) never
breaks a command: no traceback, and ``fence stack`` still shuts everything down."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess

from fence.memory.sqlite import SQLiteMemory
from fence.messages import Message, Role

from .conftest import descendants, fence_script, kill_groups, still_running

PIPE_BUFFER = 64 * 1024
"""Linux's pipe capacity: output beyond it blocks until the reader reads, so a reader
that exits first is certain to break the pipe."""


def test_history_piped_to_head_exits_quietly(tmp_path):
    db = tmp_path / "memory.db"
    line = "a long line of history " * 20
    turn = [Message(role=Role.USER, content=line), Message(role=Role.ASSISTANT, content=line)]
    memory = SQLiteMemory(db, "long")
    for n in range(2 * PIPE_BUFFER // (2 * len(line)) + 1):
        memory.commit_turn(f"turn-{n}", turn)
    command = " ".join(shlex.quote(part) for part in [*fence_script(), "history", "long"])

    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command} | head -1"],
        env={**os.environ, "FENCE_MEMORY": f"sqlite:///{db}"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.stdout.startswith("session long: ")
    assert done.stderr == "" and done.returncode == 0


def test_ctrl_c_stops_the_whole_stack_when_its_output_pipe_is_closed(tmp_path):
    """``fence stack --quiet 2>&1 | tee x.log``, then Ctrl-C: tee is gone first."""
    argv = [*fence_script(), "stack", "--quiet", "--no-flower", "--no-gateway"]
    argv += ["--workers", "1", "--dir", str(tmp_path / "stack")]
    stack = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path, text=True
    )
    tree = []
    try:
        assert stack.stdout is not None
        for line in stack.stdout:
            if "fence stack is up" in line:
                break
        tree = descendants(stack.pid)
        assert any("celery" in proc.cmdline for proc in tree)
        stack.stdout.close()  # the reader exits

        os.kill(stack.pid, signal.SIGINT)

        assert stack.wait(timeout=60) == 0
        assert still_running(tree) == []
    finally:
        kill_groups(tree + descendants(stack.pid))
        stack.kill()
        stack.wait()
