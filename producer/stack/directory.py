"""What a stack keeps in its directory: a lock (one stack per directory), its secrets,
the env file other shells source, and the record of its children's pids."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shlex
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from producer.stack.config import StackError
from producer.stack.processes import ManagedProcess

ENV_FILE = "env"
"""``source`` it to use the stack from another shell."""
SECRETS_FILE = "secrets.json"
"""Mode 0600: the gateway token and Flower login, reused by every start."""
PIDS_FILE = "pids.json"
LOCK_FILE = "stack.lock"
LEFTOVER_STOP_S = 15.0


class StackDirectory:
    """The files of the stack in ``path``; ``logs`` holds each child's log."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.logs = self.path / "logs"
        self._lock: IO[str] | None = None

    def lock(self) -> None:
        """Create the directory and hold its lock, or raise ``StackError``: two stacks
        on one directory would share Redis's AOF files."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self._lock = open(self.path / LOCK_FILE, "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.unlock()
            raise StackError(
                f"--dir: another fence stack is running with {self.path}; stop it "
                "or pass another --dir"
            ) from None

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def secrets(self, rotate: bool = False) -> dict[str, str]:
        """The gateway token (``api_tokens``) and Flower's login (``flower_auth``): made
        once, kept in a file only the user can read, and reused by every start (so a
        shell that sourced the env file keeps working) until ``rotate``."""
        path = self.path / SECRETS_FILE
        stored: dict[str, str] = {}
        if not rotate:
            with contextlib.suppress(OSError, ValueError):
                stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict) or not {"api_tokens", "flower_auth"} <= stored.keys():
            stored = {
                "api_tokens": secrets.token_urlsafe(24),
                "flower_auth": f"fence:{secrets.token_urlsafe(12)}",
            }
            write_private(path, json.dumps(stored))
        return stored

    def write_env(self, env: Mapping[str, str]) -> None:
        """The env file: an ``export`` line per variable (it holds secrets: mode 0600)."""
        lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
        write_private(self.path / ENV_FILE, "\n".join(lines) + "\n")

    def remember(self, processes: Iterable[ManagedProcess]) -> None:
        """Record the children (pid and start time), so a later stack on this directory
        can stop them if this one is killed before it could."""
        record = {p.name: [p.process.pid, start_time(p.process.pid)] for p in processes}
        (self.path / PIDS_FILE).write_text(json.dumps(record), encoding="utf-8")

    def forget(self) -> None:
        """The children are stopped: drop their record."""
        (self.path / PIDS_FILE).unlink(missing_ok=True)

    def stop_leftovers(self) -> str | None:
        """Stop the children of a previous stack on this directory that died without
        stopping them (SIGKILL, a closed terminal); return a note naming them, if any."""
        try:
            record = json.loads((self.path / PIDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        leftovers = {
            name: pid
            for name, (pid, started) in record.items()
            if started is not None and start_time(pid) == started
        }
        _stop_groups(leftovers.values())
        self.forget()
        if not leftovers:
            return None
        return "stopped processes a previous stack on this directory left running: " + ", ".join(
            f"{name} (pid {pid})" for name, pid in leftovers.items()
        )


def _stop_groups(pids: Iterable[int]) -> None:
    """SIGTERM each process group, wait for its leader to go, then SIGKILL the rest."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + LEFTOVER_STOP_S
    while time.monotonic() < deadline and any(start_time(pid) is not None for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by this user only (it holds secrets)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when the file existed with other bits
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone or a zombie.

    Compared with a recorded value it tells a process from a later one that
    reused its pid.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])
