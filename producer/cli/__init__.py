"""The ``fence`` command: enqueue and follow runs, read histories, run the local stack.

    fence submit SESSION MESSAGE [--agent A] [--wait SECONDS]   enqueue a turn
    fence status RUN | fence cancel RUN                         follow or stop a run
    fence history SESSION | fence session SESSION               read memory / the queue
    fence stack [--demo]                                        everything on this machine
    fence demo                                                  traffic + checks at a stack

Settings come from ``FENCE_*`` variables (``FENCE_REDIS_URL``, ``FENCE_MEMORY``,
...); ``fence stack`` writes them to ``<dir>/env`` for other shells. Output is
for people; ``--json`` prints one JSON document for programs. Exit codes: 0
done, 1 error (bad input, run failed/cancelled/rejected, not found, Redis
unreachable), 2 usage error, 124 ``--wait`` ended before the run did.

``main`` (the console script) is in ``producer.cli.main``; each command group has a
module (``runs``, ``history``, ``session``, ``demo``; ``fence stack`` is
``producer.stack.command``) with its handler and an ``add_parser``.
"""
