"""Crash at every step (issue 12): workers SIGKILLed inside each step of 100 turns whose
model asks for four tool calls one after another. Every turn is committed once, in
order; each tool call's effect happened once per idempotency key; no step that had
finished ran again, only the one a kill landed in; and a turn made at most
``STEPS`` + (kills that hit it) model calls. ``bench/_durable_chaos.py`` is the driver."""

from __future__ import annotations

from bench._durable_chaos import LABELS, Size, run_chaos

from .conftest import Runtime

SIZE = Size(sessions=10, turns=10, workers=3, kills=18)


def test_workers_killed_inside_every_step_repeat_only_the_step_in_flight(runtime: Runtime):
    fleet = [runtime.start_worker() for _ in range(SIZE.workers)]
    runtime.start_beat()

    outcome = run_chaos(
        fleet,
        runtime.start_worker,
        runtime.producer,
        runtime.memory,
        runtime.control,
        SIZE,
        seed=12,
    )

    assert len(outcome.kills) == SIZE.kills
    assert {kill.aimed_at for kill in outcome.kills} == set(LABELS)
    landed = outcome.kills_in_steps()
    assert landed["model"] and landed["tool"], landed
    assert outcome.not_succeeded() == {}
    assert outcome.misordered_sessions() == {}
    assert outcome.malformed_turns() == {}
    assert outcome.wrong_effects() == {}
    assert outcome.completed_tools_re_executed() == {}
    assert outcome.model_calls_repeated_unkilled() == {}
    assert outcome.model_calls_over_bound() == {}
