"""The one base of whaled's known errors: a bad config, model, source, dataset, label or audio file.

A command catches ``WhaledError`` at its edge and prints one ``whaled: error: ...`` line; anything
else is a defect and keeps its traceback. Each module raises its own subclass, so a message says
where the fault is and a caller that can recover from one kind catches only that kind.
"""

from __future__ import annotations


class WhaledError(Exception):
    """A fault of the input or the set-up that the user can fix; its text is the whole message."""
