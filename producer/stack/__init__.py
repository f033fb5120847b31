"""The whole runtime on one machine, for ``fence stack``, the tests and the benchmarks.

Every program runs as a child process started by its command line (redis-server,
``celery -A workers``, ``python -m producer.gateway``), never imported here:

* ``processes``: a watched child process (``ManagedProcess``) and free ports;
* ``launch``: redis-server, the Celery workers, beat, Flower and the gateway;
* ``config``: what a stack runs (``StackConfig``) and its defaults;
* ``dynamodb``: moto's DynamoDB on loopback, for ``--memory dynamodb``;
* ``directory``: what a stack keeps in its directory (lock, secrets, env file, pids);
* ``local``: ``LocalStack``, everything started, supervised and stopped together;
* ``command``: the ``fence stack`` command.
"""
