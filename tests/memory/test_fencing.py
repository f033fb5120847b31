"""Fencing tokens reach storage: every backend refuses a write or claim older than
the newest token that wrote to or claimed the session (conftest's ``backend``
params run each test against all of them)."""

from __future__ import annotations

import threading
import uuid

import pytest

from fence.errors import FencedOutError, StaleWriteError
from fence.messages import Message, Role


def new_session() -> str:
    return f"f-{uuid.uuid4().hex[:12]}"


def turn(text: str) -> list[Message]:
    return [Message(role=Role.USER, content=text), Message(role=Role.ASSISTANT, content="ok")]


def test_a_commit_with_an_older_token_than_a_landed_one_is_refused(open_memory):
    memory = open_memory(new_session())
    assert memory.commit_turn("run-a", turn("by token 5"), fence=5)

    with pytest.raises(FencedOutError, match="older token 3"):
        memory.commit_turn("run-b", turn("by stale token 3"), fence=3)

    assert [m.content for m in memory.get_messages()] == ["by token 5", "ok"]
    assert not memory.has_turn("run-b")
    assert memory.commit_turn("run-c", turn("same token again"), fence=5)
    assert memory.commit_turn("run-d", turn("newer token"), fence=9)
    with pytest.raises(FencedOutError):
        memory.commit_turn("run-e", turn("now 5 is stale too"), fence=5)


def test_a_claim_fences_out_older_writers_before_they_write(open_memory):
    session = new_session()
    stale, newer = open_memory(session), open_memory(session)
    newer.claim_fence(10)

    with pytest.raises(FencedOutError) as refused:
        stale.commit_turn("run-1", turn("late commit of a taken-over run"), fence=9)

    assert isinstance(refused.value, StaleWriteError)  # callers of the old contract still stop
    assert open_memory(session).get_messages() == []
    assert not open_memory(session).has_turn("run-1")
    with pytest.raises(FencedOutError):
        stale.claim_fence(9)
    newer.claim_fence(10)  # the same holder may claim again
    assert newer.commit_turn("run-1", turn("the new holder's commit"), fence=10)


def test_an_already_committed_turn_is_recognised_whatever_its_token(open_memory):
    memory = open_memory(new_session())
    memory.commit_turn("run-1", turn("committed by the first holder"), fence=5)
    memory.claim_fence(6)

    assert memory.commit_turn("run-1", turn("its redelivery"), fence=5) is False
    assert len(memory.get_messages()) == 2


def test_unfenced_writes_neither_check_nor_move_the_fence(open_memory):
    memory = open_memory(new_session())
    memory.claim_fence(10)

    memory.add_user_message("a library write")
    assert memory.commit_turn("unfenced", turn("an unfenced turn"))

    with pytest.raises(FencedOutError):
        memory.commit_turn("older", turn("still fenced out"), fence=9)
    assert memory.commit_turn("holder", turn("the holder"), fence=10)


def test_the_fence_is_checked_before_the_expected_sequence(open_memory):
    memory = open_memory(new_session())
    seen = memory.get_window().last_seq
    memory.claim_fence(4)

    with pytest.raises(FencedOutError):
        memory.commit_turn("t", turn("stale"), expected_last_seq=seen, fence=3)
    assert memory.commit_turn("t", turn("current"), expected_last_seq=seen, fence=4)


@pytest.mark.parametrize("token", [0, -1, True, "5", 2.0])
def test_an_invalid_token_is_refused_naming_the_field(open_memory, token):
    memory = open_memory(new_session())

    with pytest.raises(ValueError, match="fence: must be a positive integer"):
        memory.commit_turn("t", turn("q"), fence=token)
    with pytest.raises(ValueError, match="fence: must be a positive integer"):
        memory.claim_fence(token)
    assert memory.get_messages() == []


def test_a_claim_racing_a_stale_commit_never_leaves_an_unseen_turn(open_memory):
    """The takeover sequence: the new holder claims, then asks whether the turn
    landed. Whatever the interleaving, the stale commit either landed before the
    claim (and the new holder sees it) or is refused: it never lands unseen."""
    for round_ in range(8):
        session = new_session()
        stale, newer = open_memory(session), open_memory(session)
        outcome: dict[str, object] = {}

        def commit(stale=stale, outcome=outcome) -> None:
            try:
                outcome["committed"] = stale.commit_turn("run", turn("stale"), fence=1)
            except FencedOutError:
                outcome["committed"] = False

        writer = threading.Thread(target=commit)
        writer.start()
        newer.claim_fence(2)
        seen_by_newer = newer.has_turn("run")
        writer.join()

        landed = open_memory(session).has_turn("run")
        assert landed == outcome["committed"], round_
        if not seen_by_newer:
            assert not landed, f"round {round_}: a turn landed after the claim"
