"""``whaled detect``'s run: every recording of the plan not yet complete, scanned and written.

Outputs in ``--out`` (:mod:`detector.archive.outputs`): one Raven selection table per
recording and ``detections.jsonl`` for all of them, one current result per recording. A rerun
over the same output skips exactly the recordings whose current result says ``complete`` with
the same model, settings and file, and redoes the rest. Unreadable recordings are reported,
recorded as ``failed`` and skipped; the run's exit status says whether any failed.

Which recordings (:mod:`detector.archive.plan`), how each is scanned
(:mod:`detector.archive.scan`) and where (:mod:`detector.archive.executors`: here or on Dask) live
beside it; this module only runs the plan and keeps the outputs in step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from detector.archive.executors import Executor, local_executor
from detector.archive.outputs import (
    SUPERSEDED_NAME,
    ArchiveOutput,
    RecordingResult,
    settings_fingerprint,
)
from detector.archive.plan import Plan, plan
from detector.archive.saved_scores import scores_name, write_scores
from detector.core.config import Settings
from detector.core.progress import Progress
from detector.model.artifact import LoadedModel
from detector.season.presence import Totals
from detector.season.tables import write_season

log = logging.getLogger("whaled.detect")


@dataclass
class DetectSummary:
    recordings: int = 0
    skipped: int = 0  # complete in an earlier run over the same output
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    detections: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    unstamped: list[str] = field(default_factory=list)  # scanned with no known start
    totals: Totals | None = None  # the whole output folder, over every run that wrote it
    undecodable: tuple[str, ...] = ()  # audio files in the folders no decoder here reads
    evidence_clips: int = 0  # written by --evidence
    unwritten: tuple[int, int] = (0, 0)  # (results, JSONL lines) the disk would not take
    write_error: str = ""
    completed: int = 0  # recordings this run marked complete
    interrupted: bool = False  # stopped by a signal: the rest are left for a rerun
    season_seconds: float = 0.0  # of wall_seconds, writing the CSV, presence tables, figure


def detect(inputs: Iterable[Path] | Plan, loaded: LoadedModel, settings: Settings,
           out_dir: Path, shard: tuple[int, int] = (0, 1), executor: Executor | None = None,
           progress: Progress | None = None, save_scores: bool = False,
           evidence: int = 0, stop: threading.Event | None = None,
           figure: bool = True) -> DetectSummary:
    """Scan every recording not already complete in ``out_dir``; write outputs as each ends.
    ``save_scores``: also every window's scores, and a complete recording without them is
    scanned again. ``evidence``: clips of the top N detections per recording and N more
    drawn from the rest. ``stop`` (a signal): the recording in progress is dropped, not
    written; the ones done are, with the CSV and presence tables, and a rerun resumes.
    ``figure``: redraw the presence chart too (matplotlib's import and first draw, ~1 s)."""
    started, started_cpu = time.perf_counter(), time.process_time()
    planned = inputs if isinstance(inputs, Plan) else plan(inputs, settings, shard)
    recordings, missing = list(planned.recordings), planned.missing
    output = ArchiveOutput(out_dir, loaded.content_hash, settings_fingerprint(settings))
    summary = DetectSummary(recordings=len(recordings), failed=list(missing),
                            undecodable=planned.undecodable)
    progress = progress or Progress(0.0, enabled=False)
    try:
        output.check_tables([(r.path, r.key) for r in recordings])
        todo = [r for r in recordings if not output.is_complete(r.path) or (
            save_scores and not (out_dir / scores_name(r.key)).is_file())]
        summary.skipped = len(recordings) - len(todo)
        replaced = sum(output.replaces(r.path) for r in todo)
        if replaced:
            log.warning("%d recordings in %s were scanned before with another model or "
                        "settings, or have changed since: their earlier results are superseded "
                        "(moved to %s when this run ends)", replaced, out_dir, SUPERSEDED_NAME)
        progress.total = sum(r.audio_seconds for r in todo)
        keys = {str(r.path): r.key for r in todo}
        run = executor or local_executor(loaded, settings, progress, save_scores, stop)
        for result in run(todo):
            if stop is not None and stop.is_set() and result.error:
                summary.interrupted = True  # cut short: a rerun scans it again
                break
            result.key = keys.get(result.path, Path(result.path).name)
            if result.scores is not None:  # before the result: "complete" has its scores
                try:
                    write_scores(out_dir / scores_name(result.key), replace(
                        result.scores, recording=result.key, error=result.error,
                        path=str(Path(result.path).resolve())))
                except OSError as error:  # a full disk: not complete, so the next run redoes it
                    result.error = result.error or f"scores not written: {error.strerror}"
            output.write(result)
            summary.evidence_clips += evidence_for(result, out_dir, evidence, settings,
                                                   loaded.metadata.labels)
            summary.audio_seconds += result.audio_seconds
            summary.detections += len(result.detections)
            progress.end_file(result.audio_seconds)
            if result.origin_from == "none":
                log.warning("%s: no start time in its name: its times are seconds from the "
                            "file's start, UTC left empty (give --timestamp-pattern or --origin)",
                            result.path)
                summary.unstamped.append(result.path)
            if result.error:
                log.error("failed %s: %s", result.path, result.error)
                summary.failed.append((result.path, result.error))
            else:
                summary.completed += 1
            if stop is not None and stop.is_set():
                summary.interrupted = True
                break
    finally:
        output.close()
        progress.close()
        summary.unwritten = output.unwritten()
        summary.write_error = output.last_error
    if output.superseded:
        log.info("%d earlier results moved to %s", output.superseded, out_dir / SUPERSEDED_NAME)
    scanned, scanned_cpu = time.perf_counter(), time.process_time()
    try:
        summary.totals = write_season(out_dir, figure=figure).totals
    except OSError as error:
        log.error("could not write the CSV and presence tables in %s: %s", out_dir, error)
    summary.wall_seconds = time.perf_counter() - started
    summary.season_seconds = summary.wall_seconds - (scanned - started)
    log.info("scanned in %.3f s (%.3f CPU s); detections.csv, presence tables%s written in "
             "%.3f s", scanned - started, scanned_cpu - started_cpu,
             " and figure" if figure else "", summary.season_seconds)
    return summary


def evidence_for(result: RecordingResult, out_dir: Path, n: int, settings: Settings,
                 labels: tuple[str, ...]) -> int:
    """``--evidence N`` for one result; a clip that cannot be cut is logged, not fatal."""
    if n <= 0:
        return 0
    import soundfile

    from detector.archive.evidence_sample import save_evidence

    try:
        return save_evidence(result, out_dir, n, settings, labels)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
        log.error("%s: evidence clips not saved: %s", result.path, error)
        return 0
