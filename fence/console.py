"""Console output that a closed pipe cannot break.

``fence history S | head -1`` or ``fence stack | tee log`` after ``tee`` died: the
reader is gone and the next write raises ``BrokenPipeError``. Output is never
worth a traceback, and a shutdown must never stop half-way because it could not
say so. On the first broken write the stream's descriptor is pointed at
``/dev/null``, so every later write (the interpreter's last flush included) is
dropped quietly.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


def say(text: str, stream: TextIO | None = None) -> None:
    """Write ``text`` and a newline, flushed; dropped if the reader has gone."""
    write(text + "\n", stream)


def write(text: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        silence(stream)


def silence(stream: TextIO | None = None) -> None:
    """Send whatever else is written to ``stream`` to ``/dev/null``."""
    stream = stream or sys.stdout
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)
