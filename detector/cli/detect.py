"""``whaled detect``, ``events`` and ``presence``: their flags, and their edges.

Each parses its flags, checks its arguments, runs the work (:mod:`detector.archive.run`,
:mod:`detector.archive.rethreshold`, :mod:`detector.season.presence`) and turns the result
into an exit status and a few lines on stderr. A known fault (any
:class:`~detector.core.errors.WhaledError`) or an I/O error at start is one ``whaled: error:``
line and exit status 2.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from detector.cli.model import HopOption, OffThresholdOption, OnThresholdOption
from detector.cli.shared import parse_channels, setup_logging
from detector.core.config import Settings
from detector.core.errors import EXIT_BAD_INPUT, WhaledError, fail, print_error
from detector.core.progress import counted

if TYPE_CHECKING:
    from detector.archive.run import DetectSummary

log = logging.getLogger("whaled.detect")
SIGNAL_EXIT_BASE = 128  # a run stopped by signal N exits 128 + N (SIGINT: 130), as shells do


def detect(
    paths: Annotated[list[Path], typer.Argument(
        help="Recordings (WAV, FLAC, AIFF; any rate; every channel) and folders of them.")],
    model: Annotated[Path | None, typer.Option(
        help="TorchScript model archive. (default: models/upcall.pt)")] = None,
    config: Annotated[Path | None, typer.Option(
        help="TOML config file (thresholds, hop, ...); flags override it.")] = None,
    out: Annotated[str, typer.Option(
        help="Directory for detections.jsonl and one Raven table per recording; a rerun "
             "over it skips recordings already complete.")] = "detections",
    shard: Annotated[str, typer.Option(
        help="K/N: only the recordings of shard K (0-based) of N, e.g. "
             "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.")] = "0/1",
    dask: Annotated[str | None, typer.Option(
        help="Fan recordings out over a Dask scheduler at this address, or 'local' for a "
             "LocalCluster (needs the dask extra).")] = None,
    channels: Annotated[str | None, typer.Option(
        help="Comma-separated 1-based channels, each detected separately. (default: all)")]
    = None,
    origin: Annotated[str | None, typer.Option(
        help="Start of the one recording given, ISO 8601 (an offset is applied).")] = None,
    timestamp_pattern: Annotated[str | None, typer.Option(
        help="strptime pattern of the start in file names (%Y %y %m %d %j %H %M %S %f %z), "
             "e.g. %Y%m%d_%H%M%S; with a / it is matched against the whole path. (default: "
             "YYYYMMDD_HHMMSS, YYYY-MM-DD_HH-MM-SS, SoundTrap NNNN.YYMMDDHHMMSS, ISO 8601)")]
    = None,
    hop: HopOption = None,
    on_threshold: OnThresholdOption = None,
    off_threshold: OffThresholdOption = None,
    torch_device: Annotated[str | None, typer.Option(
        help="auto, cpu, cuda, cuda:N. (default: auto)")] = None,
    threads: Annotated[int | None, typer.Option(
        help="Torch CPU threads. (default: torch's, one per core)")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress line on stderr.")] = True,
    save_scores: Annotated[bool, typer.Option(
        help="Keep every window's scores in OUT/scores/ (one .npz per recording), so "
             "'whaled events' redoes detections at another threshold without rescanning.")]
    = False,
    evidence: Annotated[int, typer.Option(
        help="Evidence clips (WAV, spectrogram, JSON) in OUT/evidence/ for the N "
             "highest-scoring detections of each recording and N more drawn at random from "
             "the rest, for whaled review and whaled train.")] = 0,
    figure: Annotated[bool, typer.Option(
        help="Redraw OUT/presence_daily.png at the end (about a second, matplotlib's); "
             "--no-figure leaves it to 'whaled presence OUT', e.g. for shards or one file "
             "at a time.")] = True,
) -> None:
    """Scan recordings and archives offline with the listen pipeline; resumable."""
    from detector.core import config as config_module
    from detector.stream.blocks import SCAN_BLOCK_SECONDS

    overrides: dict[str, Any] = {
        "model": str(model) if model else None, "channels": parse_channels(channels),
        "hop_seconds": hop, "on_threshold": on_threshold, "off_threshold": off_threshold,
        "torch_device": torch_device, "torch_threads": threads, "speed": 0.0,
        "origin_utc": origin, "timestamp_pattern": timestamp_pattern,
        "block_seconds": SCAN_BLOCK_SECONDS, "evidence": False, "metrics_port": 0}
    try:
        settings = config_module.load(config, overrides)
    except config_module.ConfigError as error:
        fail(error)
    setup_logging(settings.log_level)
    raise typer.Exit(run_detect_command(paths, settings, Path(out), shard, dask, progress,
                                        save_scores, evidence, figure))


def events(
    scores: Annotated[list[Path], typer.Argument(
        help="Scores files (*.scores.npz from detect --save-scores) and folders of them, "
             "e.g. OUT/scores.")],
    on_threshold: Annotated[float | None, typer.Option(
        help="Score that opens a detection (required).")] = None,
    off_threshold: Annotated[float | None, typer.Option(
        help="Score below which a detection closes. (default: the model's, at most the "
             "on-threshold, as detect)")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Directory for the redone detections, written as detect writes them "
             "(required).")] = None,
) -> None:
    """Redo detections from saved scores at another threshold, without rescanning."""
    setup_logging("INFO")
    raise typer.Exit(run_events_command(scores, on_threshold, off_threshold, out))


def presence(
    out_dir: Annotated[Path, typer.Argument(
        help="A detect output folder, or one holding shards' detections.jsonl merged.")],
    target_precision: Annotated[float | None, typer.Option(
        help="Precision the threshold guidance aims for. (default: 0.9)")] = None,
) -> None:
    """Rewrite detections.csv, the presence tables (validated ones too), the figure and the
    season's Raven table with the verdicts so far; print the threshold guidance."""
    setup_logging("INFO")
    raise typer.Exit(run_presence_command(out_dir, target_precision))


