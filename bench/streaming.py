"""The HTTP gateway holding idle Server-Sent Events streams: what each open stream costs.

Starts a private redis-server and the gateway (``python -m producer.gateway``, a
process of its own), then measures, in the same run:

1. the idle gateway (after one stream was opened and closed, so that everything a
   stream loads is loaded): the baseline;
2. the gateway holding N streams open at once, each on an idle session (so each
   waits in ``XREAD BLOCK``), for each N: its RSS and threads, Redis's connected
   clients, its CPU while the streams idle, and the keep-alives each stream got;
3. the gateway after the last clients hung up.

Target: the largest N adds at most ``MAX_ADDED_THREADS`` threads (no thread per client).

    python bench/streaming.py                  # 100 and 1,000 clients, held 20 s each
    python bench/streaming.py --smoke          # 10 and 50 clients, held 3 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import redis  # noqa: E402

from bench._runtime import (  # noqa: E402
    REPO,
    BenchRuntime,
    Target,
    base_parser,
    markdown_table,
    report,
    run_program,
    targets_table,
)
from bench.gateway import process_cpu  # noqa: E402
from producer.stack.launch import GATEWAY_MODULE, GATEWAY_READY, ready  # noqa: E402
from producer.stack.processes import ManagedProcess, free_port  # noqa: E402

MAX_ADDED_THREADS = 4
OPEN_TIMEOUT_S = 120
SETTLE_S = 1.0
"""Pause before a sample taken after clients connected or left."""


@dataclass(frozen=True)
class Sample:
    """The gateway process and Redis at one moment."""

    rss_mib: float
    threads: int
    redis_clients: int


@dataclass(frozen=True)
class Held:
    """What holding ``streams`` open streams cost, sampled while they idled."""

    streams: int
    sample: Sample
    cpu_percent: float
    """Gateway CPU while the streams idled, % of one core."""
    fewest_keep_alives: int
    ended_early: int


def sample(pid: int, control: redis.Redis) -> Sample:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss_mib = int(status["VmRSS"].split()[0]) / 1024
    return Sample(rss_mib, int(status["Threads"]), control.info("clients")["connected_clients"])


def cpu_percent(pid: int, seconds: float) -> float:
    """The gateway's CPU over the next ``seconds``, % of one core."""
    used, started = process_cpu(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (process_cpu(pid) - used) / (time.monotonic() - started)


async def hold(base_url: str, n: int, hold_s: float, pid: int, control: redis.Redis) -> Held:
    """Open ``n`` session streams at once, let them idle ``hold_s``, sample, hang up."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    timeout = httpx.Timeout(30, read=None)
    keep_alives = [0] * n
    opened = asyncio.Semaphore(0)

    async def follow(http: httpx.AsyncClient, index: int) -> None:
        async with http.stream("GET", f"/v1/sessions/idle-{n}-{index}/events") as response:
            response.raise_for_status()
            opened.release()
            async for line in response.aiter_lines():
                keep_alives[index] += line.startswith(":")

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as http:
        clients = [asyncio.create_task(follow(http, i)) for i in range(n)]
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                for _ in range(n):
                    await opened.acquire()
            await asyncio.sleep(SETTLE_S)
            cpu = await asyncio.to_thread(cpu_percent, pid, hold_s)
            held = sample(pid, control)
            ended = sum(client.done() for client in clients)
        finally:
            for client in clients:
                client.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*clients, return_exceptions=True)
    return Held(n, held, cpu, min(keep_alives), ended)


def start_gateway(rt: BenchRuntime) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [sys.executable, "-m", GATEWAY_MODULE, "--host", "127.0.0.1", "--port", str(port)]
    gateway = ManagedProcess(
        "gateway",
        [*argv, "--no-access-log"],
        env=rt.env,
        cwd=REPO,
        log_path=rt.directory / "gateway.log",
    )
    ready(rt.adopt(gateway), GATEWAY_READY)
    return gateway, f"http://127.0.0.1:{port}"


def warm_up(base_url: str) -> None:
    """One stream opened and closed: what serving streams imports and builds is loaded."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        http.get("/healthz").raise_for_status()
        with http.stream("GET", "/v1/sessions/warm-up/events") as response:
            response.raise_for_status()


def row(name: str, streams: int, now: Sample, idle: Sample, cpu: float, alive: str) -> tuple:
    added = now.rss_mib - idle.rss_mib
    per_stream = added * 1024 / streams if streams else float("nan")
    return (
        name,
        streams,
        now.rss_mib,
        added,
        per_stream,
        now.threads,
        now.redis_clients,
        cpu,
        alive,
    )


def main(args: argparse.Namespace) -> list[Target]:
    sizes, hold_s, heartbeat_s = ([10, 50], 3.0, 1.0) if args.smoke else (args.clients, 20.0, 15.0)
    env = {"FENCE_API_HEARTBEAT_S": repr(heartbeat_s)}
    with BenchRuntime(env=env, keep=args.keep) as rt:
        gateway, base_url = start_gateway(rt)
        pid = gateway.process.pid
        warm_up(base_url)
        time.sleep(SETTLE_S)
        idle_cpu = cpu_percent(pid, hold_s)
        idle = sample(pid, rt.redis)
        held = []
        for n in sizes:
            print(f"holding {n} streams for {hold_s:g} s...", file=sys.stderr, flush=True)
            held.append(asyncio.run(hold(base_url, n, hold_s, pid, rt.redis)))
        time.sleep(SETTLE_S)
        after = sample(pid, rt.redis)
    rows = [row("idle gateway (baseline)", 0, idle, idle, idle_cpu, "")]
    for h in held:
        alive = f"{h.streams - h.ended_early}/{h.streams}, >= {h.fewest_keep_alives}"
        rows.append(
            row(f"{h.streams:,} streams open", h.streams, h.sample, idle, h.cpu_percent, alive)
        )
    rows.append(row("after they hung up", 0, after, idle, float("nan"), ""))
    largest = held[-1]
    added = largest.sample.threads - idle.threads
    targets = [
        Target(
            f"threads added by {largest.streams:,} open streams",
            str(added),
            f"<= {MAX_ADDED_THREADS}",
            added <= MAX_ADDED_THREADS and largest.ended_early == 0,
        )
    ]
    report(
        "Idle Server-Sent Events streams held open against one gateway process",
        [
            f"each stream: GET /v1/sessions/{{id}}/events on its own idle session, from one "
            f"asyncio httpx client; held {hold_s:g} s; keep-alive every {heartbeat_s:g} s",
            "gateway: python -m producer.gateway (uvicorn, one process), private redis-server",
        ],
        [
            (
                "Gateway process",
                markdown_table(
                    [
                        "state",
                        "streams",
                        "RSS MiB",
                        "added MiB",
                        "KiB per stream",
                        "threads",
                        "Redis clients",
                        "CPU % while idle",
                        "open at the end, keep-alives each",
                    ],
                    rows,
                ),
            ),
            ("Targets", targets_table(targets)),
        ],
    )
    return targets


def sizes(text: str) -> list[int]:
    values = [int(part) for part in text.split(",")]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("positive numbers, comma-separated")
    return values


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__)
    p.add_argument(
        "--clients", type=sizes, default=[100, 1000], help="streams held open, e.g. 100,1000"
    )
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
