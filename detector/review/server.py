"""``whaled review``: a local web page to confirm or reject detections, keyboard first.

A standard-library HTTP server over one ``listen`` or ``detect`` output folder. The page (one
HTML file, no external assets) asks for the detections and their verdicts, shows each one's
spectrogram and plays its audio, and posts each verdict as it is given. The server appends it
to the recording's reviewed table (:func:`detector.annotations.reviewed.append_reviewed`: flushed
and
fsynced) before it answers, so a verdict the page shows as saved is on disk; a changed verdict
is a later row that supersedes the earlier one. Every page load reads the tables again. When
it stops, a ``detect`` output's ``detections.csv``, presence tables and figure are rewritten
with the verdicts (:func:`detector.season.tables.write_season`; ``whaled presence OUT`` does the
same
at any time).

A reviewer can also draw boxes on the spectrogram: a call the model missed is added, a
detection's box is corrected (:mod:`detector.review.boxes`); both are rows of the same table.
The routes are in :mod:`detector.review.routes`.
"""

from __future__ import annotations

import getpass
import logging
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from detector.annotations.reviewed import VERDICTS, ReviewedLabel, append_reviewed
from detector.core.errors import EXIT_BAD_INPUT, WhaledError, print_error
from detector.outputs.sinks import JSONL_NAME
from detector.review.items import (
    Item,
    StaleDetections,
    box_json,
    load_items,
    read_reviews,
    reviewed_path,
)

if TYPE_CHECKING:
    from detector.review.boxes import Box
    from detector.review.media import View

log = logging.getLogger("whaled.review")
MEDIA_CACHE_ENTRIES = 64  # spectrograms and WAVs kept in memory


class ReviewServer(ThreadingHTTPServer):
    """Request threads are joined at close (bounded by the handler's socket timeout), so no
    thread is still writing when the interpreter exits; a browser that hangs up mid-answer
    is a debug line, not a traceback."""

    daemon_threads = False

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.debug("client %s went away: %s", client_address, error)
        else:
            log.exception("request from %s failed", client_address)


