"""Load run of the HTTP gateway, with direct ``Producer.submit`` as the baseline.

Starts a private redis-server, Celery workers and the gateway (``python -m
producer.gateway`` under uvicorn, in its own process), all on free loopback
ports with SQLite memory in a temp dir (``BenchRuntime`` of ``bench/_runtime.py``)
and the built-in ``demo`` agent (offline EchoModel). Then, in the same run and
the same way (a pool of client threads), it pushes the runs over the sessions
twice:

1. directly with ``Producer.submit`` (the baseline), then
2. through the gateway, one keep-alive HTTP connection per client thread,

and waits for every run to finish (direct: ``RunStore.wait``; gateway: its long
poll ``GET /v1/runs/{id}?wait=60``). It prints a Markdown table: accepted/s,
submit latency percentiles, CPU per submit, the time to drain the runs, and the
gateway/direct ratios.

The submits are what is timed, so the workers do not consume while they are made
(Celery's ``cancel_consumer``; ``add_consumer`` after): in a deployment gateways and
workers run on machines of their own, and here a turn's CPU would otherwise be taken
from whichever path happens to still be submitting when the turns start.

    python bench/gateway.py                      # 2,000 runs over 200 sessions
    python bench/gateway.py --smoke              # 40 runs over 4 sessions

Everything it starts it stops, also on Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import queue
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._runtime import REPO, BenchRuntime, Target, WorkerLayout, run_program  # noqa: E402
from fence.runs import RunRecord, RunState  # noqa: E402
from producer import Producer  # noqa: E402
from producer.stack.launch import GATEWAY_MODULE, GATEWAY_READY, ready  # noqa: E402
from producer.stack.processes import ManagedProcess, free_port  # noqa: E402

AGENT = "demo"
WAIT_S = 60
WARM_UP = 20, 5
"""Runs and sessions of each path's warm-up, before anything is timed."""
SMOKE = 40, 4
"""Runs and sessions with ``--smoke``."""


@dataclass(frozen=True)
class Load:
    """``runs`` over ``sessions`` (round-robin), submitted from ``clients`` threads."""

    runs: int
    sessions: int
    clients: int


@dataclass
class Phase:
    """What one way of submitting achieved."""

    name: str
    submit_seconds: list[float]
    elapsed: float
    """From the first submit to the last accept."""
    drained: float
    """From the workers resuming to the last run finished."""
    server_cpu: float
    """CPU seconds the submitting side spent during the submits (the gateway process, or
    this process for the direct baseline)."""
    client_cpu: float | None
    """CPU seconds this process spent generating the HTTP load (None: it was the server)."""

    @property
    def accepted_per_s(self) -> float:
        return len(self.submit_seconds) / self.elapsed


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: an observed value)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Consumers:
    """Stop and start the workers taking turns."""

    pause: Callable[[], None]
    resume: Callable[[], None]


def drive(
    name: str,
    load: Load,
    submit: Callable[[str, str], str],
    wait: Callable[[str], RunRecord],
    cpu: Callable[[], float],
    consumers: Consumers,
) -> Phase:
    """Submit the load's runs from its client threads with the workers paused, then
    resume them and wait for all of the runs."""
    latencies = [0.0] * load.runs
    run_ids = [""] * load.runs

    def one(index: int) -> None:
        session_id = f"{name}-{index % load.sessions}"
        started = time.perf_counter()
        run_ids[index] = submit(session_id, f"turn {index // load.sessions} of {session_id}")
        latencies[index] = time.perf_counter() - started

    pool = ThreadPoolExecutor(load.clients, thread_name_prefix=name)
    consumers.pause()
    try:
        try:
            began, cpu_before, own_before = time.perf_counter(), cpu(), time.process_time()
            list(pool.map(one, range(load.runs)))
            elapsed, server_cpu = time.perf_counter() - began, cpu() - cpu_before
            own_cpu = time.process_time() - own_before
        finally:
            consumers.resume()
        resumed = time.perf_counter()
        records = list(pool.map(wait, run_ids))
        drained = time.perf_counter() - resumed
    except BaseException:  # Ctrl-C: drop queued work now; stopping the servers ends the rest
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    not_done = [r for r in records if r.state is not RunState.SUCCEEDED]
    if not_done:
        raise RuntimeError(f"{name}: {len(not_done)} runs did not succeed, e.g. {not_done[0]!r}")
    client_cpu = None if cpu is time.process_time else own_cpu
    return Phase(name, latencies, elapsed, drained, server_cpu, client_cpu)