def run_detect_command(paths: list[Path], settings: Settings, out_dir: Path, shard_text: str,
                       dask_address: str | None, show_progress: bool,
                       save_scores: bool = False, evidence: int = 0, figure: bool = True) -> int:
    """``whaled detect``: 0 when every recording was scanned, 1 when any failed, 2 at start.
    ``figure``: redraw the presence chart at the end (the tables are always written)."""
    import torch

    from detector.archive.executors import dask_executor, open_dask
    from detector.archive.outputs import DetectError
    from detector.archive.plan import parse_shard, plan
    from detector.archive.run import detect
    from detector.core.progress import Progress
    from detector.model.artifact import check_model
    from detector.outputs.sinks import unwritable

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    try:
        if evidence < 0:
            raise DetectError(f"--evidence {evidence}: give 0 or more clips per recording")
        shard = parse_shard(shard_text)
        planned = plan(paths, settings, shard)
        problem = unwritable(out_dir)
        if problem:
            raise DetectError(f"output directory {out_dir} is not writable: {problem}")
        loaded = check_model(settings)
    except (WhaledError, OSError) as error:
        return error_line(error)
    client = None
    executor = None
    if dask_address:
        try:
            client = open_dask(dask_address)
        except ImportError:
            print_error("--dask needs the dask extra (pip install 'whaled[dask]')")
            return EXIT_BAD_INPUT
        if dask_address == "local" and not settings.torch_threads:
            settings = replace(settings, torch_threads=1)  # one process per core already
        executor = dask_executor(client, loaded.path, settings, save_scores)
    progress = Progress(0.0, enabled=show_progress)
    stop, signals, previous = stop_on_signals()
    log.info("detect model=%s model_hash=%s torch_device=%s threads=%d hop_s=%.3f shard=%d/%d "
             "out=%s", loaded.path, loaded.content_hash, loaded.device, torch.get_num_threads(),
             settings.hop_seconds, *shard, out_dir)
    try:
        summary = detect(planned, loaded, settings, out_dir, shard, executor, progress,
                         save_scores, evidence, stop, figure)
    except WhaledError as error:
        return error_line(error)
    finally:
        if client is not None:
            client.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for line in summary_lines(summary):
        print(line, file=sys.stderr)
    if summary.interrupted:
        name = signals[0] if signals else signal.SIGINT.name
        print(interrupted_line(summary, name), file=sys.stderr)
        return SIGNAL_EXIT_BASE + signal.Signals[name].value
    return 1 if summary.failed or summary.unwritten[0] else 0


def stop_on_signals() -> tuple[threading.Event, list[str], dict[signal.Signals, Any]]:
    """SIGINT and SIGTERM set a flag: the recording in progress is dropped and the ones done
    are summarised (a second signal ends the process at once). The flag, the signals' names
    and the handlers they replace."""
    stop = threading.Event()
    names: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(SIGNAL_EXIT_BASE + signum)
        names.append(signal.Signals(signum).name)
        log.warning("signal %s: stopping after the recordings done so far (again: at once)",
                    names[-1])
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}  # nohup, a background job: kept
    return stop, names, previous


def interrupted_line(summary: DetectSummary, signal_name: str) -> str:
    done = summary.skipped + summary.completed
    return (f"detect: interrupted by {signal_name}: {done} of "
            f"{counted(summary.recordings, 'recording')} complete ({summary.completed} in this "
            "run), their detections.csv and presence tables written; run the same command "
            f"again to resume with the other {summary.recordings - done}")


