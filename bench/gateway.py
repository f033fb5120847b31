"""Load run of the HTTP gateway, with direct ``Producer.submit`` as the baseline.

Starts a private redis-server, Celery workers and the gateway (``python -m
producer.gateway`` under uvicorn, in its own process), all on free loopback
ports with SQLite memory in a temp dir and the built-in ``demo`` agent
(offline EchoModel). Then, in the same run and the same way (a pool of
client threads), it pushes the runs over the sessions twice:

1. directly with ``Producer.submit`` (the baseline), then
2. through the gateway with concurrent httpx clients,

and waits for every run to finish (direct: ``Run.result``; gateway: its long
poll ``GET /v1/runs/{id}?wait=60``). It prints a Markdown table: accepted/s,
submit latency percentiles, end-to-end turn latency (``accepted_at`` to
``finished_at`` from the run records) and the gateway/direct ratios.

    python bench/gateway.py                      # 2,000 runs over 200 sessions
    python bench/gateway.py --runs 40 --sessions 4   # smoke size

Everything it starts it stops, also on Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import queue
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as ``python bench/gateway.py``
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from fence.runs import RunRecord, RunState  # noqa: E402
from fence.settings import Settings  # noqa: E402
from producer import Producer  # noqa: E402
from workers.stack import ManagedProcess, free_port, start_redis, start_worker  # noqa: E402

AGENT = "demo"
WAIT_S = 60
WARM_UP_RUNS = 20


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
    runs: int,
    sessions: int,
    clients: int,
    submit: Callable[[str, str], str],
    wait: Callable[[str], RunRecord],
    cpu: Callable[[], float],
) -> Phase:
    """Submit ``runs`` over ``sessions`` from ``clients`` threads, then wait for all."""
    latencies = [0.0] * runs
    run_ids = [""] * runs

    def one(index: int) -> None:
        session_id = f"{name}-{index % sessions}"
        started = time.perf_counter()
        run_ids[index] = submit(session_id, f"turn {index // sessions} of {session_id}")
        latencies[index] = time.perf_counter() - started

    pool = ThreadPoolExecutor(clients, thread_name_prefix=name)
    try:
        began, cpu_before = time.perf_counter(), cpu()
        list(pool.map(one, range(runs)))
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


def direct_phase(producer: Producer, args: argparse.Namespace, name: str = "direct") -> Phase:
    def submit(session_id: str, message: str) -> str:
        return producer.submit(session_id, message, agent=AGENT).id

    def wait(run_id: str) -> RunRecord:
        return producer.store.wait(run_id, WAIT_S)

    return drive(name, args.runs, args.sessions, args.clients, submit, wait, time.process_time)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of another process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_phase(
    base_url: str, token: str, pid: int, args: argparse.Namespace, name: str = "http"
) -> Phase:
    # One keep-alive client per thread, built before the clock starts (building one loads
    # TLS settings, which would otherwise be measured as submit latency).
    clients = [
        httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=WAIT_S + 30
        )
        for _ in range(args.clients)
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
        return drive(
            name, args.runs, args.sessions, args.clients, submit, wait, lambda: process_cpu(pid)
        )
    finally:
        for each in clients:
            each.close()


def print_table(direct: Phase, gateway: Phase, args: argparse.Namespace) -> None:
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
        f"{args.runs} runs over {args.sessions} sessions, {args.clients} client threads, "
        f"{args.workers} worker processes x concurrency {args.concurrency}, agent {AGENT!r} "
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


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what it started."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size of each worker")
    parser.add_argument("--keep", action="store_true", help="keep logs and the database")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.sessions < 1 or args.clients < 1:
        parser.error("--runs, --sessions and --clients must be positive")

    with contextlib.ExitStack() as cleanup, sigterm_as_interrupt():
        directory = Path(tempfile.mkdtemp(prefix="fence-bench-gateway-"))
        if args.keep:
            print(f"logs and database in {directory}", file=sys.stderr)
        else:
            cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        redis_process, redis_url = start_redis(directory / "redis")
        cleanup.callback(redis_process.stop)
        token = secrets.token_urlsafe(24)
        env = {
            "FENCE_REDIS_URL": redis_url,
            "FENCE_MEMORY": f"sqlite:///{directory / 'memory.db'}",
            "FENCE_AGENTS": "workers.registry:registry",
            "FENCE_DEFAULT_AGENT": AGENT,
            "FENCE_API_TOKENS": token,
            "PYTHONPATH": str(REPO),
        }
        settings = Settings(
            **{k.removeprefix("FENCE_").lower(): v for k, v in env.items() if k != "PYTHONPATH"}
        )
        print(f"starting redis, {args.workers} workers and the gateway...", file=sys.stderr)
        for n in range(1, args.workers + 1):
            worker = start_worker(
                f"bench{n}",
                env,
                concurrency=args.concurrency,
                cwd=REPO,
                log_path=directory / f"bench{n}.log",
            )
            cleanup.callback(worker.stop)
        port = free_port()
        gateway = ManagedProcess(
            "gateway",
            [
                sys.executable,
                "-m",
                "producer.gateway",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],  # fmt: skip
            env=env,
            cwd=REPO,
            log_path=directory / "gateway.log",
        )
        cleanup.callback(gateway.stop)
        gateway.wait_for(r"Uvicorn running on", timeout=60)
        base_url = f"http://127.0.0.1:{port}"
        producer = Producer(settings=settings)
        cleanup.callback(producer.store.redis.close)

        warm = argparse.Namespace(**{**vars(args), "runs": WARM_UP_RUNS, "sessions": 5})
        direct_phase(producer, warm, name="warm-direct")
        gateway_phase(base_url, token, gateway.process.pid, warm, name="warm-http")

        print(f"direct: {args.runs} runs...", file=sys.stderr)
        direct = direct_phase(producer, args)
        print(f"gateway: {args.runs} runs...", file=sys.stderr)
        through_gateway = gateway_phase(base_url, token, gateway.process.pid, args)
        print_table(direct, through_gateway, args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
