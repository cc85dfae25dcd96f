"""The progress displays: one module, no third-party bar."""

from __future__ import annotations

import io

from detector.core.progress import EpochBar, NoBar, counted, progress_bar


def test_the_epoch_bar_redraws_one_line_and_ends_it() -> None:
    out = io.StringIO()
    bar = EpochBar(total_batches=4, epoch=2, epochs=20, stream=out)
    bar.update(1)  # first draw
    bar.update(3)  # within the redraw interval: not drawn
    bar.set_postfix(loss="0.3120")
    bar.close()
    lines = out.getvalue().split("\r")
    assert lines[0].startswith("epoch 3/20  25% 1/4 batches")
    assert lines[-1].rstrip().endswith("epoch 3/20 100% 4/4 batches  loss=0.3120")
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_no_bar_off_a_terminal_and_counted_nouns() -> None:
    assert isinstance(progress_bar(10, 0, 1, enabled=True), NoBar)  # pytest's stderr: no TTY
    assert isinstance(progress_bar(10, 0, 1, enabled=False), NoBar)
    assert (counted(1, "recording"), counted(0, "clip"), counted(2, "day")) == (
        "1 recording", "0 clips", "2 days")
