"""The sound cards PortAudio can record from, and which one ``--device`` names.

``whaled devices`` lists them; :func:`match_device` picks one as sounddevice would, or fails
with one line naming the close candidates. ``sounddevice`` is imported inside functions, so
importing this module does nothing (PortAudio lists the devices when it initialises).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from detector.sources.replay import SourceError

CLOSE_MATCHES = 5  # device names suggested for an unknown --device
CLOSE_MATCH_RATIO = 0.6  # difflib similarity from which a name is suggested


@dataclass(frozen=True)
class InputDevice:
    """A PortAudio device that can record."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    default_rate_hz: int

    @property
    def full_name(self) -> str:
        """What sounddevice matches a query against: ``"<name>, <host api>"``."""
        return f"{self.name}, {self.host_api}"


def list_input_devices() -> list[InputDevice]:
    """Every device PortAudio can record from, as it saw them when it initialised."""
    import sounddevice

    apis = [api["name"] for api in sounddevice.query_hostapis()]
    return [InputDevice(index, str(info["name"]), apis[info["hostapi"]],
                        int(info["max_input_channels"]), int(info["default_samplerate"]))
            for index, info in enumerate(sounddevice.query_devices())
            if info["max_input_channels"] > 0]


def format_devices(devices: Sequence[InputDevice]) -> str:
    """A table for ``whaled devices``; the first column is what ``--device`` takes."""
    if not devices:
        return "no input devices found (PortAudio lists none: is a sound server running?)"
    rows = [("index", "name", "host api", "inputs", "default rate")]
    rows += [(str(d.index), d.name, d.host_api, str(d.max_input_channels),
              f"{d.default_rate_hz} Hz") for d in devices]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def _matches_query(query: str, full_name: str) -> bool:
    """sounddevice's rule: the query's space-separated pieces appear in order, any case."""
    text, position = full_name.lower(), 0
    for piece in query.lower().split():
        position = text.find(piece, position)
        if position < 0:
            return False
        position += len(piece)
    return True


def _similarity(query: str, name: str) -> float:
    """How alike a query and a device name are, whole or against one word of the name.

    Words count so that ``hw:9,0`` is close to ``"USB Audio CODEC: USB Audio (hw:1,0)"``.
    """
    words = name.replace("(", " ").replace(")", " ").split()
    return max(difflib.SequenceMatcher(None, query.lower(), part.lower()).ratio()
               for part in [name, *words])


def match_device(query: str, devices: Sequence[InputDevice]) -> InputDevice:
    """The one input device ``query`` names (an index, or what sounddevice would match).

    An exact name (or ``"<name>, <host api>"``) wins over substring matches, as in
    sounddevice. Unknown or ambiguous: :class:`SourceError`, one line with the candidates.
    """
    by_index = {d.index: d for d in devices}
    if query.strip().isdigit():
        index = int(query)
        if index in by_index:
            return by_index[index]
        known = ", ".join(str(i) for i in sorted(by_index)) or "none"
        raise SourceError(f"no input device with index {index} (input devices: {known})")
    matches = [d for d in devices if _matches_query(query, d.full_name)]
    exact = [d for d in matches if query.lower() in (d.name.lower(), d.full_name.lower())]
    if len(matches) == 1:
        return matches[0]
    if len(exact) == 1:
        return exact[0]
    if matches:
        listed = "; ".join(f"[{d.index}] {d.full_name}" for d in matches)
        raise SourceError(f"input device {query!r} is ambiguous: {listed}")
    scored = sorted(((_similarity(query, d.name), d) for d in devices),
                    key=lambda pair: -pair[0])
    close = [d for score, d in scored if score >= CLOSE_MATCH_RATIO][:CLOSE_MATCHES]
    hint = ("; close matches: " + "; ".join(f"[{d.index}] {d.name}" for d in close)
            if close else "")
    raise SourceError(f"no input device matches {query!r}{hint} (see: whaled devices)")
