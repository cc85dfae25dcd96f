"""Spans of a recording in seconds, and the one rule for when two of them overlap."""

from __future__ import annotations

from collections.abc import Iterable

Interval = tuple[float, float]  # (begin, end) seconds from the start of a recording


def overlap(a: Interval, b: Interval) -> bool:
    """True when ``a`` and ``b`` share some time (touching ends do not)."""
    return a[0] < b[1] and b[0] < a[1]


def overlaps_any(span: Interval, others: Iterable[Interval], guard_seconds: float = 0.0) -> bool:
    """True when ``span`` overlaps any of ``others`` widened by ``guard_seconds`` each side."""
    return any(overlap(span, (lo - guard_seconds, hi + guard_seconds)) for lo, hi in others)
