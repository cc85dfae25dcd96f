"""Signals for ``whaled listen``, installed before anything slow (torch import, model load).

As uvicorn does it: a handler only sets a flag that start-up and the main loop look at.
SIGINT or SIGTERM ask to stop (a second one forces the exit); SIGHUP asks for a reload of the
model and thresholds. Installed first, so a signal during start-up is never fatal: a stop
request then ends the process cleanly before capture, a reload request is served on the main
loop's first pass.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("whaled")
FORCED_EXIT_STATUS = 130


@dataclass(frozen=True)
class Requests:
    """What the operator's signals asked for; set by the handlers, read by the daemon."""

    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)
    stop_signals: list[str] = field(default_factory=list)  # SIGTERM, SIGINT: who asked

    def stop_reason(self) -> str:
        return f"signal {self.stop_signals[0]}" if self.stop_signals else "stopped"


def install() -> Requests:
    """Install the handlers (main thread only) and return the flags they set."""
    requests = Requests()

    def stop(signum: int, frame: FrameType | None) -> None:
        if requests.stop.is_set():
            os._exit(FORCED_EXIT_STATUS)
        name = signal.Signals(signum).name
        log.info("signal %s: stopping", name)
        requests.stop_signals.append(name)
        requests.stop.set()

    def reload(signum: int, frame: FrameType | None) -> None:
        requests.reload.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    return requests
