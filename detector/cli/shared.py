"""What the commands share: logging set up the same way, and the --channels list."""

from __future__ import annotations

import logging
import sys

import typer


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(levelname)s %(name)s %(message)s", force=True)


def parse_channels(text: str | None) -> list[int] | None:
    """``--channels 1,3`` as [1, 3]; None when the flag is not given."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of channel numbers")\
            from None
