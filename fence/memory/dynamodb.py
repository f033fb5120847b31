"""DynamoDBMemory: one session's history in a DynamoDB table many workers share.

Key schema
----------
It works on the seed's table, whose only key is a partition key
(``session_id``): every message is an item of its own, so no session is capped
by DynamoDB's 400 KB item limit. ``#`` cannot occur in a session id, so the
keys of different sessions never collide::

    partition key value          attributes
    <session>                    head: last_seq, cleared_seq, system_prompt, purged_seq, fence
    <session>#m#<seq, 20 digits> one message: seq, record (the message as JSON), turn_id
    <session>#t#<turn_id>        turn marker: seq (first seq of the turn), count

On a table with a sort key (``sort_key_name=...``, a string attribute) the
partition key is the session id and the sort key is ``head``, ``m#<seq>`` or
``t#<turn_id>``. Every item also gets ``expires_at`` (epoch seconds) when
``ttl_seconds`` is set; ``fence.memory.aws_setup`` enables TTL on it.

The message is stored as a JSON string, not as a DynamoDB map, so floats
(DynamoDB numbers would need ``Decimal``) and unicode round-trip unchanged.

Writes
------
A turn commit is ONE ``TransactWriteItems``: update the head
``SET last_seq = :new`` on condition ``last_seq = :seen``, put each message on
condition it does not exist, put the turn marker on condition it does not
exist (an item whose TTL passed but that DynamoDB has not deleted yet counts
as absent). All of it lands or none of it does. When the transaction is
cancelled:

* the turn marker exists: the turn was committed before; return False;
* the commit was fenced and the head's ``fence`` is larger: raise
  ``FencedOutError`` (the head's condition also holds ``fence <= :fence``, and
  the update sets ``fence = :fence``, so the check and the write are one);
* ``last_seq`` moved and the caller gave ``expected_last_seq``: raise
  ``StaleWriteError`` (fencing: a stale worker never overwrites newer history);
* ``last_seq`` moved otherwise (another writer appended): retry on the head
  the failed condition returned (``ReturnValuesOnConditionCheckFailure``), with
  jittered backoff, so concurrent writers lose and duplicate nothing and a lost
  race costs one more request, not two.

An append never reads history: one ``GetItem`` of the head plus the
transaction (2 requests); a fenced commit knows its seq, so it is 1. Every
transaction carries a ``ClientRequestToken``, so botocore's retry of a commit
whose response was lost is not applied twice. A transaction holds at most 100
items, so a turn holds at most ``MAX_MESSAGES_PER_TURN`` (98) messages and
4 MB; a message whose item exceeds 400 KB is refused with ``ValueError``,
never truncated.

``claim_fence`` is one conditional ``UpdateItem`` of the head (``SET fence``
on condition it is absent or not larger).

Reads
-----
Reads are strongly consistent. A window reads the head, then message keys
from ``last_seq`` downward with ``BatchGetItem`` in chunks sized from the
token budget (``Query`` newest-first with ``Limit`` on a table with a sort
key), stopping at the first message that does not fit: its cost follows the
window, not the history. ``UnprocessedKeys`` and ``LastEvaluatedKey`` (1 MB
pages) are followed, so nothing is silently cut. Expired items still present
(TTL deletes lazily) are ignored, and a chunk with no item at all ends a scan:
everything older expired or was purged.

Clear
-----
``clear()`` is one ``UpdateItem``: ``cleared_seq = last_seq``. Reads ignore
seqs at or below it, so clearing takes the same time at 10 messages and at
100,000. The old message items stay until TTL removes them or
``purge_cleared()`` (a maintenance call, O(cleared messages)) deletes them.
Turn markers stay, so a turn committed before a clear is still recognised.
With ``ttl_seconds``, a turn marker that expired is forgotten: keep the TTL
longer than any retry of a turn can arrive.

``purge_cleared()`` and ``import_messages()`` (bulk load for migrations and
benchmarks) use ``BatchWriteItem``, which ``ops/iam-worker-policy.json``
leaves out: grant it to the maintenance role that runs them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from fence.errors import FencedOutError, MemoryBackendError, StaleWriteError
from fence.memory import _aws
from fence.memory.base import BaseMemory, Window, take_window
from fence.messages import Message, utf8
from fence.validation import clip

logger = logging.getLogger(__name__)

MAX_TRANSACTION_ITEMS = 100
MAX_MESSAGES_PER_TURN = MAX_TRANSACTION_ITEMS - 2
"""A commit also updates the head and writes the turn marker."""
MAX_ITEM_BYTES = 400 * 1024
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_BATCH_GET = 100
MAX_BATCH_WRITE = 25
WRITE_CONTENTION_BUDGET_S = 60.0
"""How long an append keeps retrying while other writers win the race for its seq: long
enough that a writer starved by busier ones (a loaded host) still gets its turn."""
GUESS_TOKENS_PER_MESSAGE = 24
"""First guess of a message's size, used to size the first read of a window."""
SEQ_DIGITS = 20
TTL_ATTRIBUTE = "expires_at"
FENCE_NOT_NEWER = "(attribute_not_exists(fence) OR fence <= :fence)"
"""The head's fence is absent or not larger than the writer's token (``:fence``)."""
TABLE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_RETRYABLE_REASONS = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    }
)
_NUMBER_BYTES = 21  # DynamoDB stores a number in at most 21 bytes
_OWN_ATTRIBUTES = frozenset(
    {"seq", "record", "turn_id", "count", "last_seq", "cleared_seq", "purged_seq", "fence"}
    | {"system_prompt", TTL_ATTRIBUTE}
)