def summary_lines(summary: DetectSummary) -> list[str]:
    from detector.archive.plan import undecodable_line
    from detector.season.presence import totals_lines

    rtf = summary.audio_seconds / summary.wall_seconds if summary.wall_seconds else 0.0
    scanned = summary.recordings - summary.skipped
    lines = [f"detect: {counted(summary.recordings, 'recording')} ({summary.skipped} already "
             f"complete), {scanned} scanned, {summary.audio_seconds / 3600:.3f} h of audio in "
             f"{summary.wall_seconds:.1f} s ({rtf:.0f}x real time), "
             f"{counted(summary.detections, 'detection')}, {len(summary.failed)} failed"]
    lines += totals_lines(summary.totals, scanned)
    if summary.undecodable:
        lines.append(undecodable_line(summary.undecodable))
    if summary.evidence_clips:
        lines.append(f"evidence: {counted(summary.evidence_clips, 'clip')} written")
    if summary.unstamped:
        lines.append(f"warning: {counted(len(summary.unstamped), 'recording')} without a "
                     "start time in the name: detections carry seconds from the file's start "
                     "and no UTC (give --timestamp-pattern, or --origin for one recording)")
    lines += [f"failed: {path}: {why}" for path, why in summary.failed]
    results, missing = summary.unwritten
    if results:
        lines.append(f"whaled: error: the results of {counted(results, 'recording')} "
                     f"({counted(missing, 'line')}) were never "
                     f"written to the output ({summary.write_error}); they were not marked "
                     "complete, so a rerun scans them again")
    return lines


def run_events_command(paths: list[Path], on: float | None, off: float | None,
                       out_dir: Path | None) -> int:
    """``whaled events``: 0 when written; 2 with one line when nothing could start."""
    from detector.archive.rethreshold import rethreshold
    from detector.archive.saved_scores import ScoresError, find_scores

    try:
        if out_dir is None:
            raise ScoresError("--out is required: the folder for the redone detections")
        if on is None:
            raise ScoresError("--on-threshold is required: the score that opens a detection")
        if not 0.0 <= on <= 1.0:
            raise ScoresError(f"--on-threshold {on:g} is not between 0 and 1")
        if off is not None and not 0.0 <= off <= on:
            raise ScoresError(f"--off-threshold {off:g} is not between 0 and --on-threshold "
                              f"{on:g}")
        summary = rethreshold(find_scores(paths), on, off, out_dir)
    except (WhaledError, OSError) as error:
        return error_line(error)
    print(f"events: {counted(summary.recordings, 'recording')}, "
          f"{summary.audio_seconds / 3600:.3f} h of audio, "
          f"{counted(summary.detections, 'detection')} at on-threshold {on:g} "
          f"({summary.detections_before} at the scans' own thresholds), written to {out_dir}",
          file=sys.stderr)
    return 0


def run_presence_command(out_dir: Path, target_precision: float | None = None) -> int:
    """``whaled presence OUT``: the season's tables with the verdicts so far, and the threshold
    guidance; 0 when written, 2 with one line when there is nothing to read."""
    from detector.outputs.sinks import JSONL_NAME
    from detector.season.presence import SECONDS_PER_HOUR
    from detector.season.raven_sequence import SEASON_TABLE_NAME
    from detector.season.tables import write_season
    from detector.season.threshold_guidance import DEFAULT_TARGET_PRECISION, guidance_lines

    if target_precision is None:
        target_precision = DEFAULT_TARGET_PRECISION

    if not 0.0 < target_precision <= 1.0:
        print_error(f"--target-precision {target_precision:g} is not above 0 and at most 1")
        return EXIT_BAD_INPUT
    if not (out_dir / JSONL_NAME).is_file():
        print_error(f"{out_dir / JSONL_NAME} not found: give a whaled detect output folder")
        return EXIT_BAD_INPUT
    try:
        season = write_season(out_dir, target_precision)
    except OSError as error:
        print_error(f"cannot write the tables in {out_dir}: {error}")
        return EXIT_BAD_INPUT
    t = season.totals
    print(f"presence: {counted(t.recordings, 'recording')} ({t.complete} complete, {t.failed} "
          f"failed, {t.unstamped} without a start time), "
          f"{t.audio_seconds / SECONDS_PER_HOUR:.3f} h of audio, "
          f"{counted(t.detections, 'detection')}, {verdict_text(season.verdicts)}; tables, "
          f"figure and {SEASON_TABLE_NAME} written in {out_dir}", file=sys.stderr)
    if season.guidance is None:
        print("threshold guidance: no random sample drawn (whaled detect --evidence N, then "
              "review the sample with whaled review)", file=sys.stderr)
    else:
        for line in guidance_lines(season.guidance):
            print(line, file=sys.stderr)
    return 0


def verdict_text(verdicts: dict[str, int]) -> str:
    """``3 reviewed (2 upcall, 1 not-upcall, 0 unsure)``."""
    reviewed = sum(n for v, n in verdicts.items() if v != "unreviewed")
    return (f"{reviewed} reviewed (" + ", ".join(f"{n} {v}" for v, n in verdicts.items()
                                                  if v != "unreviewed") + ")")


def error_line(error: Exception) -> int:
    """One ``whaled: error:`` line for a fault found before any work; its exit status."""
    print_error(error)
    return EXIT_BAD_INPUT
