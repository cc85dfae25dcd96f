"""The one overlap rule every count uses: evaluation, reviewed labels, training negatives."""

from __future__ import annotations

from detector.core.intervals import overlap, overlaps_any


def test_spans_overlap_only_when_they_share_time() -> None:
    assert overlap((1.0, 2.0), (1.5, 3.0)) and overlap((1.5, 3.0), (1.0, 2.0))
    assert overlap((1.0, 4.0), (2.0, 3.0))  # one inside the other
    assert not overlap((1.0, 2.0), (2.0, 3.0))  # touching ends share no time
    assert not overlap((3.0, 4.0), (1.0, 2.0))


def test_a_guard_widens_the_others() -> None:
    calls = [(10.0, 11.0), (20.0, 21.0)]
    assert not overlaps_any((11.2, 12.0), calls)
    assert overlaps_any((11.2, 12.0), calls, guard_seconds=0.5)
    assert not overlaps_any((12.0, 19.4), calls, guard_seconds=0.5)
    assert not overlaps_any((0.0, 1.0), [])
