"""What ``fence stack`` runs, and the defaults its command line and ``StackConfig`` share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fence.settings import Settings, get_settings
from producer.stack.processes import free_port, port_is_free

MEMORY_CHOICES = ("sqlite", "dynamodb")
"""The memory backends a stack can run; the first is the default."""
SHUTDOWN_GRACE_S = 30.0
"""How much longer than a turn may take (``FENCE_TURN_TIMEOUT_S``) workers get to
finish their running turns on Ctrl-C."""
FLOWER_DEFAULT_PORT = 5555
GATEWAY_DEFAULT_PORT = 8000


class StackError(RuntimeError):
    """The local stack cannot start; the message says what to change."""


def default_shutdown_timeout(settings: Settings | None = None) -> float:
    """How long a warm shutdown waits for running turns: a turn's limit plus the grace."""
    return (settings or get_settings()).turn_timeout_s + SHUTDOWN_GRACE_S


@dataclass
class StackConfig:
    """What ``fence stack`` runs. Ports: None picks the usual port if free, else any;
    0 picks any free port; a number must be free."""

    directory: Path = Path(".fence/stack")
    redis_port: int | None = None
    workers: int = 2
    concurrency: int = 2
    memory: str = MEMORY_CHOICES[0]
    flower: bool = True
    flower_port: int | None = None
    flower_auth: str | None = None
    gateway: bool = True
    gateway_port: int | None = None
    api_tokens: str | None = None
    echo: bool = True
    shutdown_timeout: float = field(default_factory=default_shutdown_timeout)
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    rotate_secrets: bool = False
    """Make a new gateway token and Flower password instead of reusing the stored ones."""

    def check(self) -> None:
        """Raise ``StackError`` naming the option at fault."""
        if self.workers < 1:
            raise StackError(f"--workers: must be at least 1 (got {self.workers})")
        if self.concurrency < 1:
            raise StackError(f"--concurrency: must be at least 1 (got {self.concurrency})")
        if self.memory not in MEMORY_CHOICES:
            raise StackError(
                f"--memory: must be one of {', '.join(MEMORY_CHOICES)} (got {self.memory!r})"
            )
        if self.flower_auth is not None and ":" not in self.flower_auth:
            raise StackError("FENCE_FLOWER_BASIC_AUTH: write user:password")


def pick_port(
    requested: int | None, usual: int | None, option: str, taken: set[int] | None = None
) -> int:
    """The port to use for ``option`` (see ``StackConfig``), not one of ``taken``."""
    taken = taken if taken is not None else set()
    if requested == 0 or (requested is None and (usual is None or usual in taken)):
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        return port
    if requested is not None:
        if requested in taken:
            raise StackError(f"{option}: port {requested} is already used by this stack")
        if not 0 < requested < 65536:
            raise StackError(f"{option}: must be a TCP port 1-65535 or 0 for any (got {requested})")
        if not port_is_free(requested):
            raise StackError(f"{option}: port {requested} is in use; choose another, or 0 for any")
        taken.add(requested)
        return requested
    if usual is not None and port_is_free(usual):
        taken.add(usual)
        return usual
    return pick_port(0, None, option, taken)
