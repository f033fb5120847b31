"""The producer's side of ``RunStore`` on ``redis.asyncio``: submit, publish and read a
run without a thread per request, for the gateway's event loop.

The round trips and what their replies mean are ``SubmitCall``'s and
``turn_message``'s, shared with the sync store; only the client differs.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio
from redis.exceptions import NoScriptError

from fence.runs import keys, scripts
from fence.runs.schema import RunRecord, RunRequest, RunState
from fence.runs.store import RunNotFound, Submission, SubmitCall
from fence.runs.turn_message import turn_message
from fence.settings import Settings


class AsyncRunStore:
    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._submit = client.register_script(scripts.SUBMIT)

    async def submit(self, request: RunRequest) -> Submission:
        """As ``RunStore.submit``."""
        call = SubmitCall(request, self.settings)
        *_, reply = await self._pipeline(call)
        read = call.read(reply)
        if isinstance(read, str):  # a duplicate: the earlier run
            pipe = self.redis.pipeline(transaction=False)
            call.forget_index(pipe)
            pipe.hgetall(keys.run(call.session_id, read))
            _, fields = await pipe.execute()
            return call.duplicate(read, fields)
        if read.state is RunState.REJECTED:
            await call.keep_index(self.redis)
        return read

    async def publish(self, session_id: str, run_id: str) -> None:
        """As ``RunStore.publish``."""
        await self.redis.lpush(keys.TURN_QUEUE, turn_message(session_id, run_id))

    async def get(self, run_id: str, session_id: str) -> RunRecord:
        fields = await self.redis.hgetall(keys.run(session_id, run_id))
        if not fields:
            raise RunNotFound(run_id)
        return RunRecord.from_hash(fields, run_id=run_id, session_id=session_id)

    async def _pipeline(self, call: SubmitCall) -> list[Any]:
        """The submit's round trip; if Redis lost its script cache, load ``SUBMIT`` and
        run it once more (a command that met ``NOSCRIPT`` did not run)."""
        for loaded in (False, True):
            pipe = self.redis.pipeline(transaction=False)
            call.queue(pipe, self._submit.sha)
            try:
                return await pipe.execute()
            except NoScriptError:
                if loaded:
                    raise
                await self.redis.script_load(scripts.SUBMIT)
        raise AssertionError("unreachable")
