"""Known errors and how a command reports them: one ``whaled: error: ...`` line, a set exit status.

``WhaledError`` is the one base of the faults a user can fix (a bad config, model, source,
dataset, label or audio file). A command catches it at its edge and calls :func:`fail`; anything
else is a defect and keeps its traceback. Each module raises its own subclass, so a message says
where the fault is and a caller that can recover from one kind catches only that kind.
"""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_BAD_INPUT = 2  # nothing was done: the command line, a config, a model or a path is wrong


class WhaledError(Exception):
    """A fault of the input or the set-up that the user can fix; its text is the whole message."""


def print_error(message: object) -> None:
    """The one error line on stderr; the caller decides the exit status."""
    print(f"whaled: error: {message}", file=sys.stderr)


def fail(message: object, status: int = EXIT_BAD_INPUT) -> NoReturn:
    """The error line, then exit with ``status``."""
    print_error(message)
    raise SystemExit(status)
