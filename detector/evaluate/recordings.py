"""Annotated long recordings through the ``whaled detect`` path, scored once each.

Each recording goes through the same :class:`~detector.stream.pipeline.Pipeline` (file source at
speed
0, the project's :class:`~detector.model.scoring.Scorer`, so ``score_span`` shares the trunk where
the model has one) as ``whaled detect``; a score tap keeps every window's score. One pass gives
both the detections at the operating thresholds (exactly ``detect``'s) and the window scores
that the event tracker replays at every threshold of :data:`EVENT_GRID` for the curve.

Annotations are the expert Raven tables beside each recording with the reviewed labels
(:mod:`detector.annotations.reviewed`) applied. Each channel the tables annotate (their ``Channel``
column;
channel 1 for a table without it, or a recording without a table) is scored as its own
recording, on that channel, with that channel's annotations and verdicts. Recordings are
grouped by day: the UTC date of the start in the file name (``--timestamp-pattern`` when
given, else ``..._20090328_000000.wav`` and the other built-in stamps), else the folder's
name. :func:`summarise` pools any group.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from detector.annotations.reviewed import Annotations
from detector.annotations.reviewed_match import ReviewedMatch
from detector.core.config import Settings
from detector.core.errors import WhaledError
from detector.core.intervals import Interval
from detector.evaluate import measures as evaluation
from detector.evaluate.measures import (
    ClipReport,
    EventReport,
    OperatingPoint,
    RecordingScores,
)
from detector.model.artifact import LoadedModel, ModelMetadata
from detector.stream.blocks import SCAN_BLOCK_SECONDS, frames_per_block
from detector.stream.events import Detection, Thresholds
from detector.stream.pipeline import offline_pipeline
from detector.train.examples import GUARD_SECONDS

EVENT_GRID = tuple(float(t) for t in np.unique(np.round(np.r_[
    np.arange(0.01, 1.0, 0.01), 0.995, 0.999, 0.9995, 0.9999], 4)))  # on-thresholds of curves


class EvaluationError(WhaledError):
    """A recording or table that cannot be evaluated; the message is one line."""


@dataclass(frozen=True)
class RecordingEvaluation:
    path: Path
    day: str  # YYYY-MM-DD from the file name (--timestamp-pattern), else the folder's name
    origin_utc: datetime | None  # of the file's first sample; None: no stamp in its name
    scores: RecordingScores  # every window of the recording; calls and span after review
    detections: tuple[Detection, ...]  # the pipeline's at the operating thresholds
    operating: EventReport  # those detections inside the span, matched one-to-one
    curve: tuple[EventReport, ...]  # at each threshold of the evaluation's grid
    reviewed: int  # reviewed verdicts applied
    audio_seconds: float
    wall_seconds: float
    channel: int = 1  # 1-based: the channel scored and annotated

    @property
    def name(self) -> str:
        """The file's name, and its channel when that is not the first."""
        return channel_name(self.path, self.channel)


def channel_name(path: Path, channel: int) -> str:
    """``X.wav``, or ``X.wav ch2`` for a channel other than the first."""
    return path.name if channel == 1 else f"{path.name} ch{channel}"


@dataclass(frozen=True)
class Evaluation:
    thresholds: Thresholds  # the operating point (the model's, or --on/--off-threshold)
    hop_seconds: float
    grid: tuple[float, ...]  # on-thresholds of every curve
    recordings: tuple[RecordingEvaluation, ...]

    def by_day(self) -> dict[str, list[RecordingEvaluation]]:
        days: dict[str, list[RecordingEvaluation]] = {}
        for rec in self.recordings:
            days.setdefault(rec.day, []).append(rec)
        return dict(sorted(days.items()))


@dataclass(frozen=True)
class Summary:
    """Figures pooled over a group of recordings (one, a day, or all)."""

    name: str
    recordings: int
    clips: ClipReport | None  # None: the group has no positive or no negative windows
    events: EventReport  # at the operating thresholds
    curve: tuple[EventReport, ...]
    points: tuple[OperatingPoint, ...]  # best recall under each false-alarm limit

    def as_dict(self) -> dict[str, object]:
        clips = None if self.clips is None else {
            "roc_auc": self.clips.roc_auc, "average_precision": self.clips.average_precision,
            "n_pos": self.clips.n_pos, "n_neg": self.clips.n_neg}
        return {"name": self.name, "recordings": self.recordings, "clips": clips,
                "events": self.events.as_dict(),
                "operating_points": [p.as_dict() for p in self.points]}


