"""Server-Sent Events through the HTTP gateway: what an open stream costs, and how late
streamed text reaches a client.

Two sections, each on its own private runtime (redis-server and the gateway,
``python -m producer.gateway``, a process of its own):

**Idle streams.** It measures, in the same run:

1. the idle gateway (after one stream was opened and closed, so that everything a
   stream loads is loaded): the baseline;
2. the gateway holding N streams open at once, each on an idle session (so each
   waits in ``XREAD BLOCK``), for each N: its RSS and threads, Redis's connected
   clients, its CPU while the streams idle, and the keep-alives each stream got;
3. the gateway after the last clients hung up.

Target: the largest N adds at most ``MAX_ADDED_THREADS`` threads (no thread per client).

**Added latency.** ``--runs`` runs submitted and streamed at once through the
gateway, on 2 x 4 prefork worker slots, each run's model (``timed`` in
``bench/agents.py``) streaming ``--tokens`` words 5 ms apart, each word the time
it was emitted: per delta, client receipt - emission, p50/p99/max, against the
same runs read straight from Redis in the same loop (``bench/_delta_latency.py``).
Targets: p50 <= 5 ms, p99 <= 50 ms, and every run's deltas join to its stored answer.

    python bench/streaming.py                  # 100 and 1,000 idle clients held 20 s each;
                                               # 200 runs x 300 tokens
    python bench/streaming.py --only latency   # one section (idle or latency)
    python bench/streaming.py --smoke          # 10 and 50 clients held 3 s; 16 runs x 50 tokens
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

from bench._delta_latency import Stages, matching, spread, stream_runs  # noqa: E402
from bench._runtime import (  # noqa: E402
    REPO,
    BenchRuntime,
    Target,
    WorkerLayout,
    base_parser,
    markdown_table,
    report,
    run_program,
    targets_table,
)
from bench.agents import TIMED_TOKENS_ENV, TOKEN_DELAY_ENV  # noqa: E402
from bench.gateway import process_cpu  # noqa: E402
from producer.stack.launch import GATEWAY_MODULE, GATEWAY_READY, ready  # noqa: E402
from producer.stack.processes import ManagedProcess, free_port  # noqa: E402

MAX_ADDED_THREADS = 4
LATENCY_LAYOUT = WorkerLayout(2, 4, "prefork")
TOKEN_DELAY_S = 0.005
P50_MS, P99_MS = 5.0, 50.0
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


def idle_streams(args: argparse.Namespace) -> list[Target]:
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


# -- added latency of streamed text -----------------------------------------------


def latency_section(args: argparse.Namespace) -> list[Target]:
    runs, tokens = (16, 50) if args.smoke else (args.runs, args.tokens)
    layout = LATENCY_LAYOUT
    env = {TIMED_TOKENS_ENV: str(tokens), TOKEN_DELAY_ENV: repr(TOKEN_DELAY_S)}
    with BenchRuntime(env=env, keep=args.keep) as rt:
        workers = rt.start_workers(layout)
        rt.warm_up(layout.slots)
        gateway, base_url = start_gateway(rt)
        asyncio.run(stream_runs(base_url, rt.redis_url, "warm-up", layout.slots))
        print(f"streaming {runs} runs x {tokens} tokens...", file=sys.stderr, flush=True)
        counters = Counters(rt, gateway.process.pid, workers)
        before = counters.now()
        started = time.time()
        streams = asyncio.run(stream_runs(base_url, rt.redis_url, "latency", runs))
        used = [after - then for after, then in zip(counters.now(), before, strict=True)]
        xreads = counters.xreads() - counters.first_xreads
        good = matching(rt, streams)
    stages = Stages.of(streams)
    wall, *cpu = used
    deltas = len(stages.via_gateway)
    p50, _, p99, _ = spread(stages.via_gateway)
    targets = [
        Target("added latency per delta, p50", f"{p50:.2f} ms", f"<= {P50_MS:g} ms", p50 <= P50_MS),
        Target("added latency per delta, p99", f"{p99:.2f} ms", f"<= {P99_MS:g} ms", p99 <= P99_MS),
        Target(
            "runs whose deltas join to their stored answer",
            f"{good}/{runs}",
            "all",
            good == runs,
        ),
    ]
    report(
        "Added latency of streamed text: model emit to client receipt, per delta",
        [
            f"{runs} runs submitted at once, each on its own session, with `POST "
            "/v1/sessions/{id}/runs/stream` (the submit answered with the run's SSE), read by "
            "one asyncio httpx client; the same runs read straight from Redis in the same "
            "loop (`XREAD BLOCK` on each session's log, redis.asyncio): the baseline",
            f"model: `timed` (bench/agents.py), {tokens} words {TOKEN_DELAY_S * 1e3:g} ms apart, "
            "each word the `time.time()` it was emitted; latency = receipt time - that time; "
            "a run waiting for a slot has no deltas yet, so queueing is not counted",
            f"workers: {layout.describe()}; gateway: one uvicorn process; private "
            "redis-server; SQLite memory",
            f"{deltas:,} deltas in {wall:.1f} s, at most {stages.most_streaming} runs streaming "
            f"at once; every submit answered (its run.accepted read) after "
            f"{stages.all_accepted - started:.2f} s; "
            f"{deltas / max(stages.emits, 1):.2f} deltas per worker EMIT; "
            f"{xreads / max(deltas, 1):.2f} XREADs per delta (both readers)",
        ],
        [
            ("Added latency per text delta (ms)", latency_table(stages)),
            ("Where a delta's time goes (ms; the same deltas)", stages_table(stages)),
            (
                "CPU while streaming (% of one core)",
                markdown_table(
                    ["gateway", "workers (2 process groups)", "redis-server", "this client"],
                    [[100 * c / wall for c in cpu]],
                ),
            ),
            ("Targets", targets_table(targets)),
        ],
    )
    return targets


def latency_table(stages: Stages) -> str:
    rows = [
        ("client, through the gateway (SSE)", len(stages.via_gateway), *spread(stages.via_gateway)),
        (
            "client, through the gateway, once every submit was answered",
            len(stages.settled),
            *spread(stages.settled),
        ),
        (
            "client, straight from Redis (baseline)",
            len(stages.from_redis),
            *spread(stages.from_redis),
        ),
    ]
    return markdown_table(["read", "deltas", "p50", "p90", "p99", "max"], rows)


def stages_table(stages: Stages) -> str:
    rows = [
        ("model emit -> worker sends the EMIT carrying it", *spread(stages.queued)),
        (
            "EMIT sent -> read from Redis (round trip, XREAD wake-up)",
            *spread(stages.logged_to_read),
        ),
        ("read from Redis -> read through the gateway", *spread(stages.gateway_hop)),
    ]
    return markdown_table(["stage", "p50", "p90", "p99", "max"], rows)


class Counters:
    """Wall clock and the CPU seconds of the gateway, the workers, Redis and this process."""

    def __init__(self, rt: BenchRuntime, gateway_pid: int, workers: list[ManagedProcess]) -> None:
        self.rt, self.pid, self.workers = rt, gateway_pid, workers
        self.first_xreads = self.xreads()

    def now(self) -> tuple[float, ...]:
        worker_cpu = self.rt.worker_cpu_s(self.workers)
        return (
            time.monotonic(),
            process_cpu(self.pid),
            float("nan") if worker_cpu is None else worker_cpu,
            self.rt.redis_stats().cpu_s,
            time.process_time(),
        )

    def xreads(self) -> int:
        return self.rt.redis_stats().calls.get("xread", 0)


def main(args: argparse.Namespace) -> list[Target]:
    idle = idle_streams(args) if args.only in (None, "idle") else []
    return idle + (latency_section(args) if args.only in (None, "latency") else [])


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
    p.add_argument("--only", choices=["idle", "latency"], help="run one section")
    p.add_argument("--runs", type=int, default=200, help="streamed runs at once (latency)")
    p.add_argument("--tokens", type=int, default=300, help="words each run streams (latency)")
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
