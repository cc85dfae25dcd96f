"""``whaled review``: the page's flags; the server is :mod:`detector.review.server`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detector.cli.shared import setup_logging

REVIEW_PORT = 9873  # next to the metrics endpoint's 9872


def review(
    out_dir: Annotated[Path, typer.Argument(help="A listen or detect output folder.")],
    audio: Annotated[list[Path] | None, typer.Option(
        help="A recording, or a folder of them, to cut audio from when the path the "
             "output recorded is gone and there is no evidence clip; repeatable.")] = None,
    address: Annotated[str, typer.Option(help="Address to serve the page on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        help="Port of the page; 0 picks a free one.")] = REVIEW_PORT,
    reviewer: Annotated[str | None, typer.Option(
        help="Name written in the Reviewer column. (default: the login name)")] = None,
) -> None:
    """Confirm or reject detections in a local web page; verdicts go to OUT_DIR/review/."""
    from detector.review.server import run_review_command

    setup_logging("INFO")
    raise typer.Exit(run_review_command(out_dir, audio or [], address, port, reviewer))
