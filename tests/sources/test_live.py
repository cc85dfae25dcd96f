"""A lost live input and its reopening, on fakes: the backoff, the counts, the metrics.

The same scenario on a real sound server (PulseAudio killed and started again under the
running daemon) is one slow test, in test_listen_pulse.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from detector.core.config import Settings
from detector.model.artifact import LoadedModel
from detector.outputs.metrics import Metrics
from detector.sources import reopen as live
from detector.sources.capture import REASON_DEVICE_LOST, SampleClock
from detector.sources.reopen import LiveCounters, Reconnector
from detector.sources.replay import ListSource, SourceError
from detector.stream.blocks import Gap, StreamInfo
from detector.stream.events import Thresholds
from detector.stream.run_summary import Status

RATE_HZ = 2000
BLOCK = 200
MIN_SECONDS, MAX_SECONDS = 0.5, 2.0
NO_MODEL = LoadedModel.__new__(LoadedModel)  # never looked at by these hooks


class FlakySource(ListSource):
    """A LiveSource fake: lost on demand; reopen() fails ``failures`` times, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__(StreamInfo(RATE_HZ, (1,), datetime(2020, 1, 1, tzinfo=UTC), "flag",
                                    "fake"), [])
        self.lost = False
        self.failures = failures
        self.reopens = 0

    def counters(self) -> LiveCounters:
        return LiveCounters()

    def reopen(self) -> None:
        self.reopens += 1
        if self.reopens <= self.failures:
            raise SourceError("device not there yet")
        self.lost = False


def status(stalled: bool = False) -> Status:
    """What the loop tells its hooks; the reconnector reads only ``stalled``."""
    return Status(0.0, not stalled, stalled, 0.0, 0.0, 0, 0, NO_MODEL, Settings(), Thresholds(),
                  BLOCK)


def test_a_lost_device_is_reopened_with_doubling_backoff(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: now[0])
    registry = CollectorRegistry()
    source = FlakySource(failures=3)
    hook = Reconnector(source, Metrics(registry, (1,), ("upcall",)), MIN_SECONDS, MAX_SECONDS)
    hook(status())
    assert source.reopens == 0 and hook.next_try_monotonic == 0.0  # fine: nothing to do
    source.lost = True
    tried_at = []
    for tick in range(80):  # 8 s of loop passes, 0.1 s apart
        now[0] = 100.0 + tick / 10
        before = source.reopens
        hook(status())
        if source.reopens != before:
            tried_at.append(round(now[0] - 100.0, 1))
    get = registry.get_sample_value
    # first try after the minimum wait, then 1 s, 2 s, and 2 s (the maximum) after each failure
    assert tried_at == [0.5, 1.5, 3.5, 5.5]
    assert not source.lost
    assert get("whaled_device_losses_total") == 1
    assert get("whaled_reconnect_attempts_total", {"result": "failed"}) == 3
    assert get("whaled_reconnect_attempts_total", {"result": "ok"}) == 1


def test_a_stall_without_a_loss_also_reopens(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: now[0])
    source = FlakySource(failures=0)
    hook = Reconnector(source, Metrics(CollectorRegistry(), (1,), ("upcall",)), MIN_SECONDS,
                       MAX_SECONDS)
    hook(status(stalled=True))
    now[0] = MIN_SECONDS
    hook(status(stalled=True))
    assert source.reopens == 1
    hook(status())  # audio flows again: the backoff starts over
    assert (hook.wait_seconds, hook.next_try_monotonic, hook.attempts) == (MIN_SECONDS, 0.0, 0)


def test_the_block_after_a_reopen_is_placed_by_the_clock_behind_a_device_lost_gap() -> None:
    clock = SampleClock(RATE_HZ)
    clock.place(BLOCK, 10.1)  # origin 10.0
    clock.place(BLOCK, 10.2)
    # the device was lost at 0.2 s and came back: this block ends at 3.2 s by the clock
    first = clock.place(BLOCK, 13.2, REASON_DEVICE_LOST)
    assert clock.pending == [Gap(400, 6200, REASON_DEVICE_LOST)]
    assert first == 6200
