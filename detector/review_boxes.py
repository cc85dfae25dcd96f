"""Boxes a reviewer draws on the ``whaled review`` spectrogram, checked before they are written.

A box is a call's begin and end (seconds from the recording's start, as Raven counts them) and
its lowest and highest frequency (Hz) on one channel. Drawn where no detection is, it adds a
call the model missed (``POST /api/add``); drawn for the detection on show, it corrects that
detection's box (``POST /api/correct``). Either is one row of the recording's reviewed table
(:mod:`detector.labels`), so ``whaled train`` and ``whaled evaluate`` read it. A box must lie
in audio the page can show for that recording and channel, and below its Nyquist frequency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import soundfile

from detector.labels import UPCALL, VERDICTS
from detector.review_items import Item

EDGE_TOLERANCE_SECONDS = 0.001  # a box drawn to the last pixel of the audio is inside it


@dataclass(frozen=True)
class Box:
    """A box as the page posted it, its numbers and annotation checked."""

    channel: int  # 1-based
    begin_seconds: float  # from the recording's start
    end_seconds: float
    low_hz: float
    high_hz: float
    annotation: str  # one of VERDICTS; ``upcall`` unless the page says otherwise
    note: str


@dataclass(frozen=True)
class AudioSpan:
    """The seconds of a recording one file holds for a channel, and the file's Nyquist."""

    first_seconds: float
    last_seconds: float
    nyquist_hz: float


def number(body: dict[str, Any], name: str) -> float:
    """A finite JSON number from ``body``; ValueError naming the field otherwise."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {json_text(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def json_text(value: object) -> str:
    return "nothing" if value is None else repr(value)


def parse_box(body: dict[str, Any]) -> Box:
    """The box in a posted JSON object (``channel``, ``begin_s``, ``end_s``, ``low_hz``,
    ``high_hz``, optional ``annotation`` and ``note``); ValueError with one line otherwise."""
    channel = number(body, "channel")
    if channel != int(channel) or channel < 1:
        raise ValueError(f"channel must be a whole number from 1, got {channel:g}")
    begin, end = number(body, "begin_s"), number(body, "end_s")
    low, high = number(body, "low_hz"), number(body, "high_hz")
    if begin < 0:
        raise ValueError(f"begin_s must be 0 or more seconds, got {begin:g}")
    if not begin < end:
        raise ValueError(f"begin_s must be before end_s, got {begin:g}-{end:g} s")
    if low < 0:
        raise ValueError(f"low_hz must be 0 or more, got {low:g}")
    if not low < high:
        raise ValueError(f"low_hz must be below high_hz, got {low:g}-{high:g} Hz")
    annotation = str(body.get("annotation") or UPCALL)
    if annotation not in VERDICTS:
        raise ValueError(f"annotation must be one of {', '.join(VERDICTS)}, got {annotation!r}")
    return Box(int(channel), begin, end, low, high, annotation, str(body.get("note") or ""))


def audio_span(item: Item) -> AudioSpan | None:
    """What the file holding ``item``'s audio covers; None without audio or when unreadable."""
    if item.audio is None:
        return None
    try:
        info = soundfile.info(str(item.audio.path))
    except (OSError, RuntimeError):
        return None
    first = item.audio.first_seconds
    return AudioSpan(first, first + info.frames / info.samplerate, info.samplerate / 2)


def check_inside(box: Box, spans: Iterable[AudioSpan], where: str) -> None:
    """ValueError unless ``box`` lies in one of ``spans`` (``where``: the recording, for the
    message) and below its Nyquist frequency."""
    spans = list(spans)
    if not spans:
        raise ValueError(f"no audio of {where} channel {box.channel} to draw a box on")
    inside = [s for s in spans if s.first_seconds - EDGE_TOLERANCE_SECONDS <= box.begin_seconds
              and box.end_seconds <= s.last_seconds + EDGE_TOLERANCE_SECONDS]
    if not inside:
        held = ", ".join(f"{s.first_seconds:.3f}-{s.last_seconds:.3f} s" for s in spans)
        raise ValueError(f"the box {box.begin_seconds:.3f}-{box.end_seconds:.3f} s is outside "
                         f"the audio of {where} ({held})")
    nyquist = max(s.nyquist_hz for s in inside)
    if box.high_hz > nyquist:
        raise ValueError(f"high_hz {box.high_hz:g} is above the audio's Nyquist frequency "
                         f"({nyquist:g} Hz)")