class ReviewState:
    """The folder's detections and verdicts; every change goes through ``lock``."""

    def __init__(self, out_dir: Path, audio_paths: Sequence[Path], reviewer: str) -> None:
        self.out_dir, self.audio_paths, self.reviewer = out_dir, list(audio_paths), reviewer
        self.lock = threading.Lock()
        self.items = load_items(out_dir, audio_paths)
        self._jsonl_stamp = self._stamp()
        self.verdicts, self.added = read_reviews(out_dir, self.items)
        self._media: OrderedDict[tuple[object, ...], bytes] = OrderedDict()

    def _stamp(self) -> tuple[int, int]:
        stat = (self.out_dir / JSONL_NAME).stat()
        return stat.st_size, stat.st_mtime_ns

    def refresh(self) -> None:
        """Detections appended since (a running listen), and the verdicts as on disk."""
        with self.lock:
            try:
                stamp = self._stamp()
                if stamp != self._jsonl_stamp:
                    self.items, self._jsonl_stamp = load_items(self.out_dir,
                                                               self.audio_paths), stamp
                self.verdicts, self.added = read_reviews(self.out_dir, self.items)
            except (OSError, WhaledError) as error:
                log.warning("detections or verdicts not reread: %s", error)

    def item(self, number: int) -> Item:
        """The detection on the ``number``-th detection line; KeyError when there is none."""
        for item in self.items:  # sorted by number
            if item.number == number:
                return item
        raise KeyError(number)

    def state_json(self) -> dict[str, object]:
        rows = []
        for item in self.items:
            verdict = self.verdicts.get(item.number)
            rows.append({
                "number": item.number, "recording": item.recording, "source": item.source,
                "channel": item.channel, "label": item.label, "score": item.score,
                "start_seconds": item.start_seconds, "end_seconds": item.end_seconds,
                "start_utc": item.start_utc, "end_utc": item.end_utc,
                "day": item.start_utc[:10] or "unknown", "model": item.model,
                "has_audio": item.audio is not None,
                "annotation": verdict.annotation if verdict else "",
                "note": verdict.note if verdict else "",
                "reviewer": verdict.reviewer if verdict else "",
                "box": box_json(verdict) if verdict and verdict.replaces else None})
        added = [{"recording": recording, **box_json(label)} for recording, label in self.added]
        return {"items": rows, "added": added, "reviewer": self.reviewer,
                "out_dir": str(self.out_dir), "annotations": list(VERDICTS)}

    def save(self, number: int, identity: tuple[str, int, float, float], annotation: str,
             note: str) -> ReviewedLabel:
        """Append the verdict on detection ``number``, which the page knows by ``identity``
        (:meth:`check_identity`). A corrected box keeps its box and takes the verdict."""
        item = self.check_identity(number, identity)
        label = item.reviewed_label(annotation, self.reviewer, note)
        corrected = self.verdicts.get(number)
        if corrected is not None and corrected.replaces is not None:
            label = replace(corrected, annotation=annotation, reviewer=self.reviewer, note=note)
        with self.lock:
            append_reviewed(reviewed_path(self.out_dir, item.recording), label)
            self.verdicts[number] = label
        log.info("verdict %s recording=%s channel=%d begin_s=%.3f note=%r", annotation,
                 item.recording, item.channel, item.start_seconds, note)
        return label

    def check_identity(self, number: int, identity: tuple[str, int, float, float]) -> Item:
        """Detection ``number``, if the page knows it by ``identity`` (recording, channel,
        start and end seconds): a detections.jsonl rewritten since the page loaded (detect
        moves superseded results out) is refused, never misapplied."""
        item = self.item(number)
        recording, channel, start_seconds, end_seconds = identity
        if (recording, Item.key_of(channel, start_seconds, end_seconds)) != (item.recording,
                                                                               item.key):
            raise StaleDetections("the detections changed since the page loaded: reload it")
        return item

    def add(self, recording: str, box: Box) -> ReviewedLabel:
        """Append ``box`` on ``recording`` as a call the reviewer found (ValueError when it is
        outside the audio the page can show)."""
        from detector.review.boxes import audio_span, check_inside

        mine = [i for i in self.items if i.recording == recording and i.channel == box.channel]
        if not [i for i in self.items if i.recording == recording]:
            raise ValueError(f"no recording {recording!r} among the detections")
        check_inside(box, filter(None, map(audio_span, mine)), recording)
        label = ReviewedLabel(box.begin_seconds, box.end_seconds, box.annotation,
                              reviewer=self.reviewer, note=box.note, channel=box.channel,
                              low_hz=box.low_hz, high_hz=box.high_hz,
                              begin_utc=mine[0].utc_at(box.begin_seconds) if mine else "")
        with self.lock:
            append_reviewed(reviewed_path(self.out_dir, recording), label)
            self.added.append((recording, label))
        log.info("added %s recording=%s channel=%d begin_s=%.3f end_s=%.3f %g-%g Hz",
                 box.annotation, recording, box.channel, box.begin_seconds, box.end_seconds,
                 box.low_hz, box.high_hz)
        return label

    def correct(self, number: int, identity: tuple[str, int, float, float], box: Box
                ) -> ReviewedLabel:
        """Append ``box`` as detection ``number``'s corrected box and verdict."""
        from detector.review.boxes import audio_span, check_inside

        item = self.check_identity(number, identity)
        if box.channel != item.channel:
            raise ValueError(f"channel {box.channel} is not the detection's ({item.channel})")
        check_inside(box, filter(None, [audio_span(item)]), item.recording)
        label = ReviewedLabel(box.begin_seconds, box.end_seconds, box.annotation,
                              reviewer=self.reviewer, note=box.note, channel=item.channel,
                              low_hz=box.low_hz, high_hz=box.high_hz,
                              begin_utc=item.utc_at(box.begin_seconds), score=item.score,
                              replaces=(item.start_seconds, item.end_seconds))
        with self.lock:
            append_reviewed(reviewed_path(self.out_dir, item.recording), label)
            self.verdicts[number] = label
        log.info("corrected box recording=%s channel=%d %.3f-%.3f s -> %.3f-%.3f s %g-%g Hz",
                 item.recording, item.channel, item.start_seconds, item.end_seconds,
                 box.begin_seconds, box.end_seconds, box.low_hz, box.high_hz)
        return label

    def media(self, number: int, kind: str, speed: int = 1, view: View | None = None) -> bytes:
        """``png`` or ``wav`` of a detection as ``view`` shows it; KeyError when it has no
        audio. Cached by the detection's identity (recording, channel, span, audio), never by
        its number alone: a rewritten detections.jsonl gives a number to another detection."""
        from detector.figures.detections import review_spectrogram_png
        from detector.review.media import View, cut_clip, playback_wav

        view = view or View()
        item = self.item(number)
        if item.audio is None:
            raise KeyError(number)
        key = (item.recording, item.key, item.audio, f"{kind}{speed}", view)
        with self.lock:
            if key in self._media:
                self._media.move_to_end(key)
                return self._media[key]
        clip = cut_clip(item, item.audio, view.context_seconds)
        data = (review_spectrogram_png(item, clip, view) if kind == "png"
                else playback_wav(clip, speed))
        with self.lock:
            self._media[key] = data
            while len(self._media) > MEDIA_CACHE_ENTRIES:
                self._media.popitem(last=False)
        return data


def run_review_command(out_dir: Path, audio: Sequence[Path], address: str, port: int,
                       reviewer: str | None) -> int:
    """Serve until SIGINT or SIGTERM: 0, or 2 with one ``whaled: error:`` line at start."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return _fail("whaled review needs matplotlib (pip install 'whaled[review]')")
    missing = [str(path) for path in audio if not path.exists()]
    if missing:
        return _fail(f"--audio {missing[0]} not found")
    from detector.review.routes import make_handler

    try:
        state = ReviewState(out_dir, audio, reviewer or _user())
        server = ReviewServer((address, port), make_handler(state))
    except WhaledError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot serve on {address}:{port}: {error.strerror or error}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=server.serve_forever, name="review-http", daemon=True)
    thread.start()
    bound_port = server.server_address[1]
    reviewed = len(state.verdicts)
    print(f"whaled review: {len(state.items)} detections ({reviewed} reviewed) in {out_dir}; "
          f"open http://{address}:{bound_port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    refresh_season(out_dir)
    return 0


def refresh_season(out_dir: Path) -> None:
    """A detect output's tables rewritten with the verdicts given (:mod:`detector.season.tables`);
    a listen output has none."""
    from detector.season.presence import read_results
    from detector.season.tables import write_season

    if not read_results(out_dir):
        return
    try:
        season = write_season(out_dir)
    except (OSError, WhaledError) as error:
        log.error("detections.csv and the presence tables not rewritten: %s", error)
        return
    print(f"whaled review: detections.csv, the presence tables and figure and the season's "
          f"Raven table rewritten with {season.reviewed} of {season.totals.detections} "
          f"detections reviewed (whaled presence {out_dir} prints the threshold guidance)",
          file=sys.stderr)




def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


def _fail(message: str) -> int:
    print_error(message)
    return EXIT_BAD_INPUT
