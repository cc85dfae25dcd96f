"""The edges the model commands share (one error line and exit code 2 for bad input, an
output folder checked before any work, the versions a model card records, the data summary),
and ``whaled inspect``. ``train`` and ``evaluate`` are in :mod:`detector.cli.train` and
:mod:`detector.cli.evaluate`; all are plain functions with typer annotations, registered
by :mod:`detector.cli.main`.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from detector.core.config import Settings
from detector.core.errors import WhaledError, fail

if TYPE_CHECKING:
    from detector.annotations.reviewed_match import ReviewedMatch
    from detector.train.examples import Dataset


# Options that listen, detect and evaluate share: one definition, one help text.
HopOption = Annotated[float | None, typer.Option(
    help=f"Seconds between window starts. (default: {Settings.hop_seconds:g})")]
OnThresholdOption = Annotated[float | None, typer.Option(
    help="Score that opens a detection. (default: the model's)")]
OffThresholdOption = Annotated[float | None, typer.Option(
    help="Score below which an open detection closes. (default: the model's)")]

def check_writable(flag: str, folder: Path | None) -> None:
    """Refuse an output folder that cannot be written before any work, not after it."""
    from detector.outputs.sinks import unwritable

    problem = unwritable(folder) if folder is not None else ""
    if problem:
        fail(f"{flag}: {folder} is not writable: {problem}")


def versions() -> dict[str, str]:
    import torch

    from detector.core.version import VERSION

    return {"whaled": VERSION, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def report_data(dataset: Dataset) -> None:
    summary = dataset.summary()
    typer.echo(f"data ({summary['layout']}): train {summary['train_pos']} positive / "
               f"{summary['train_neg']} negative, validation {summary['validation_pos']} / "
               f"{summary['validation_neg']}; split: {summary['split']}")
    report_skipped(dataset.skipped)


def report_reviewed(match: ReviewedMatch) -> ReviewedMatch:
    """The stderr lines saying which reviewed tables matched which recordings."""
    for line in match.lines():
        typer.echo(line, err=True)
    return match


def report_skipped(skipped: Sequence[str]) -> None:
    """One stderr line for the unreadable files a command passed over, naming the first few."""
    from detector.train.examples import SKIPPED_NAMES_SHOWN

    if skipped:
        typer.echo(f"skipped {len(skipped)} unreadable file(s), first: "
                   + ", ".join(skipped[:SKIPPED_NAMES_SHOWN]), err=True)


def inspect(
    model: Annotated[Path, typer.Argument(help="Model archive to describe.")],
    filters: Annotated[Path | None, typer.Option(
        help="Write a PNG of the first convolution layer's learned filters here.")] = None,
    saliency: Annotated[Path | None, typer.Option(
        help="Write a PNG of what the upcall score rests on: one window's spectrogram and, "
             "beside it, the score lost when each 0.125 s x 25 Hz tile is removed.")] = None,
    audio: Annotated[Path | None, typer.Option(
        help="With --saliency: a recording holding a call (channel 1). (default: a "
             "synthetic upcall at 0 dB SNR in ocean noise)")] = None,
    at: Annotated[float, typer.Option(
        help="With --audio: start of the window in the recording, seconds.")] = 0.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Metadata, parameter count, FLOPs per window, the first layer's filters, and what the
    score rests on over a call (--saliency)."""
    from detector.figures import curves as plots
    from detector.model import inspection
    from detector.model.artifact import load_model

    try:
        loaded = load_model(model, "cpu")
    except WhaledError as error:
        fail(str(error))
    summary = inspection.summarise(loaded)
    if saliency is not None:
        try:
            window, source = inspection.saliency_window(loaded, audio, at)
        except WhaledError as error:
            fail(str(error))
        result = inspection.occlusion_saliency(loaded, window, source)
        plots.plot_saliency(result, saliency)
        summary["saliency"] = inspection.saliency_summary(result, saliency)
    if filters is not None:
        plots.plot_first_filters(loaded.module, filters)
        summary["filters_png"] = str(filters)
    typer.echo(json.dumps(summary, indent=2) if json_output else inspection.format_summary(summary))
