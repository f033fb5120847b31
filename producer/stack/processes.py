"""A child process whose output is watched line by line, and free ports on loopback."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from fence import console


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` on loopback right now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ManagedProcess:
    """A child process in its own process group whose output is watched line by line.

    ``wait_for`` blocks until a line matches (an event, not a sleep), and
    ``kill`` takes down the whole group, the way a crashed machine would.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        echo: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._launch = {"env": env, "cwd": cwd, "log_path": log_path}
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self._echo = echo
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if self._log:
                self._log.write(line)
                self._log.flush()
            if self._echo:
                console.write(f"[{self.name}] {line}")
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> str:
        """Block until an output line from index ``start`` on matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            index = start
            while True:
                for line in self._lines[index:]:
                    if regex.search(line):
                        return line
                index = len(self._lines)
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.name} exited ({self.process.returncode}) before printing "
                        f"{pattern!r}; output:\n{''.join(self._lines[-40:])}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.name} did not print {pattern!r} within {timeout}s; output:\n"
                        + "".join(self._lines[-40:])
                    )
                self._changed.wait(remaining)

    def relaunch(self, *, echo: bool) -> ManagedProcess:
        """A new run of the same program (argv, environment, directory, log file), for a
        supervisor replacing one that exited; ``stop`` this one first."""
        return ManagedProcess(self.name, self.argv, echo=echo, **self._launch)

    def set_echo(self, enabled: bool) -> None:
        """Pause or resume copying output to stdout (log files keep everything)."""
        self._echo = enabled

    def line_count(self) -> int:
        with self._changed:
            return len(self._lines)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handlers run."""
        self.signal_group(signal.SIGKILL)
        self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP the whole process group: a stall (GC pause, partition) it cannot see."""
        self.signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the process group after ``freeze``."""
        self.signal_group(signal.SIGCONT)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (warm shutdown for Celery), then SIGKILL if it does not exit."""
        if self.process.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.process.wait()
        else:
            self.signal_group(signal.SIGKILL)  # reap children a dead leader left behind
        return self._reaped()

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole process group; nothing if it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def shutdown(self, timeout: float = 20.0) -> int:
        """SIGTERM the leader only, wait, then SIGKILL whatever is left of the group.

        Unlike ``stop`` this lets a Celery worker do a warm shutdown: only the
        main process hears SIGTERM, so its pool children finish their turns
        instead of being killed mid-turn (SIGTERM's default action).
        """
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.signal_group(signal.SIGKILL)
        self.process.wait()
        return self._reaped()

    def _reaped(self) -> int:
        """The exit code, once the output is read to its end and the log file closed."""
        self._reader.join(timeout=5)
        if self._log:
            self._log.close()
        return self.process.returncode