def direct_phase(
    producer: Producer, load: Load, consumers: Consumers, name: str = "direct"
) -> Phase:
    def submit(session_id: str, message: str) -> str:
        return producer.submit(session_id, message, agent=AGENT).id

    def wait(run_id: str) -> RunRecord:
        return producer.store.wait(run_id, WAIT_S)

    return drive(name, load, submit, wait, time.process_time, consumers)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of another process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_phase(
    base_url: str, token: str, pid: int, load: Load, consumers: Consumers, name: str = "http"
) -> Phase:
    # One keep-alive connection per thread, opened before the clock starts. The standard
    # library's client: at about a quarter of httpx's CPU per request, the load generator
    # (on the same 2 cores) takes less from the gateway it measures.
    address = urlsplit(base_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connections = [
        http.client.HTTPConnection(address.hostname, address.port, timeout=WAIT_S + 30)
        for _ in range(load.clients)
    ]
    idle = queue.SimpleQueue()
    for each in connections:
        idle.put(each)
    local = threading.local()

    def call(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        if not hasattr(local, "connection"):
            local.connection = idle.get_nowait()
        payload = None if body is None else json.dumps(body)
        local.connection.request(method, path, payload, headers)
        response = local.connection.getresponse()
        return response.status, json.loads(response.read())

    def submit(session_id: str, message: str) -> str:
        status, body = call(
            "POST", f"/v1/sessions/{session_id}/runs", {"message": message, "agent": AGENT}
        )
        if status != 202:
            raise RuntimeError(f"submit answered {status}: {str(body)[:300]}")
        return body["run_id"]

    def wait(run_id: str) -> RunRecord:
        status, body = call("GET", f"/v1/runs/{run_id}?wait={WAIT_S}")
        if status != 200:
            raise RuntimeError(f"wait answered {status}: {str(body)[:300]}")
        return RunRecord.model_validate({**body, "id": body["run_id"], "message": ""})

    try:
        return drive(name, load, submit, wait, lambda: process_cpu(pid), consumers)
    finally:
        for each in connections:
            each.close()


def print_table(direct: Phase, gateway: Phase, load: Load, layout: WorkerLayout) -> None:
    def ms(value: float) -> str:
        return f"{value * 1000:.1f}"

    def row(phase: Phase, label: str) -> str:
        submit = phase.submit_seconds
        client = "-" if phase.client_cpu is None else ms(phase.client_cpu / len(submit))
        return (
            f"| {label} | {len(submit)} | {phase.accepted_per_s:.0f} "
            f"| {ms(percentile(submit, 50))} | {ms(percentile(submit, 95))} "
            f"| {ms(percentile(submit, 99))} "
            f"| {ms(phase.server_cpu / len(submit))} | {client} | {phase.drained:.1f} |"
        )

    def ratio(q: float) -> str:
        return (
            f"{percentile(gateway.submit_seconds, q) / percentile(direct.submit_seconds, q):.2f}x"
        )

    print()
    print(
        f"{load.runs} runs over {load.sessions} sessions, {load.clients} client threads, "
        f"{layout.processes} worker processes x concurrency {layout.concurrency}, agent {AGENT!r} "
        f"(EchoModel), SQLite memory, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| path | runs | accepted/s | submit p50 ms | submit p95 ms | submit p99 ms "
        "| CPU ms per submit | load generator CPU ms per submit | drained in s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(row(direct, "direct `Producer.submit` (baseline)"))
    print(row(gateway, "HTTP gateway `POST /v1/sessions/{id}/runs`"))
    throughput = gateway.accepted_per_s / direct.accepted_per_s
    cpu = gateway.server_cpu / direct.server_cpu
    print(
        f"| gateway / direct | | {throughput:.2f}x | {ratio(50)} | {ratio(95)} | {ratio(99)} "
        f"| {cpu:.2f}x | | |"
    )
    print()
    print(
        "CPU per submit: the gateway process for the gateway row; this process (client "
        "threads calling Producer.submit) for the baseline. The load generator is this "
        "process's client threads, on the same cores.\n"
        "The workers do not consume while the submits are timed; drained = from their "
        "resuming to the last run finished (the gateway's waits are long polls)."
    )


def main(args: argparse.Namespace) -> list[Target]:
    runs, sessions = SMOKE if args.smoke else (args.runs, args.sessions)
    load = Load(runs, sessions, args.clients)
    layout = WorkerLayout(args.workers, args.concurrency)
    token = secrets.token_urlsafe(24)
    env = {
        "FENCE_AGENTS": "workers.registry:registry",
        "FENCE_DEFAULT_AGENT": AGENT,
        "FENCE_API_TOKENS": token,
    }
    print(f"starting redis, {args.workers} workers and the gateway...", file=sys.stderr)
    with BenchRuntime(env=env, keep=args.keep, loglevel="INFO") as rt:
        workers = rt.start_workers(layout)
        consumers = Consumers(lambda: rt.pause(workers), lambda: rt.resume(workers))
        port = free_port()
        argv = [sys.executable, "-m", GATEWAY_MODULE, "--host", "127.0.0.1", "--port", str(port)]
        gateway = ManagedProcess(
            "gateway",
            [*argv, "--no-access-log"],  # stack.launch_gateway cannot pass this flag
            env=rt.env,
            cwd=REPO,
            log_path=rt.directory / "gateway.log",
        )
        ready(rt.adopt(gateway), GATEWAY_READY)
        base_url = f"http://127.0.0.1:{port}"
        pid = gateway.process.pid
        producer = Producer(settings=rt.settings)
        try:
            warm = Load(*WARM_UP, args.clients)
            direct_phase(producer, warm, consumers, name="warm-direct")
            gateway_phase(base_url, token, pid, warm, consumers, name="warm-http")

            print(f"direct: {load.runs} runs...", file=sys.stderr)
            direct = direct_phase(producer, load, consumers)
            print(f"gateway: {load.runs} runs...", file=sys.stderr)
            through_gateway = gateway_phase(base_url, token, pid, load, consumers)
        finally:
            producer.store.redis.close()
    print_table(direct, through_gateway, load, layout)
    return []  # no targets: the table is the result


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=positive, default=2000)
    p.add_argument("--sessions", type=positive, default=200)
    p.add_argument("--clients", type=positive, default=32, help="concurrent client threads")
    p.add_argument("--workers", type=int, default=2, help="celery worker processes")
    p.add_argument("--concurrency", type=int, default=2, help="pool size of each worker")
    p.add_argument("--smoke", action="store_true", help=f"{SMOKE[0]} runs over {SMOKE[1]} sessions")
    p.add_argument("--keep", action="store_true", help="keep logs and the database")
    return p


if __name__ == "__main__":
    sys.exit(run_program(main, parser()))