def summarise(name: str, recs: Sequence[RecordingEvaluation], threshold: float) -> Summary:
    windows = [evaluation.clip_windows(r.scores, GUARD_SECONDS) for r in recs]
    scores = np.concatenate([s for s, _ in windows]) if windows else np.zeros(0)
    labels = np.concatenate([y for _, y in windows]) if windows else np.zeros(0, np.int64)
    clips = (evaluation.clip_report(scores, labels, threshold)
             if len(set(labels.tolist())) == 2 else None)
    curve = tuple(evaluation.combine(list(points))
                  for points in zip(*(r.curve for r in recs), strict=True))
    return Summary(name, len(recs), clips, evaluation.combine([r.operating for r in recs]),
                   curve, tuple(evaluation.operating_points(curve)))


def day_of(path: Path, pattern: str = "") -> str:
    """The UTC day of the recording's start: ``pattern`` (``--timestamp-pattern``) when given,
    else the built-in name stamps; the folder's name when neither finds one."""
    from detector.core.stamps import recording_origin

    stamp = recording_origin(Path(path), pattern)
    return f"{stamp:%Y-%m-%d}" if stamp else Path(path).resolve().parent.name


def collect_recordings(paths: Sequence[Path]) -> list[Path]:
    """Recordings named, and those with a Raven table beside them in the folders named."""
    from detector.annotations import layouts

    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            try:
                found += [audio for audio, _ in layouts.recordings_with_tables(path)]
            except layouts.DatasetError as error:
                raise EvaluationError(str(error)) from None
        elif path.is_file():
            found.append(path)
        else:
            raise EvaluationError(f"not found: {path}")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Path(p) for p in unique]


def scored_channels(recording: Path, positive: str) -> tuple[int, ...]:
    """The channels of ``recording`` that its expert tables annotate; (1,) for none."""
    from detector.annotations import layouts

    try:
        return layouts.annotated_channels(layouts.expert_tables(recording), positive)
    except (WhaledError, OSError) as error:
        raise EvaluationError(str(error)) from None


def reviewed_annotations(recording: Path, positive: str, reviewed: ReviewedMatch,
                         channel: int = 1) -> Annotations:
    """``channel``'s expert annotations with its reviewed verdicts applied."""
    from detector.annotations import layouts
    from detector.annotations import reviewed as labels

    calls: list[Interval] = []
    others: list[Interval] = []
    try:
        for table in layouts.expert_tables(recording):
            c, o = layouts.read_selections(table, positive, channel)
            calls, others = calls + c, others + o
        verdicts = reviewed.verdicts_for(recording)
    except (WhaledError, OSError) as error:
        raise EvaluationError(str(error)) from None
    return labels.apply_reviewed(calls, others, verdicts, channel)


def match_reviewed(recordings: Sequence[Path], reviewed: Sequence[Path] | ReviewedMatch
                   ) -> ReviewedMatch:
    """The reviewed tables of ``recordings`` (a match already made is kept)."""
    from detector.annotations import reviewed_match

    if isinstance(reviewed, ReviewedMatch):
        return reviewed
    try:
        return reviewed_match.match_reviewed([Path(p) for p in recordings], reviewed)
    except WhaledError as error:
        raise EvaluationError(str(error)) from None


def loaded_from_network(network: Any, metadata: ModelMetadata, device: str = "cpu"
                        ) -> LoadedModel:
    """A trained network as :func:`~detector.model.artifact.load_model` would give it from its
    archive (scripted, in eval mode), without writing one: for scoring fold models."""
    import torch

    was_training = network.training
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        scripted = torch.jit.script(network.cpu().eval())
    network.train(was_training)
    torch_device = torch.device(device)
    return LoadedModel(scripted.to(torch_device).eval(), metadata, Path("<in memory>"),
                       "in-memory", torch_device)


def evaluate_recordings(loaded: LoadedModel, recordings: Sequence[Path], settings: Settings,
                        reviewed: Sequence[Path] | ReviewedMatch = (), *,
                        positive: str = "upcall",
                        from_seconds: float = 0.0, grid: Sequence[float] = EVENT_GRID,
                        on_progress: Callable[[str, float], None] | None = None
                        ) -> Evaluation:
    """Every recording (each channel its tables annotate) through the detect path once:
    window scores, the detections at the operating thresholds (``settings``' on/off, else
    the model's), and event curves over ``grid``, all matched one-to-one on the span from
    ``from_seconds`` to the end.
    ``on_progress(name, audio_seconds_done)`` is called while a recording is scored.
    ``reviewed``: reviewed-label dirs, or their match to ``recordings`` already made."""
    from detector.stream.detector_stage import thresholds_for

    settings = replace(settings, speed=0.0, evidence=False, metrics_port=0, channels=(1,),
                       block_seconds=SCAN_BLOCK_SECONDS)
    thresholds = thresholds_for(settings, loaded)
    match = match_reviewed(recordings, reviewed)
    results = [evaluate_one(loaded, Path(path), replace(settings, channels=(channel,)),
                            thresholds, match, positive, from_seconds, tuple(grid), on_progress)
               for path in recordings for channel in scored_channels(Path(path), positive)]
    return Evaluation(thresholds, settings.hop_seconds, tuple(grid), tuple(results))


