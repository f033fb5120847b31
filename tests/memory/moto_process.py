"""``python -m tests.memory.moto_process PORT``: the test DynamoDB endpoint as a
process of its own, so outage tests can SIGKILL, SIGSTOP and restart it.

It is ``aws_server.MotoServer`` (one request at a time, item-level rollback)
on 127.0.0.1:PORT; its tables live in memory, so a restart comes back empty.
"""

from __future__ import annotations

import logging
import sys
import threading

from tests.memory.aws_server import MotoServer, item_level_rollback

READY = "moto ready on "


def main(port: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with item_level_rollback():
        server = MotoServer(port)
        server.start()
        print(f"{READY}{server.url}", flush=True)
        threading.Event().wait()  # serve until killed


if __name__ == "__main__":
    main(int(sys.argv[1]))
