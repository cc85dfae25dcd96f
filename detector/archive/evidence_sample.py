"""``whaled detect --evidence N``: clips of the top N detections per recording, and a sample.

For each recording scanned, its N highest-scoring detections and N more drawn at random from
the rest (seeded by the recording's path, so a rerun draws the same ones) become evidence clips
in ``OUT/evidence/<label>/``, written by the same
:class:`~detector.outputs.evidence.EvidenceRecorder`
as ``listen`` (WAV at the file's rate with the padding, spectrogram PNG, ``.json``), so
``whaled review`` plays them and ``whaled train`` reads them. The random sample is what
estimates precision below the top: the top N alone are the easy calls. Audio is read back from
the recording, so a Dask run needs nothing more from its workers. Recordings with no known
start get no clips (a clip is named and matched by its UTC).

Each draw is also appended to ``OUT/evidence_sample.jsonl`` (one line per recording and run,
the latest counting): the detections taken as the top and as the random part, so the
threshold guidance (:mod:`detector.season.threshold_guidance`) can weigh the reviewed ones.
"""

from __future__ import annotations

import json
import logging
import sys
import zlib
from pathlib import Path

import numpy as np
import soundfile
from prometheus_client import CollectorRegistry

from detector.archive.outputs import RecordingResult
from detector.core.config import Settings
from detector.outputs.evidence import EvidenceRecorder
from detector.outputs.metrics import Metrics
from detector.sources.formats import native_stderr_guard
from detector.stream.blocks import StreamInfo
from detector.stream.events import Detection

log = logging.getLogger("whaled.detect")
EVIDENCE_DIR = "evidence"
SAMPLE_SEED = 2013  # with the recording's path: the same sample on every rerun
SAMPLE_NAME = "evidence_sample.jsonl"  # in OUT: which detections each recording's draw took


def draw(detections: list[Detection], n: int, key: str) -> tuple[list[Detection],
                                                                 list[Detection]]:
    """The ``n`` best by peak score (earlier first on a tie), and ``n`` of the rest at random."""
    ranked = sorted(detections, key=lambda d: (-d.peak_score, d.start_seconds, d.channel))
    top, rest = ranked[:n], ranked[n:]
    rng = np.random.default_rng([SAMPLE_SEED, zlib.crc32(key.encode())])
    picked = rng.choice(len(rest), size=min(n, len(rest)), replace=False).tolist() \
        if rest else []
    return top, [rest[int(i)] for i in picked]


def sample_line(result: RecordingResult, n: int, top: list[Detection],
                random: list[Detection]) -> str:
    """One line of ``evidence_sample.jsonl``: which detections of the recording's result were
    drawn, as (channel, start, end seconds) rounded as ``detections.jsonl`` has them."""
    def spans(chosen: list[Detection]) -> list[list[float]]:
        return [[d.channel, round(d.start_seconds, 3), round(d.end_seconds, 3)]
                for d in sorted(chosen, key=lambda d: (d.start_seconds, d.channel))]

    models = sorted({d.model_hash for d in result.detections})
    return json.dumps({"recording": result.key, "path": str(Path(result.path).resolve()),
                       "model": models[0] if len(models) == 1 else "", "per_recording": n,
                       "detections": len(result.detections), "top": spans(top),
                       "random": spans(random)}, separators=(",", ":")) + "\n"


def save_evidence(result: RecordingResult, out_dir: Path, n: int, settings: Settings,
                  labels: tuple[str, ...]) -> int:
    """Clips for ``result``'s chosen detections; how many were written."""
    if n <= 0 or result.origin_utc is None or result.origin_from == "none":
        return 0
    top, random = draw(result.detections, n, result.key or result.path)
    if not top:
        return 0
    with (out_dir / SAMPLE_NAME).open("a") as handle:  # the draw, whatever becomes of clips
        handle.write(sample_line(result, n, top, random))
    chosen = sorted(top + random, key=lambda d: (d.start_seconds, d.channel))
    rate = soundfile.info(result.path).samplerate
    info = StreamInfo(rate, result.channels, result.origin_utc, result.origin_from,
                      result.source)
    registry = CollectorRegistry()
    metrics = Metrics(registry, result.channels, labels)
    recorder = EvidenceRecorder(
        out_dir / EVIDENCE_DIR, info, metrics,
        padding_seconds=settings.evidence_padding_seconds,
        max_event_seconds=settings.max_duration_seconds, delay_seconds=0.0,
        max_bytes=sys.maxsize, max_age_days=0.0)  # an archive's clips are kept, all of them
    columns = [channel - 1 for channel in result.channels]
    try:
        for d in chosen:
            first = max(0, round((d.start_seconds - settings.evidence_padding_seconds) * rate))
            end = round((d.end_seconds + settings.evidence_padding_seconds) * rate)
            with native_stderr_guard(Path(result.path)):
                audio = soundfile.read(result.path, frames=end - first, start=first,
                                       dtype="float32", always_2d=True)[0]
            recorder.push(first, np.ascontiguousarray(audio[:, columns]))
            recorder.write(d)
            recorder.flush()  # at the file's end the clip is what there is
    finally:
        recorder.close()
    return int(registry.get_sample_value("whaled_evidence_clips_total") or 0)
