import pytest

from detector.stream.events import Event, EventTracker, Thresholds, TrackerSettings

HOP = 0.25


def run(scores: list[float], **kw: float) -> list[Event]:
    settings = TrackerSettings(Thresholds(on=0.6, off=0.4), HOP, **kw)
    tracker = EventTracker(settings, channel=1, label="upcall")
    events = []
    for i, score in enumerate(scores):
        events += tracker.update(1.0 + i * HOP, score)
    return events + tracker.flush()


def spans(events: list[Event]) -> list[tuple[float, float]]:
    return [(e.start_seconds, e.end_seconds) for e in events]


def test_hysteresis_one_call_one_event() -> None:
    # opens at 0.7 (>= on), stays open through 0.5 (>= off), closes at 0.3
    events = run([0.1, 0.7, 0.5, 0.9, 0.45, 0.3, 0.1, 0.55, 0.1], merge_gap_seconds=0)
    assert spans(events) == [(1.125, 2.125)]
    assert events[0].peak_score == 0.9 and events[0].peak_seconds == 1.75


def test_below_on_never_opens() -> None:
    assert run([0.59, 0.5, 0.59]) == []


def test_merge_gap_joins_close_events() -> None:
    scores = [0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.9]
    assert spans(run(scores, merge_gap_seconds=0.3)) == [(0.875, 1.625), (2.625, 2.875)]
    assert spans(run(scores, merge_gap_seconds=0.0)) == [(0.875, 1.125), (1.375, 1.625),
                                                         (2.625, 2.875)]


def test_min_duration_drops_short_events() -> None:
    assert spans(run([0.9, 0.1, 0.9, 0.9, 0.9, 0.1], min_duration_seconds=0.5,
                     merge_gap_seconds=0)) == [(1.375, 2.125)]


def test_max_duration_cuts_long_events() -> None:
    events = run([0.9] * 10, max_duration_seconds=1.0)
    assert spans(events) == [(0.875, 1.875), (1.875, 2.875), (2.875, 3.375)]


@pytest.mark.parametrize("merge_gap_seconds", [0.0, 5.0])
def test_flush_closes_open_and_pending(merge_gap_seconds: float) -> None:
    events = run([0.9, 0.9], merge_gap_seconds=merge_gap_seconds)
    assert spans(events) == [(0.875, 1.375)]