def evaluate_one(loaded: LoadedModel, path: Path, settings: Settings, thresholds: Thresholds,
                 reviewed: ReviewedMatch, positive: str, from_seconds: float,
                 grid: tuple[float, ...],
                 on_progress: Callable[[str, float], None] | None) -> RecordingEvaluation:
    channel = settings.channels[0]
    name = channel_name(path, channel)
    marks = reviewed_annotations(path, positive, reviewed, channel)
    started = time.perf_counter()
    centres, scores, detections, origin, audio_seconds = run_pipeline(
        loaded, path, settings, on_progress)
    if on_progress is not None:
        on_progress(name, audio_seconds)
    window_seconds = loaded.metadata.window_seconds
    if not 0 <= from_seconds < audio_seconds:
        raise EvaluationError(f"{path}: --from-seconds {from_seconds:g} is outside its "
                              f"{audio_seconds:.1f} s")
    span = (from_seconds, audio_seconds)
    rec = RecordingScores(name, centres - window_seconds / 2, scores, window_seconds,
                          tuple(c for c in marks.calls if c[0] >= span[0]), marks.busy, span,
                          marks.unsure)
    reach = evaluation.window_reach_seconds(window_seconds, settings.hop_seconds)
    found = evaluation.in_span([(d.start_seconds, d.end_seconds) for d in detections], span)
    operating = evaluation.match_events(found, rec.calls, rec.hours, thresholds.on, reach,
                                        rec.unsure)
    off_fraction = thresholds.off / thresholds.on if thresholds.on > 0 else 1.0
    curve = evaluation.event_curve(rec, grid, off_fraction, settings.hop_seconds,
                                   settings.merge_gap_seconds, settings.max_duration_seconds,
                                   settings.min_duration_seconds)
    return RecordingEvaluation(path, day_of(path, settings.timestamp_pattern), origin, rec,
                               tuple(detections), operating, tuple(curve), marks.reviewed,
                               audio_seconds, time.perf_counter() - started, channel)


def run_pipeline(loaded: LoadedModel, path: Path, settings: Settings,
                 on_progress: Callable[[str, float], None] | None
                 ) -> tuple[np.ndarray, np.ndarray, list[Detection], datetime | None, float]:
    """(window centres s, scores, detections, origin, audio seconds) of the one channel of
    ``settings.channels``."""
    import soundfile

    from detector.model.artifact import rate_refusal
    from detector.sources.replay import FileSource, SourceError

    try:
        info = soundfile.info(str(path))
        rate, expected = info.samplerate, info.frames
        source = FileSource(path, block_frames=frames_per_block(settings.block_seconds, rate),
                            speed=0.0, channels=settings.channels,
                            timestamp_pattern=settings.timestamp_pattern)
    except (SourceError, RuntimeError, OSError, soundfile.LibsndfileError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise EvaluationError(f"{path}: unreadable ({text})") from None
    refusal = rate_refusal(source.info.rate_hz, loaded)
    if refusal:
        source.close()
        raise EvaluationError(f"{path}: {refusal}")
    centres: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    try:
        pipeline = offline_pipeline(source, loaded, settings, [])

        def keep(window_centres: np.ndarray, window_scores: np.ndarray) -> None:
            centres.append(window_centres.copy())
            scores.append(window_scores[:, 0, 0].copy())

        pipeline.score_taps.append(keep)
        if on_progress is not None:
            name = channel_name(path, settings.channels[0])
            pipeline.hooks.append(lambda status: on_progress(name, status.analysed_seconds))
        summary = pipeline.run(threading.Event())
    except (RuntimeError, OSError, ValueError) as error:
        raise EvaluationError(f"{path}: {type(error).__name__}: {error}") from None
    finally:
        source.close()
    if summary.samples < expected or summary.gaps:
        raise EvaluationError(f"{path}: read error after {summary.samples / rate:.1f} s of "
                              f"{expected / rate:.1f} s")
    return (np.concatenate(centres) if centres else np.zeros(0),
            np.concatenate(scores) if scores else np.zeros(0, np.float32),
            summary.detections,
            None if source.info.origin_from == "none" else source.info.origin_utc,
            summary.samples / rate)
