"""The ``fence`` command: enqueue and follow runs, read histories, run the local stack.

    fence submit SESSION MESSAGE [--agent A] [--wait SECONDS]   enqueue a turn
                                 [--follow]                     ... and watch its answer
    fence events RUN [--after ID] [--no-follow]                 a run's events, live
    fence status RUN | fence cancel RUN                         follow or stop a run
    fence approve RUN [--arguments JSON] | fence deny RUN       decide a waiting run's tool call
    fence history SESSION | fence session SESSION               read memory / the queue
    fence sessions [--state S] | fence runs SESSION             list sessions / a session's runs
    fence stack [--demo]                                        everything on this machine
    fence demo                                                  traffic + checks at a stack

Settings come from ``FENCE_*`` variables (``FENCE_REDIS_URL``, ``FENCE_MEMORY``,
...); ``fence stack`` writes them to ``<dir>/env`` for other shells. ``fence --url URL``
(or ``FENCE_API_URL``, with ``FENCE_API_TOKEN``) sends the run commands through the HTTP
gateway instead of to Redis. Output is
for people; ``--json`` prints one JSON document for programs (a JSON line per
event when following). Exit codes: 0 done, 1 error (bad input, run
failed/cancelled/rejected, not found, Redis unreachable), 2 usage error, 124
``--wait`` ended before the run did, 130 Ctrl-C.

``main`` (the console script) is in ``producer.cli.main``; each command group has a
module (``runs``, ``approvals``, ``events``, ``history``, ``session``, ``listing``,
``demo``; ``fence stack`` is ``producer.stack.command``) with its handler and an
``add_parser``; ``follow`` prints a run's answer as it comes and ``outcome`` how a
followed or awaited run ends; ``backend`` is where the commands' calls go (Redis, or
the gateway through ``remote``).
"""
