"""Load run of the HTTP gateway, with direct ``Producer.submit`` as the baseline.

Starts a private redis-server, Celery workers and the gateway (``python -m
producer.gateway`` under uvicorn, in its own process), all on free loopback
ports with SQLite memory in a temp dir (``BenchRuntime`` of ``bench/_runtime.py``)
and the built-in ``demo`` agent (offline EchoModel). Then, in the same run and
the same way (a pool of client threads), it pushes the runs over the sessions
twice:

1. directly with ``Producer.submit`` (the baseline), then
2. through the gateway with concurrent httpx clients,

and waits for every run to finish (direct: ``RunStore.wait``; gateway: its long
poll ``GET /v1/runs/{id}?wait=60``). It prints a Markdown table: accepted/s,
submit latency percentiles, end-to-end turn latency (``accepted_at`` to
``finished_at`` from the run records) and the gateway/direct ratios.

    python bench/gateway.py                      # 2,000 runs over 200 sessions
    python bench/gateway.py --smoke              # 40 runs over 4 sessions

Everything it starts it stops, also on Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

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
    """From the first submit to the last run finished."""
    records: list[RunRecord]
    server_cpu: float
    """CPU seconds the submitting side spent during the submits (the gateway process, or
    this process for the direct baseline)."""

    @property
    def accepted_per_s(self) -> float:
        return len(self.submit_seconds) / self.elapsed

    def turn_seconds(self) -> list[float]:
        return [r.finished_at - r.accepted_at for r in self.records if r.finished_at]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: an observed value)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def drive(
    name: str,
    load: Load,
    submit: Callable[[str, str], str],
    wait: Callable[[str], RunRecord],
    cpu: Callable[[], float],
) -> Phase:
    """Submit the load's runs from its client threads, then wait for all of them."""
    latencies = [0.0] * load.runs
    run_ids = [""] * load.runs

    def one(index: int) -> None:
        session_id = f"{name}-{index % load.sessions}"
        started = time.perf_counter()
        run_ids[index] = submit(session_id, f"turn {index // load.sessions} of {session_id}")
        latencies[index] = time.perf_counter() - started

    pool = ThreadPoolExecutor(load.clients, thread_name_prefix=name)
    try:
        began, cpu_before = time.perf_counter(), cpu()
        list(pool.map(one, range(load.runs)))
        elapsed, server_cpu = time.perf_counter() - began, cpu() - cpu_before
        records = list(pool.map(wait, run_ids))
        drained = time.perf_counter() - began
    except BaseException:  # Ctrl-C: drop queued work now; stopping the servers ends the rest
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    not_done = [r for r in records if r.state is not RunState.SUCCEEDED]
    if not_done:
        raise RuntimeError(f"{name}: {len(not_done)} runs did not succeed, e.g. {not_done[0]!r}")
    return Phase(name, latencies, elapsed, drained, records, server_cpu)


def direct_phase(producer: Producer, load: Load, name: str = "direct") -> Phase:
    def submit(session_id: str, message: str) -> str:
        return producer.submit(session_id, message, agent=AGENT).id

    def wait(run_id: str) -> RunRecord:
        return producer.store.wait(run_id, WAIT_S)

    return drive(name, load, submit, wait, time.process_time)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of another process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_phase(base_url: str, token: str, pid: int, load: Load, name: str = "http") -> Phase:
    # One keep-alive client per thread, built before the clock starts (building one loads
    # TLS settings, which would otherwise be measured as submit latency).
    clients = [
        httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=WAIT_S + 30
        )
        for _ in range(load.clients)
    ]
    idle = queue.SimpleQueue()
    for each in clients:
        idle.put(each)
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = idle.get_nowait()
        return local.client

    def submit(session_id: str, message: str) -> str:
        response = client().post(
            f"/v1/sessions/{session_id}/runs", json={"message": message, "agent": AGENT}
        )
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
        return response.json()["run_id"]

    def wait(run_id: str) -> RunRecord:
        response = client().get(f"/v1/runs/{run_id}", params={"wait": WAIT_S})
        response.raise_for_status()
        body = response.json()
        return RunRecord.model_validate({**body, "id": body["run_id"], "message": ""})

    try:
        return drive(name, load, submit, wait, lambda: process_cpu(pid))
    finally:
        for each in clients:
            each.close()


def print_table(direct: Phase, gateway: Phase, load: Load, layout: WorkerLayout) -> None:
    def ms(value: float) -> str:
        return f"{value * 1000:.1f}"

    def row(phase: Phase, label: str) -> str:
        submit, turn = phase.submit_seconds, phase.turn_seconds()
        return (
            f"| {label} | {len(submit)} | {phase.accepted_per_s:.0f} "
            f"| {ms(percentile(submit, 50))} | {ms(percentile(submit, 95))} "
            f"| {ms(percentile(submit, 99))} "
            f"| {ms(phase.server_cpu / len(submit))} "
            f"| {ms(percentile(turn, 50))} | {ms(percentile(turn, 95))} | {phase.drained:.1f} |"
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
        "| CPU ms per submit | turn e2e p50 ms | turn e2e p95 ms | all finished after s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(row(direct, "direct `Producer.submit` (baseline)"))
    print(row(gateway, "HTTP gateway `POST /v1/sessions/{id}/runs`"))
    throughput = gateway.accepted_per_s / direct.accepted_per_s
    cpu = gateway.server_cpu / direct.server_cpu
    print(
        f"| gateway / direct | | {throughput:.2f}x | {ratio(50)} | {ratio(95)} | {ratio(99)} "
        f"| {cpu:.2f}x | | | |"
    )
    print()
    print(
        "CPU per submit: the gateway process for the gateway row; this process (client "
        "threads calling Producer.submit) for the baseline.\n"
        "turn e2e = finished_at - accepted_at from the run records; it includes the time "
        "a run waits behind earlier turns of its session and for a free worker slot."
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
        rt.start_workers(layout)
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
            direct_phase(producer, warm, name="warm-direct")
            gateway_phase(base_url, token, pid, warm, name="warm-http")

            print(f"direct: {load.runs} runs...", file=sys.stderr)
            direct = direct_phase(producer, load)
            print(f"gateway: {load.runs} runs...", file=sys.stderr)
            through_gateway = gateway_phase(base_url, token, pid, load)
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
