"""``whaled evaluate``: long recordings through the detect path and labelled clips through
the model, reported per recording, per day and pooled (:mod:`detector.evaluate.report`).
Registered by :mod:`detector.cli.main`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from detector.cli.model import (
    HopOption,
    OffThresholdOption,
    OnThresholdOption,
    check_writable,
    report_reviewed,
)
from detector.core.config import Settings
from detector.core.errors import WhaledError, fail
from detector.core.progress import Progress

TRAINED_ON_LINES_SHOWN = 20  # a clip folder can overlap by thousands: the rest are counted

if TYPE_CHECKING:
    from detector.annotations.reviewed_match import ReviewedMatch
    from detector.evaluate.recordings import Evaluation
    from detector.model.artifact import LoadedModel

def evaluate(
    model: Annotated[Path, typer.Argument(help="Model archive to evaluate.")],
    paths: Annotated[list[Path], typer.Argument(
        help="Long recordings (X.wav with its Raven table X*.selections.txt beside it; a "
             "recording without one counts every detection as a false alarm) and folders of "
             "them; or folders of labelled clips in any layout `train` reads.")],
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead of the text report.")] = False,
    plots: Annotated[Path | None, typer.Option(
        help="Directory for ROC, PR and recall-versus-false-alarms PNGs.")] = None,
    review_dir: Annotated[Path | None, typer.Option(
        help="Directory for the missed calls and false alarms: mistakes.csv, mistakes.json "
             "and a spectrogram PNG each.")] = None,
    reviewed: Annotated[list[Path] | None, typer.Option(
        help="Directory of reviewed labels (X.reviewed.selections.txt, searched below it; "
             "a table in a subfolder, as `whaled review` writes OUT_DIR/review/north/X..., "
             "goes to the recording in a folder of that name), read with the tables beside "
             "each recording; repeatable.")] = None,
    from_seconds: Annotated[float, typer.Option(
        help="Long recordings: evaluate only from this time on (a held-out span).")] = 0.0,
    hop: HopOption = None,
    on_threshold: OnThresholdOption = None,
    off_threshold: OffThresholdOption = None,
    positive: Annotated[str, typer.Option(
        help="Positive label: folder name or Raven annotation.")] = "upcall",
    timestamp_pattern: Annotated[str | None, typer.Option(
        help="strptime pattern of the start in file names, as for detect: it dates each "
             "recording, so the per-day figures. (default: the built-in stamps)")] = None,
    torch_device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "cpu",
    threads: Annotated[int, typer.Option(
        help="Torch CPU threads. (default: torch's own)")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress line on stderr.")] = True,
) -> None:
    """Event recall and false alarms per hour per recording, per day and pooled (matched
    one-to-one), recall at fixed false-alarm rates, and clip ROC AUC."""
    from detector.annotations import layouts
    from detector.core import config as config_module
    from detector.evaluate import measures as evaluation
    from detector.evaluate import recordings as receval
    from detector.evaluate import report
    from detector.model.artifact import load_model, pick_torch_device
    from detector.train.examples import GUARD_SECONDS

    try:
        settings = config_module.load(None, {
            "hop_seconds": hop, "on_threshold": on_threshold, "off_threshold": off_threshold,
            "torch_device": torch_device, "torch_threads": threads,
            "timestamp_pattern": timestamp_pattern})
    except WhaledError as error:
        fail(str(error))
    if threads:
        import torch

        torch.set_num_threads(threads)
    check_writable("--plots", plots)
    check_writable("--review-dir", review_dir)
    clip_dirs: list[tuple[Path, layouts.Layout]] = []
    recording_paths: list[Path] = []
    try:
        loaded = load_model(model, pick_torch_device(torch_device))
        for path in paths:
            layout = layouts.detect_layout(path) if path.is_dir() else layouts.Layout.RAVEN
            if layout is layouts.Layout.RAVEN:
                recording_paths.append(path)
            else:
                clip_dirs.append((path, layout))
        recordings = receval.collect_recordings(recording_paths)
        matched = receval.match_reviewed(recordings, reviewed or [])
    except WhaledError as error:
        fail(str(error))
    report_reviewed(matched)
    doc: dict[str, Any] = {"model": str(model), "paths": [str(p) for p in paths]}
    heard = trained_on_warnings(loaded, recordings, clip_dirs, positive, from_seconds)
    if heard:
        doc["not_out_of_sample"] = heard
    scores, labels = [np.zeros(0)], [np.zeros(0, np.int64)]
    for data_dir, layout in clip_dirs:
        try:
            s, y, skipped = report.score_clips(loaded, data_dir, layout, positive)
        except WhaledError as error:
            fail(str(error))
        scores.append(s)
        labels.append(y)
        doc.setdefault("skipped", []).extend(skipped)
    lines: list[str] = []
    curve: list[evaluation.EventReport] = []
    if recordings:
        result = evaluate_with_progress(loaded, recordings, settings, matched, positive,
                                        from_seconds, progress)
        for rec in result.recordings:
            s, y = evaluation.clip_windows(rec.scores, GUARD_SECONDS)
            scores.append(s)
            labels.append(y)
        doc.update(report.recordings_doc(result, from_seconds))
        lines += report.recordings_lines(result)
        curve = list(receval.summarise("all", result.recordings,
                                       result.thresholds.on).curve)
        if review_dir is not None:
            from detector.evaluate.mistakes import write_review

            mistakes = write_review(result.recordings, result.hop_seconds, review_dir)
            doc["review_dir"] = {"path": str(review_dir), "missed": sum(
                m.kind == "missed" for m in mistakes), "false_alarms": sum(
                m.kind == "false_alarm" for m in mistakes)}
            lines.append(f"wrote {len(mistakes)} missed calls and false alarms to "
                         f"{review_dir / 'mistakes.csv'} with a spectrogram each")
    all_scores, all_labels = np.concatenate(scores), np.concatenate(labels)
    threshold = (settings.on_threshold if settings.on_threshold >= 0
                 else loaded.metadata.thresholds.on)
    if len(set(all_labels.tolist())) == 2:
        clips = evaluation.clip_report(all_scores, all_labels, threshold)
        doc["clips"] = {k: v for k, v in asdict(clips).items() if k != "classes"}
        doc["clips"]["classes"] = [asdict(c) for c in clips.classes]
        lines = [report.format_clip_report(clips), *lines]
    elif not recordings:
        fail(f"{', '.join(map(str, paths))}: evaluation needs both positive and negative "
             "examples")
    if plots is not None and len(set(all_labels.tolist())) == 2:
        from detector.figures.curves import write_plots

        doc["plots"] = [str(p) for p in write_plots(all_scores, all_labels, curve, plots,
                                                    threshold)]
        lines.append("wrote " + ", ".join(doc["plots"]))
    typer.echo(json.dumps(doc, indent=2) if json_output else "\n".join(lines))


def trained_on_warnings(loaded: LoadedModel, recordings: list[Path],
                        clip_dirs: list[tuple[Path, Any]], positive: str,
                        from_seconds: float) -> list[str]:
    """A stderr warning for each recording or clip scored that the model trained on."""
    from detector.annotations import layouts
    from detector.annotations.provenance import overlap_warnings

    extra = loaded.metadata.extra
    lines = overlap_warnings(extra, recordings, from_seconds)
    for data_dir, layout in clip_dirs:
        try:
            clips = [path for path, _ in layouts.labelled_clips(data_dir, layout, positive)]
        except WhaledError:
            continue  # scoring the clips says what is wrong with the folder
        lines += overlap_warnings(extra, clips)
    shown = lines[:TRAINED_ON_LINES_SHOWN]
    for line in shown:
        typer.echo(f"whaled: warning: {line}", err=True)
    if len(lines) > len(shown):
        typer.echo(f"whaled: warning: {len(lines) - len(shown)} more scored files were in "
                   "the model's training data (all in --json)", err=True)
    return lines


def evaluate_with_progress(loaded: LoadedModel, recordings: list[Path], settings: Settings,
                           reviewed: ReviewedMatch, positive: str, from_seconds: float,
                           show: bool) -> Evaluation:
    import soundfile

    from detector.evaluate import recordings as receval
    total = 0.0
    for path in recordings:
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
            fail(f"{path}: unreadable ({str(error).strip().splitlines()[0]})")
        try:
            channels = len(receval.scored_channels(path, positive))  # each scored once
        except WhaledError as error:
            fail(str(error))
        total += channels * info.frames / info.samplerate
    bar = EvaluateProgress(total, enabled=show)
    done: dict[str, float] = {}

    def on_progress(name: str, seconds: float) -> None:
        if name not in done:
            if done:
                bar.end_file(list(done.values())[-1])
            bar.start_file(name)
        done[name] = seconds
        bar.within_file(seconds)

    try:
        result = receval.evaluate_recordings(loaded, recordings, settings, reviewed,
                                             positive=positive, from_seconds=from_seconds,
                                             on_progress=on_progress)
    except WhaledError as error:
        fail(str(error))
    if done:
        bar.end_file(list(done.values())[-1])
    bar.close()
    return result


class EvaluateProgress(Progress):
    def line(self) -> str:
        return "evaluate" + super().line().removeprefix("detect")
