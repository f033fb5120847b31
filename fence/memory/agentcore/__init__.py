"""AgentCoreMemory: one session's history as Amazon Bedrock AgentCore Memory events,
in the shape AgentCore itself reads.

Uses the ``bedrock-agentcore`` data plane: ``create_event``, ``list_events``
and ``delete_event`` on (memory id, actor id, session id), and
``retrieve_memory_records`` for long-term memory. The service has no
transaction, no conditional write and no range read, and ``list_events``
returns events newest first with millisecond timestamps that tie. What this
backend does about each, and what it costs:

Payload layout (``layout``)
    A turn is ONE event. Its payload holds one ``conversational`` entry
    (``role`` USER, ASSISTANT, TOOL, or OTHER for a system note;
    ``content.text``) per message with text, in order, then one companion
    ``blob`` ``{"fence": "turn", "messages": [...]}`` holding, per message, the
    rest of its record as JSON (tool calls and their arguments,
    ``tool_call_id``, ``name``, ``meta``, token count) and the index of its
    conversational entry. The SDK (``MemoryClient.get_last_k_turns``) and
    AgentCore's long-term extraction read the conversational entries; Fence
    reads both and loses nothing. A message without text (an assistant message
    that only calls tools) or with more than 100,000 characters (the
    service's limit for one entry) keeps its content in the blob only.
    Event metadata carries ``fence_kind`` (turn, system, clear or fence),
    ``fence_seq`` / ``fence_last`` (the turn's seq range), ``fence_turn`` (its
    turn id) and ``fence_token`` (the fencing token of a fenced commit or
    claim), so seq claims and turn ids are read without payloads. The system
    prompt is a blob-only event of kind ``system`` (the newest wins, by a
    per-process monotonic nanosecond clock ``fence_at``, then event id);
    ``clear()`` writes a blob-only event of kind ``clear``; neither is
    extracted. Sessions written by earlier versions (one ``blob`` per message,
    ``{"fence": "message", "seq", "record", "turn_id"}``) still read.

Per-turn cap
    An event holds at most 100 payload entries: one per message plus the
    companion blob, so a turn holds at most ``MAX_MESSAGES_PER_TURN`` (99)
    messages. A longer turn is refused with a ``ValueError`` naming the rule
    and nothing is written (DynamoDB's cap is 98).

Order, and events other tools wrote
    Fence's own messages are ordered by its ``seq``; events without
    ``fence_kind`` (``MemoryClient.create_event(messages=...)``, other agents)
    are read as messages too, ordered by (event timestamp, event id), and the
    two are merged by (event timestamp, event id), each keeping its own order
    (``state``). With one clock, or the runtime's per-session lease, that is
    (event timestamp, event id) with seq breaking ties among Fence's events.
    Their USER and ASSISTANT entries keep their role; TOOL and OTHER entries
    become user messages (a model cannot take a tool result without its
    call, and another writer's text must not gain system authority);
    ``meta`` holds ``agentcore_event_id`` and ``agentcore_role``. They have no
    ``seq`` and do not move ``last_seq``, so ``expected_last_seq`` does not
    notice them; their tokens are counted when read. Blob and json entries of
    other writers are ignored. Fence never rewrites or deletes their events.

Reads (``listing``, ``window``)
    ``ListEvents`` lists newest first, in pages of ``page_size`` events
    (``maxResults``, 100 by default). A window (``get_window``: the agent's
    read, every turn) reads pages until the events read settle it: the newest
    messages that fit, the first that does not, and then ``ORDER_SLACK_MS``
    (1 s) of older events, so a millisecond tie or a writer whose clock is
    behind by less than that cannot leave a message on a page not read; a
    window that takes every message it read stops that far past the newest
    ``clear``. Before it stops it lists Fence's events that are not turns
    (prompts, clears, fence claims: ``filter.eventMetadata`` with
    ``fence_kind`` EXISTS and ``fence_last`` NOT_EXISTS, which every version
    of Fence wrote), and, if it read no turn of Fence's, the newest turns,
    for ``last_seq``. A window therefore costs 1 ``ListEvents`` call in a
    session of one page and 2 in a longer one (3 when the newest page holds
    only other writers' events), however long the session, unless the window
    itself spans more pages. What that relies on: a turn whose writer's clock
    was more than the slack behind the writer of the turn before it may be
    missing from a window (a read to the end has it), and a fenced turn is
    hidden by a larger token's fenced turn before it only if the window read
    that turn (claims are always listed; the runtime claims on every
    takeover). ``get_system_message`` lists the non-turn events only;
    ``get_messages()`` and ``get_window(None)`` read back to the newest clear
    (with the slack), else to the end. Writes, ``has_turn`` and ``clear``
    still list the whole session's metadata: ceil(events / ``page_size``)
    calls each.

Allocating seq (no conditional writes)
    A writer lists the session, takes ``last_seq + 1`` and creates its event,
    then lists again to verify. If another event claims an overlapping seq
    range, the writer deletes its own event and retries with jittered backoff
    (or, with ``expected_last_seq``, raises ``StaleWriteError``): a writer that
    sees a rival always yields, so two writers never both keep a seq; if both
    yield, both retry. A seq given up that way may stay unused: seqs are
    unique and increasing, not always consecutive (on DynamoDB they are).
    If the same turn id appears in an earlier event, the writer deletes its
    own and returns False. This relies on ``ListEvents`` showing an event once
    ``CreateEvent`` returned; if it ever did not, or a process died between
    create and verify, two events may share a seq: nothing is lost, and every
    reader orders them the same way (by event id). Fencing
    (``expected_last_seq``) is therefore check-then-write plus this
    verification, not an atomic compare-and-set: the runtime's per-session
    lease is what keeps writers apart. An append costs 2 reads of the
    session's metadata plus 1 ``CreateEvent`` (plus 1 ``DeleteEvent`` on
    conflict).

Fencing (no conditional writes, so as close as the API allows)
    ``claim_fence(token)`` writes an event of kind ``fence`` holding the
    token; a fenced commit carries its token in ``fence_token``. A fenced
    commit is refused before it writes when any claim or fenced turn holds a
    larger token. After writing, the verification read deletes our event
    (and raises ``FencedOutError``) if a larger token's claim or turn came
    before it in the service's event order; every reader, ``has_turn``
    included, ignores such an event (a window as Reads says), so a turn fenced
    out this way is never seen even before its writer deletes it (or if the
    writer died first).
    What remains: this relies on event ids ordering by time (``<epoch
    ms>#...``, the ms being the event's timestamp, which Fence sets when it
    creates the event; events of the same millisecond are ordered by the rest
    of the id, which need not follow creation), and an unfenced library write
    is never refused.

Idempotency
    Each ``CreateEvent`` sends a ``clientToken`` derived from the memory,
    actor, session, turn id, index of the turn's first message, claimed seq
    and attempt number, so a retried request (botocore's retry, fence's
    throttling retry, or a second delivery of the turn making the same claim)
    is stored once by the service, while a claim retried after yielding is
    not mistaken for the event it deleted. A turn id is recorded in its
    event, so a turn committed again later returns False.

Quota (``throttling``)
    AgentCore limits ``CreateEvent`` per actor and session; 0.25 requests/s
    is the figure users quote, one event every 4 s sustained. A turn is one
    ``CreateEvent`` (a takeover's ``claim_fence``, ``set_system_message`` and
    ``clear()`` one each), so a session sustains one turn per 4 s; the turns
    of different sessions do not share the limit. A burst of n turns in one
    session past what the service lets through waits about 4 s per turn
    beyond that, in throttled attempts retried with backoff: botocore's
    retries first, then fence's until 60 s have passed since the first
    attempt; after that the commit fails with ``MemoryBackendError`` and
    nothing is written. Every throttled response is counted by operation
    (``throttle_counts()``, ``observe_throttles(observer)``).

Clear
    ``clear()`` costs one read of the session and one ``CreateEvent``: reads
    then ignore seqs at or below the watermark, and events of other writers
    at or before the clear event (by event timestamp, then event id; a writer
    whose clock is behind may have an event written just after the clear
    hidden with it). It hides, never deletes: the SDK still sees every event.
    The service has no bulk delete, so old events stay until the memory's
    event expiry (``eventExpiryDuration``, set at creation) removes them or
    ``delete_cleared_events()`` deletes Fence's own, one ``DeleteEvent`` at a
    time (other writers' events are left alone). Deleting a turn's event
    forgets its turn id, so only do that once no retry of those turns can
    still arrive.

Long-term memory
    ``search(query, namespace=None, top_k=5)`` is one ``RetrieveMemoryRecords``
    call: without a namespace it searches ``/actors/<actor id>/``, where the
    strategies of ``python -m fence.memory.aws_setup agentcore`` write
    (``strategies``). ``AgentCoreMemory`` is a ``fence.memory.long_term.
    LongTermMemory``, so ``Agent(long_term=LongTermRecall(memory))`` sends the
    records for each prompt to the model.
"""

from fence.memory.agentcore.layout import MAX_MESSAGES_PER_TURN
from fence.memory.agentcore.memory import AgentCoreMemory, agentcore_session_id
from fence.memory.agentcore.throttling import observe_throttles, throttle_counts

__all__ = [
    "MAX_MESSAGES_PER_TURN",
    "AgentCoreMemory",
    "agentcore_session_id",
    "observe_throttles",
    "throttle_counts",
]
