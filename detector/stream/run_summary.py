"""What a run is doing and has done: the snapshot the main loop's hooks see each pass
(:class:`Status`), and the counts and latest records of the whole run (:class:`RunSummary`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from detector.core.config import Settings
from detector.model.artifact import LoadedModel
from detector.stream.blocks import Gap
from detector.stream.events import Detection, Thresholds


@dataclass(frozen=True)
class Status:
    """What the main loop's hooks see on each pass: a snapshot they cannot change."""

    now_monotonic: float
    flowing: bool  # audio has come and is not stalled
    stalled: bool
    silent_seconds: float  # since the last block
    analysed_seconds: float
    detections: int
    gaps: int
    loaded: LoadedModel
    settings: Settings
    thresholds: Thresholds
    hop_samples: int  # at the model's rate


class RunSummary:
    """Counts for the whole run, and the records themselves: all of them for one recording
    (``kept=None``), only the latest ``kept`` for a daemon that runs for years (every record
    is in the sinks)."""

    def __init__(self, kept: int | None = None) -> None:
        self.samples = 0  # analysed
        self.unwritten: list[tuple[str, int]] = []  # (file, lines) never written, at the end
        self.unanalysed = ""  # a replayed recording not fully analysed: why (detect's failed)
        self.nonfinite_samples = 0  # received, but NaN or Inf: recorded as "nonfinite" gaps
        self.windows = 0
        self.detection_count = 0
        self.gap_count = 0
        self._detections: deque[Detection] = deque(maxlen=kept)
        self._gaps: deque[Gap] = deque(maxlen=kept)

    @property
    def detections(self) -> list[Detection]:
        return list(self._detections)

    @property
    def gaps(self) -> list[Gap]:
        return list(self._gaps)

    def add_detection(self, detection: Detection) -> None:
        self.detection_count += 1
        self._detections.append(detection)

    def add_gap(self, gap: Gap) -> None:
        self.gap_count += 1
        self._gaps.append(gap)