@dataclass
class _Progress:
    """How much of a window has been read, to size the next read."""

    max_tokens: int | None
    used: int = 0
    count: int = 0

    def took(self, message: Message) -> None:
        self.used += message.tokens or 0
        self.count += 1

    def next_chunk(self) -> int:
        """Messages to fetch next so that the window is likely complete: the
        remaining budget over the average message so far, +25% and one more (to
        find the first message that does not fit)."""
        if self.max_tokens is None:
            return MAX_BATCH_GET
        average = self.used / self.count if self.count else GUESS_TOKENS_PER_MESSAGE
        wanted = math.ceil(max(self.max_tokens - self.used, 0) / max(average, 1) * 1.25) + 1
        return max(1, min(MAX_BATCH_GET, wanted))


@dataclass(frozen=True)
class _Head:
    last_seq: int = 0
    cleared_seq: int = 0
    purged_seq: int = 0
    system_prompt: str | None = None
    fence: int = 0


class DynamoDBMemory(BaseMemory):
    """A session stored in a DynamoDB table, safe for many processes and machines."""

    def __init__(
        self,
        table_name: str,
        primary_key_name: str = "session_id",
        primary_key_value: str | None = None,
        region: str | None = None,
        *,
        sort_key_name: str | None = None,
        ttl_seconds: int | None = None,
        endpoint_url: str | None = None,
        boto3_session: boto3.session.Session | None = None,
        client: BaseClient | None = None,
    ) -> None:
        if primary_key_value is None:
            raise ValueError("primary_key_value: required; it is the session id")
        super().__init__(primary_key_value)
        if not isinstance(table_name, str) or not TABLE_NAME_PATTERN.fullmatch(table_name):
            raise ValueError(
                "table_name: must be 3-255 characters of letters, digits, _ . - "
                f"(got {clip(repr(table_name))})"
            )
        for field, name in (
            ("primary_key_name", primary_key_name),
            ("sort_key_name", sort_key_name),
        ):
            if name is not None and (not isinstance(name, str) or not name):
                raise ValueError(f"{field}: must be a non-empty attribute name")
            if name in _OWN_ATTRIBUTES:
                raise ValueError(f"{field}: {name!r} is an attribute DynamoDBMemory writes itself")
        if sort_key_name is not None and sort_key_name == primary_key_name:
            raise ValueError("sort_key_name: must differ from primary_key_name")
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0
        ):
            raise ValueError(f"ttl_seconds: must be a positive integer (got {ttl_seconds!r})")
        self.table_name = table_name
        self.primary_key_name = primary_key_name
        self.sort_key_name = sort_key_name
        self.ttl_seconds = ttl_seconds
        self._what = f"DynamoDB table {table_name!r}"
        self._client = _aws.make_client(
            "dynamodb",
            what=self._what,
            client=client,
            region=region,
            endpoint_url=endpoint_url,
            boto3_session=boto3_session,
        )

    @property
    def client(self) -> BaseClient:
        """The boto3 DynamoDB client in use (e.g. to count requests)."""
        return self._client

    # -- keys and items -------------------------------------------------------

    def _key(self, suffix: str | None) -> dict[str, dict[str, str]]:
        """Key of the head (``suffix`` None), a message (``m#…``) or a turn (``t#…``)."""
        if self.sort_key_name is None:
            value = self.session_id if suffix is None else f"{self.session_id}#{suffix}"
            return {self.primary_key_name: {"S": value}}
        return {
            self.primary_key_name: {"S": self.session_id},
            self.sort_key_name: {"S": "head" if suffix is None else suffix},
        }

    def _head_key(self) -> dict[str, dict[str, str]]:
        return self._key(None)

    def _message_key(self, seq: int) -> dict[str, dict[str, str]]:
        return self._key(f"m#{seq:0{SEQ_DIGITS}d}")

    def _turn_key(self, turn_id: str) -> dict[str, dict[str, str]]:
        return self._key(f"t#{turn_id}")

    def _expiry(self) -> dict[str, dict[str, str]]:
        if self.ttl_seconds is None:
            return {}
        return {TTL_ATTRIBUTE: {"N": str(int(time.time()) + self.ttl_seconds)}}

    def _message_item(self, seq: int, record: str, turn_id: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            **self._message_key(seq),
            "seq": {"N": str(seq)},
            "record": {"S": record},
            **self._expiry(),
        }
        if turn_id is not None:
            item["turn_id"] = {"S": turn_id}
        return item

    @staticmethod
    def _item_bytes(item: dict[str, Any], field: str) -> int:
        """Upper bound of an item's size as DynamoDB counts it (names + values).

        Raises ``ValueError`` naming ``field`` when a string is not storable text.
        """
        size = 0
        for name, value in item.items():
            size += len(name.encode("utf-8"))
            size += len(utf8(value["S"], field)) if "S" in value else _NUMBER_BYTES
        return size

    @staticmethod
    def _expired(item: dict[str, Any], now: float) -> bool:
        expiry = item.get(TTL_ATTRIBUTE)
        return expiry is not None and float(expiry["N"]) < now

    def _encode_one(self, index: int, message: Message) -> tuple[str, int]:
        """The record stored for ``message`` and the most bytes its item can take."""
        field = f"messages[{index}]"
        record = json.dumps(message.to_record(), ensure_ascii=False)
        # the turn id is not known here: count the longest one allowed
        size = self._item_bytes(self._message_item(1, record, "x" * 128), field)
        if size > MAX_ITEM_BYTES:
            raise ValueError(
                f"{field}: stored as a DynamoDB item it takes {size} bytes; "
                f"DynamoDB's item limit is 400 KB ({MAX_ITEM_BYTES} bytes). Split the "
                "content or lower FENCE_MAX_MESSAGE_BYTES; nothing was written"
            )
        return record, size

    def _encode(self, messages: Sequence[Message]) -> list[str]:
        """The records of one turn, refused unless one transaction can hold them."""
        if len(messages) > MAX_MESSAGES_PER_TURN:
            raise ValueError(
                f"messages: a turn holds at most {MAX_MESSAGES_PER_TURN} messages on DynamoDB "
                f"(TransactWriteItems takes {MAX_TRANSACTION_ITEMS} items); got {len(messages)}"
            )
        encoded = [self._encode_one(index, m) for index, m in enumerate(messages)]
        total = sum(size for _, size in encoded)
        if total > MAX_TRANSACTION_BYTES - 4096:
            raise ValueError(
                f"messages: the turn takes {total} bytes; a DynamoDB transaction holds at most "
                f"4 MB ({MAX_TRANSACTION_BYTES} bytes). Commit it as several turns; nothing "
                "was written"
            )
        return [record for record, _ in encoded]

    def _decode(self, item: dict[str, Any]) -> Message:
        turn = item.get("turn_id")
        return Message.from_record(
            json.loads(item["record"]["S"]),
            seq=int(item["seq"]["N"]),
            turn_id=turn["S"] if turn else None,
        )

    # -- requests -------------------------------------------------------------

    def _call(
        self, operation: str, passthrough: frozenset[str] = frozenset(), **params: Any
    ) -> dict[str, Any]:
        return _aws.call(
            self._client,
            operation,
            what=self._what,
            not_found=(
                "create it with `python -m fence.memory.aws_setup dynamodb --table "
                f"{self.table_name}` (or the seed's `aws dynamodb create-table`)"
            ),
            passthrough=passthrough,
            **params,
        )

    def _get_head(self) -> _Head:
        item = self._call(
            "get_item", TableName=self.table_name, Key=self._head_key(), ConsistentRead=True
        ).get("Item")
        return self._parse_head(item)

    @staticmethod
    def _parse_head(item: dict[str, Any] | None) -> _Head:
        if not item:
            return _Head()
        system = item.get("system_prompt")
        return _Head(
            last_seq=int(item["last_seq"]["N"]) if "last_seq" in item else 0,
            cleared_seq=int(item["cleared_seq"]["N"]) if "cleared_seq" in item else 0,
            purged_seq=int(item["purged_seq"]["N"]) if "purged_seq" in item else 0,
            system_prompt=system["S"] if system else None,
            fence=int(item["fence"]["N"]) if "fence" in item else 0,
        )

    # -- writes ---------------------------------------------------------------

    def _append(
        self,
        messages: list[Message],
        turn_id: str | None,
        expected_last_seq: int | None,
        fence: int | None,
    ) -> bool:
        records = self._encode(messages)
        head: _Head | None = None  # None: read it first
        deadline = time.monotonic() + WRITE_CONTENTION_BUDGET_S
        attempt = 0
        while time.monotonic() < deadline:
            if expected_last_seq is not None:
                seen = expected_last_seq
            else:
                head = head or self._get_head()
                seen = head.last_seq
            try:
                self._commit(records, turn_id, seen, fence)
                return True
            except ClientError as exc:
                cancelled = exc.response.get("CancellationReasons", [])
            reasons = [r.get("Code", "None") for r in cancelled]
            head_moved = bool(reasons) and reasons[0] == "ConditionalCheckFailed"
            if turn_id is not None and reasons and reasons[-1] == "ConditionalCheckFailed":
                return False
            # The failed condition returns the head as it is now (ALL_OLD): a retry
            # needs no extra read.
            head = None
            if head_moved and "Item" in cancelled[0]:
                head = self._parse_head(cancelled[0]["Item"])
            if head_moved and fence is not None:
                found_fence = (head or self._get_head()).fence
                if found_fence > fence:
                    raise FencedOutError.newer(self.session_id, fence, found_fence)
            if head_moved and expected_last_seq is not None:
                if turn_id is not None and self._has_turn(turn_id):
                    return False
                found = (head or self._get_head()).last_seq
                raise StaleWriteError.moved_on(self.session_id, expected_last_seq, found)
            if not head_moved and not _RETRYABLE_REASONS.intersection(reasons):
                if "ConditionalCheckFailed" in reasons:
                    raise MemoryBackendError(
                        f"{self._what}: a message item already exists beyond session "
                        f"{self.session_id!r}'s last_seq {seen}; its head item was deleted or "
                        "edited by hand. Nothing was written"
                    )
                raise MemoryBackendError(
                    f"{self._what}: commit to session {self.session_id!r} was cancelled "
                    f"({', '.join(reasons) or 'no reason given'}); nothing was written"
                )
            logger.debug(
                "session_id=%s retrying commit (attempt %d): %s",
                self.session_id,
                attempt + 1,
                ",".join(reasons),
            )
            _aws.backoff(min(attempt, 10))  # the delay stops growing at its cap
            attempt += 1
        raise MemoryBackendError(
            f"{self._what}: gave up appending to session {self.session_id!r} after "
            f"{WRITE_CONTENTION_BUDGET_S:g} s and {attempt} attempts: too many concurrent "
            "writers; nothing was written"
        )

    def _commit(
        self, records: list[str], turn_id: str | None, seen: int, fence: int | None
    ) -> None:
        """One transaction: advance the head from ``seen`` (and to ``fence``, if not
        behind it), write messages and turn marker.

        ``last_seq`` is only ever written as 1 or more, so ``seen == 0`` means the
        head has no ``last_seq`` yet (or no head exists).
        """
        now = {":now": {"N": str(int(time.time()))}}
        names = {"#pk": self.primary_key_name, "#exp": TTL_ATTRIBUTE}

        def put_absent(item: dict[str, Any]) -> dict[str, Any]:
            # an item whose TTL passed but that DynamoDB has not deleted yet is absent
            return {
                "Put": {
                    "TableName": self.table_name,
                    "Item": item,
                    "ConditionExpression": "(attribute_not_exists(#pk) OR #exp < :now)",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": now,
                }
            }

        condition = "last_seq = :seen"
        if seen == 0:
            condition = f"(attribute_not_exists(last_seq) OR {condition})"
        update = "SET last_seq = :new"
        values = {":new": {"N": str(seen + len(records))}, ":seen": {"N": str(seen)}}
        if fence is not None:
            condition += f" AND {FENCE_NOT_NEWER}"
            update += ", fence = :fence"
            values[":fence"] = {"N": str(fence)}
        head = self._head_update(update, values)
        actions = [
            {
                "Update": {
                    **head,
                    "ConditionExpression": condition,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            *(
                put_absent(self._message_item(seen + offset, record, turn_id))
                for offset, record in enumerate(records, start=1)
            ),
        ]
        if turn_id is not None:
            marker = {
                **self._turn_key(turn_id),
                "seq": {"N": str(seen + 1)},
                "count": {"N": str(len(records))},
                **self._expiry(),
            }
            actions.append(put_absent(marker))
        self._call(
            "transact_write_items",
            passthrough=frozenset({"TransactionCanceledException"}),
            TransactItems=actions,
            ClientRequestToken=uuid.uuid4().hex,
        )

    def _head_update(self, expression: str, values: dict[str, Any]) -> dict[str, Any]:
        """Parameters of an update of the head by a ``SET`` ``expression``; refreshes its TTL."""
        expiry = self._expiry()
        if expiry:
            expression += f", {TTL_ATTRIBUTE} = :exp"
            values = {**values, ":exp": expiry[TTL_ATTRIBUTE]}
        return {
            "TableName": self.table_name,
            "Key": self._head_key(),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
        }

    def _update_head(
        self,
        expression: str,
        values: dict[str, Any],
        passthrough: frozenset[str] = frozenset(),
        **extra: Any,
    ) -> dict[str, Any]:
        return self._call(
            "update_item", passthrough, **self._head_update(expression, values), **extra
        )

    def _claim_fence(self, token: int) -> None:
        try:
            self._update_head(
                "SET fence = :fence",
                {":fence": {"N": str(token)}},
                ConditionExpression=FENCE_NOT_NEWER,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                passthrough=frozenset({"ConditionalCheckFailedException"}),
            )
        except ClientError as exc:
            seen = self._parse_head(exc.response.get("Item")).fence or self._get_head().fence
            raise FencedOutError.newer(self.session_id, token, seen) from None

    def _set_system(self, text: str) -> None:
        self._update_head("SET system_prompt = :text", {":text": {"S": text}})

    def _clear(self) -> None:
        # One request, whatever the history's length: a watermark, not a delete.
        self._update_head("SET cleared_seq = if_not_exists(last_seq, :zero)", {":zero": {"N": "0"}})

    # -- reads ----------------------------------------------------------------

    def _get_system(self) -> str | None:
        return self._get_head().system_prompt

    def _has_turn(self, turn_id: str) -> bool:
        item = self._call(
            "get_item", TableName=self.table_name, Key=self._turn_key(turn_id), ConsistentRead=True
        ).get("Item")
        return bool(item) and not self._expired(item, time.time())

    def _read_window(self, max_tokens: int | None, at_least_one: bool = False) -> Window:
        head = self._get_head()
        newest_first = self._newest_first(head.cleared_seq + 1, head.last_seq, max_tokens)
        return take_window(
            newest_first, max_tokens, at_least_one, head.last_seq, system=head.system_prompt
        )

    def _read_all(self) -> list[Message]:
        head = self._get_head()
        messages = list(self._newest_first(head.cleared_seq + 1, head.last_seq, None))
        messages.reverse()
        return messages

    def _newest_first(self, lo: int, hi: int, max_tokens: int | None) -> Iterator[Message]:
        """Messages with ``lo <= seq <= hi``, newest first, fetched lazily in chunks."""
        if hi < lo:
            return
        progress = _Progress(max_tokens)
        fetch = self._query_chunks if self.sort_key_name else self._batch_chunks
        for chunk in fetch(lo, hi, progress.next_chunk):
            for message in chunk:
                progress.took(message)
                yield message

    def _batch_chunks(self, lo: int, hi: int, size: Callable[[], int]) -> Iterator[list[Message]]:
        while hi >= lo:
            n = min(size(), hi - lo + 1)
            items = self._batch_get([self._message_key(seq) for seq in range(hi, hi - n, -1)])
            now = time.time()
            found = [self._decode(i) for i in items if not self._expired(i, now)]
            if not found:
                return  # a whole chunk is gone: the older history expired or was purged
            found.sort(key=lambda m: m.seq or 0, reverse=True)
            yield found
            hi -= n

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
        idle = 0
        while request:
            response = self._call("batch_get_item", RequestItems=request)
            got = response.get("Responses", {}).get(self.table_name, [])
            items.extend(got)
            request = response.get("UnprocessedKeys") or {}
            if request:
                idle = 0 if got else idle + 1
                if idle:
                    _aws.backoff(idle, base=0.02, cap=1.0)
        return items

    def _query_chunks(self, lo: int, hi: int, size: Callable[[], int]) -> Iterator[list[Message]]:
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk AND #sk BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {"#pk": self.primary_key_name, "#sk": self.sort_key_name},
            "ExpressionAttributeValues": {
                ":pk": {"S": self.session_id},
                ":lo": {"S": f"m#{lo:0{SEQ_DIGITS}d}"},
                ":hi": {"S": f"m#{hi:0{SEQ_DIGITS}d}"},
            },
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        while True:
            response = self._call("query", Limit=size(), **params)
            now = time.time()
            yield [self._decode(i) for i in response.get("Items", []) if not self._expired(i, now)]
            start = response.get("LastEvaluatedKey")
            if not start:
                return
            params["ExclusiveStartKey"] = start

    # -- maintenance ----------------------------------------------------------

    def purge_cleared(self) -> int:
        """Delete the message items hidden by ``clear()``; returns how many keys were deleted.

        ``clear()`` only moves a watermark; call this from a maintenance job (or
        rely on TTL) to reclaim the storage. Costs one ``BatchWriteItem`` per 25
        messages cleared since the last purge. Turn markers are kept.
        """
        head = self._get_head()
        start, end = head.purged_seq + 1, head.cleared_seq
        if end < start:
            return 0
        for first in range(start, end + 1, MAX_BATCH_WRITE):
            seqs = range(first, min(first + MAX_BATCH_WRITE, end + 1))
            self._batch_write([{"DeleteRequest": {"Key": self._message_key(s)}} for s in seqs])
        self._set_purged(end)
        return end - start + 1

    def _set_purged(self, end: int) -> None:
        with contextlib.suppress(ClientError):  # a concurrent purge got further
            self._call(
                "update_item",
                passthrough=frozenset({"ConditionalCheckFailedException"}),
                TableName=self.table_name,
                Key=self._head_key(),
                UpdateExpression="SET purged_seq = :end",
                ConditionExpression="attribute_not_exists(purged_seq) OR purged_seq < :end",
                ExpressionAttributeValues={":end": {"N": str(end)}},
            )

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self.table_name: requests}
        idle = 0
        while pending:
            before = len(pending.get(self.table_name, []))
            response = self._call("batch_write_item", RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if pending:
                idle = idle + 1 if len(pending.get(self.table_name, [])) >= before else 0
                if idle:
                    _aws.backoff(idle, base=0.02, cap=1.0)

    def import_messages(self, messages: Iterable[Message]) -> int:
        """Bulk-load ``messages`` after the current history; returns how many.

        For migrations and benchmarks: claims the seq range with one
        ``UpdateItem`` (``last_seq`` += count), then writes 25 items per
        ``BatchWriteItem``. Unlike ``commit_turn`` it is neither atomic nor
        idempotent: a reader may see part of the import while it runs, and a
        crash leaves a gap. Do not use it for live conversation turns.
        """
        batch = list(messages)
        if not batch:
            return 0
        records = []
        for index, message in enumerate(batch):  # all checked before anything is written
            if not isinstance(message, Message):
                raise ValueError(f"messages[{index}]: must be a fence Message")
            records.append(self._encode_one(index, message)[0])
        response = self._update_head(
            "SET last_seq = if_not_exists(last_seq, :zero) + :n",
            {":zero": {"N": "0"}, ":n": {"N": str(len(records))}},
            ReturnValues="UPDATED_NEW",
        )
        first = int(response["Attributes"]["last_seq"]["N"]) - len(records) + 1
        items = [
            {"PutRequest": {"Item": self._message_item(first + i, record, None)}}
            for i, record in enumerate(records)
        ]
        for start in range(0, len(items), MAX_BATCH_WRITE):
            self._batch_write(items[start : start + MAX_BATCH_WRITE])
        return len(records)

    def __repr__(self) -> str:
        return (
            f"DynamoDBMemory(table_name={self.table_name!r}, primary_key_value={self.session_id!r})"
        )
