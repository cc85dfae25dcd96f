"""systemd's service notification protocol, and the watchdog that rides on it.

``sd_notify`` is one datagram to ``$NOTIFY_SOCKET`` (a leading ``@`` is the abstract
namespace). Outside systemd the variable is unset and every call does nothing.
:class:`Watchdog` sends ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` only while the pipeline
says audio is moving, so a stalled capture stops the pings and systemd restarts the process.
"""

from __future__ import annotations

import os
import socket
import time

MICROSECONDS_PER_SECOND = 1_000_000
STATUS_EVERY_SECONDS = 10.0  # how often the one-line STATUS= summary is refreshed


def sd_notify(*fields: str) -> bool:
    """Send ``KEY=value`` lines to systemd; False when not under systemd or the send fails."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(fields).encode(), address)
        return True
    except OSError:
        return False


def watchdog_interval_seconds() -> float:
    """Half of systemd's WatchdogSec (from ``$WATCHDOG_USEC``); 0 when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return 0.0
    return int(usec) / MICROSECONDS_PER_SECOND / 2


class Watchdog:
    """READY=1 once, WATCHDOG=1 while audio flows, STATUS= now and then, STOPPING=1 at the end."""

    def __init__(self) -> None:
        self.interval_seconds = watchdog_interval_seconds()
        self.ready = False
        self._next_ping = 0.0  # monotonic time the next WATCHDOG=1 is due
        self._last_status = 0.0

    def tick(self, audio_flowing: bool, status: str) -> None:
        """Called by the main loop on every pass; sends only what is due."""
        now = time.monotonic()
        if audio_flowing and not self.ready:
            sd_notify("READY=1", f"STATUS={status}")
            self.ready = True
            self._last_status = now
        if audio_flowing and self.interval_seconds and now >= self._next_ping:
            sd_notify("WATCHDOG=1")  # withheld while stalled: systemd restarts us
            # on a fixed grid, so loop jitter does not stretch the interval; after a stall,
            # the grid starts again from now
            on_time = now - self._next_ping < self.interval_seconds
            self._next_ping = (self._next_ping if on_time else now) + self.interval_seconds
        if self.ready and now - self._last_status >= STATUS_EVERY_SECONDS:
            sd_notify(f"STATUS={status}")
            self._last_status = now

    def status(self, text: str) -> None:
        sd_notify(f"STATUS={text}")

    def stopping(self, status: str) -> None:
        sd_notify("STOPPING=1", f"STATUS={status}")
