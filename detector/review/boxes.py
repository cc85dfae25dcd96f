"""Boxes a reviewer draws on the ``whaled review`` spectrogram, checked before they are written.

A box is a call's begin and end (seconds from the recording's start, as Raven counts them) and
its lowest and highest frequency (Hz) on one channel. Drawn where no detection is, it adds a
call the model missed (``POST /api/add``); drawn for the detection on show, it corrects that
detection's box (``POST /api/correct``). Either is one row of the recording's reviewed table
(:mod:`detector.annotations.reviewed`), so ``whaled train`` and ``whaled evaluate`` read it. A box
must lie
in audio the page can show for that recording and channel, and below its Nyquist frequency.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import soundfile

from detector.annotations.reviewed import UPCALL, VERDICTS
from detector.review.items import Item

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


# The page's part (:mod:`detector.review.page` puts it in its script): the view controls, a
# mouse drag turned into seconds and Hz through the plot area ``/api/view/N`` reports, the
# boxes drawn over the spectrogram, and the posts of a drawn box.
BOX_SCRIPT = """function viewQuery() {
  return "context=" + CONTEXTS[look.context] + "&range=" + RANGES[look.range]
    + "&top=" + TOPS[look.top];
}

async function loadView(item) {
  const response = await fetch("/api/view/" + item.number + "?" + viewQuery());
  const answer = await response.json();
  if (view[pos] !== item) return;
  if (!response.ok) { text($("status"), answer.error).className = "error"; return; }
  geo = answer; $("spectrogram").src = answer.png; paintBoxes();
}

function cycle(key, values, button, suffix) {
  look[key] = (look[key] + 1) % values.length;
  text(button.querySelector("b"), values[look[key]] + suffix);
  const item = view[pos]; if (item && item.has_audio) loadView(item);
}

function toData(event) {  // a mouse position as [seconds, Hz], clamped to the plot area
  const rect = $("spectrogram").getBoundingClientRect(), [l, t, r, b] = geo.axes_px;
  const scale = rect.width / geo.image_px[0];
  const x = Math.min(r, Math.max(l, (event.clientX - rect.left) / scale));
  const y = Math.min(b, Math.max(t, (event.clientY - rect.top) / scale));
  return [geo.seconds[0] + (x - l) / (r - l) * (geo.seconds[1] - geo.seconds[0]),
    geo.hz[1] - (y - t) / (b - t) * (geo.hz[1] - geo.hz[0])];
}

function place(el, box) {  // box: [begin s, end s, low Hz, high Hz], clipped to the plot
  const [l, t, r, b] = geo.axes_px, [w, h] = geo.image_px;
  const sx = (s) => l + (s - geo.seconds[0]) / (geo.seconds[1] - geo.seconds[0]) * (r - l);
  const hy = (f) => b - (f - geo.hz[0]) / (geo.hz[1] - geo.hz[0]) * (b - t);
  const x0 = Math.max(l, sx(box[0])), x1 = Math.min(r, sx(box[1]));
  const y0 = Math.max(t, hy(box[3])), y1 = Math.min(b, hy(box[2]));
  if (x1 <= x0 || y1 <= y0) return false;
  Object.assign(el.style, { left: x0 / w * 100 + "%", width: (x1 - x0) / w * 100 + "%",
    top: y0 / h * 100 + "%", height: (y1 - y0) / h * 100 + "%" });
  return true;
}

function paintBoxes() {
  const layer = $("boxes"); layer.replaceChildren();
  const item = view[pos]; if (!geo || !item) return;
  const add = (box, kind, label) => {
    const el = document.createElement("div"); el.className = "box " + kind;
    if (label) text(el.appendChild(document.createElement("span")), label);
    if (place(el, box)) layer.appendChild(el);
  };
  for (const a of added) {
    if (a.recording === item.recording && a.channel === item.channel) {
      add([a.begin_s, a.end_s, a.low_hz, a.high_hz], "added",
        "added " + (a.annotation === "upcall" ? "call" : a.annotation));
    }
  }
  if (item.box) add([item.box.begin_s, item.box.end_s, item.box.low_hz, item.box.high_hz],
    "fixed", "corrected");
  if (drawn) add(drawn, "drawn", "");
  text($("drawn"), drawn ? "box " + drawn[0].toFixed(2) + "–" + drawn[1].toFixed(2) + " s, "
    + drawn[2].toFixed(0) + "–" + drawn[3].toFixed(0) + " Hz: a missed call, b this "
    + "detection's box, Esc clears" : "drag on the spectrogram to draw a box");
}

const MIN_BOX_SECONDS = 0.05, MIN_BOX_HZ = 3;  // a smaller drag is a click, not a box
$("boxes").addEventListener("mousedown", (event) => {
  if (!geo || event.button !== 0) return;
  event.preventDefault(); dragFrom = toData(event);
});
document.addEventListener("mousemove", (event) => {
  if (!dragFrom) return;
  const [s, f] = toData(event);
  drawn = [Math.min(s, dragFrom[0]), Math.max(s, dragFrom[0]),
    Math.min(f, dragFrom[1]), Math.max(f, dragFrom[1])];
  paintBoxes();
});
document.addEventListener("mouseup", () => {
  if (!dragFrom) return;
  dragFrom = null;
  if (drawn && (drawn[1] - drawn[0] < MIN_BOX_SECONDS || drawn[3] - drawn[2] < MIN_BOX_HZ)) {
    drawn = null;
  }
  paintBoxes();
});

function boxBody(item) {
  const round = (x, digits) => Number(x.toFixed(digits));
  return { recording: item.recording, channel: item.channel, begin_s: round(drawn[0], 3),
    end_s: round(drawn[1], 3), low_hz: round(drawn[2], 1), high_hz: round(drawn[3], 1) };
}

function saveBox(asDetection) {
  const item = view[pos];
  if (!item || !drawn) {
    text($("status"), "draw a box on the spectrogram first").className = "error"; return;
  }
  const body = boxBody(item);
  if (asDetection) {
    Object.assign(body, { number: item.number, start_seconds: item.start_seconds,
      end_seconds: item.end_seconds, annotation: "upcall", note: $("note").value });
  }
  drawn = null; paintBoxes();
  saving = saving.then(() => postBox(item, body, asDetection));
}

async function postBox(item, body, asDetection) {
  const what = (asDetection ? "corrected box " : "added missed call ") + body.begin_s.toFixed(2)
    + "–" + body.end_s.toFixed(2) + " s, " + body.low_hz.toFixed(0) + "–"
    + body.high_hz.toFixed(0) + " Hz";
  try {
    const response = await fetch(asDetection ? "/api/correct" : "/api/add", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    if (asDetection) {
      item.box = answer.box; item.annotation = answer.annotation; item.note = answer.note;
      paintRow(item); if (view[pos] === item) paintVerdict(item);
    } else { added.push(answer); }
    progress(); paintBoxes();
    text($("status"), "saved " + what).className = "";
  } catch (error) {
    text($("status"), "NOT SAVED " + what + ": " + error.message).className = "error";
  }
}

"""
