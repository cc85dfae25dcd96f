"""``whaled review``: a local web page to confirm or reject detections, keyboard first.

A standard-library HTTP server over one ``listen`` or ``detect`` output folder. The page (one
HTML file, no external assets) asks for the detections and their verdicts, shows each one's
spectrogram and plays its audio, and posts each verdict as it is given. The server appends it
to the recording's reviewed table (:func:`detector.labels.append_reviewed`: flushed and
fsynced) before it answers, so a verdict the page shows as saved is on disk; a changed verdict
is a later row that supersedes the earlier one. Every page load reads the tables again. When
it stops, a ``detect`` output's ``detections.csv``, presence tables and figure are rewritten
with the verdicts (:func:`detector.season.write_season`; ``whaled presence OUT`` does the same
at any time).

Routes: ``GET /`` the page, ``GET /api/state`` detections and verdicts as JSON,
``GET /spectrogram/N.png``, ``GET /audio/N.wav?speed=S`` (S = 1 or 4), ``POST /api/verdict``
with ``{"number": N, "annotation": "upcall" | "not-upcall" | "unsure", "note": "..."}``.
"""

from __future__ import annotations

import getpass
import json
import logging
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import cast
from urllib.parse import parse_qs, urlsplit

from detector.errors import EXIT_BAD_INPUT, WhaledError, print_error
from detector.labels import VERDICTS, LabelsError, ReviewedLabel, append_reviewed
from detector.review_items import (
    Item,
    load_items,
    read_verdicts,
    reviewed_path,
)
from detector.review_origin import foreign_request
from detector.sinks import JSONL_NAME

log = logging.getLogger("whaled.review")
SPEEDS = (1, 4)  # playback: as recorded, and 4x faster so 100 Hz sounds at 400 Hz
MEDIA_CACHE_ENTRIES = 64  # spectrograms and WAVs kept in memory
MAX_BODY_BYTES = 64_000  # a verdict with its note
JSON_TYPE = "application/json"
IDLE_CONNECTION_SECONDS = 5.0  # a browser's idle pre-opened socket is closed after this


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


class StaleDetections(Exception):
    """A verdict for a detection the folder no longer lists under that number."""


class ReviewState:
    """The folder's detections and verdicts; every change goes through ``lock``."""

    def __init__(self, out_dir: Path, audio_paths: Sequence[Path], reviewer: str) -> None:
        self.out_dir, self.audio_paths, self.reviewer = out_dir, list(audio_paths), reviewer
        self.lock = threading.Lock()
        self.items = load_items(out_dir, audio_paths)
        self._jsonl_stamp = self._stamp()
        self.verdicts: dict[int, ReviewedLabel] = read_verdicts(out_dir, self.items)
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
                self.verdicts = read_verdicts(self.out_dir, self.items)
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
                "reviewer": verdict.reviewer if verdict else ""})
        return {"items": rows, "reviewer": self.reviewer, "out_dir": str(self.out_dir),
                "annotations": list(VERDICTS)}

    def save(self, number: int, identity: tuple[str, int, float, float], annotation: str,
             note: str) -> ReviewedLabel:
        """Append the verdict on detection ``number``, which the page knows by ``identity``
        (recording, channel, start and end seconds): a detections.jsonl rewritten since the
        page loaded (detect moves superseded results out) is refused, never misapplied."""
        item = self.item(number)
        recording, channel, start_seconds, end_seconds = identity
        if (recording, Item.key_of(channel, start_seconds, end_seconds)) != (item.recording,
                                                                               item.key):
            raise StaleDetections("the detections changed since the page loaded: reload it")
        label = item.reviewed_label(annotation, self.reviewer, note)
        with self.lock:
            append_reviewed(reviewed_path(self.out_dir, item.recording), label)
            self.verdicts[number] = label
        log.info("verdict %s recording=%s channel=%d begin_s=%.3f note=%r", annotation,
                 item.recording, item.channel, item.start_seconds, note)
        return label

    def media(self, number: int, kind: str, speed: int = 1) -> bytes:
        """``png`` or ``wav`` of a detection; KeyError when it has no audio. Cached by the
        detection's identity (recording, channel, span, audio), never by its number alone: a
        rewritten detections.jsonl gives a number to another detection."""
        from detector.detection_plots import review_spectrogram_png
        from detector.review_media import cut_clip, playback_wav

        item = self.item(number)
        if item.audio is None:
            raise KeyError(number)
        key = (item.recording, item.key, item.audio, f"{kind}{speed}")
        with self.lock:
            if key in self._media:
                self._media.move_to_end(key)
                return self._media[key]
        clip = cut_clip(item, item.audio)
        data = review_spectrogram_png(item, clip) if kind == "png" else playback_wav(clip, speed)
        with self.lock:
            self._media[key] = data
            while len(self._media) > MEDIA_CACHE_ENTRIES:
                self._media.popitem(last=False)
        return data


def make_handler(state: ReviewState) -> type[BaseHTTPRequestHandler]:
    from detector.review_page import PAGE

    class Handler(BaseHTTPRequestHandler):
        server_version = "whaled-review"
        timeout = IDLE_CONNECTION_SECONDS

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

        def send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, doc: object) -> None:
            self.send(status, json.dumps(doc).encode(), JSON_TYPE)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                status, body, content_type = self.answer(url.path, parse_qs(url.query))
            except KeyError:
                status, body, content_type = self.error(HTTPStatus.NOT_FOUND,
                                                        "no such detection or no audio")
            except ValueError as error:
                status, body, content_type = self.error(HTTPStatus.BAD_REQUEST, str(error))
            except (OSError, RuntimeError) as error:  # audio unreadable: the page says so
                log.error("cannot read audio for %s: %s", url.path, error)
                status, body, content_type = self.error(HTTPStatus.INTERNAL_SERVER_ERROR,
                                                        str(error))
            self.send(status, body, content_type)  # a client gone: ReviewServer.handle_error

        def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes, str]:
            parts = path.strip("/").split("/")
            if path == "/":
                return HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8"
            if path == "/favicon.ico":
                return HTTPStatus.NO_CONTENT, b"", "image/x-icon"
            if path == "/api/state":
                state.refresh()
                return HTTPStatus.OK, json.dumps(state.state_json()).encode(), JSON_TYPE
            if len(parts) == 2 and parts[0] == "spectrogram" and parts[1].endswith(".png"):
                number = int(parts[1].removesuffix(".png"))
                return HTTPStatus.OK, state.media(number, "png"), "image/png"
            if len(parts) == 2 and parts[0] == "audio" and parts[1].endswith(".wav"):
                speed = int(query.get("speed", ["1"])[0])
                if speed not in SPEEDS:
                    raise ValueError(f"speed must be one of {SPEEDS}")
                number = int(parts[1].removesuffix(".wav"))
                return HTTPStatus.OK, state.media(number, "wav", speed), "audio/wav"
            return self.error(HTTPStatus.NOT_FOUND, f"no page {path}")

        @staticmethod
        def error(status: int, message: str) -> tuple[int, bytes, str]:
            return status, json.dumps({"error": message}).encode(), JSON_TYPE

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/api/verdict":
                self.send_json(HTTPStatus.NOT_FOUND, {"error": "no such endpoint"})
                return
            address, port = cast(tuple[str, int], self.server.server_address)[:2]
            refusal = foreign_request(self.headers.get("Host"), self.headers.get("Origin"),
                                      address, port)
            if refusal:
                log.warning("verdict refused: %s", refusal)
                self.send_json(HTTPStatus.FORBIDDEN, {"error": refusal})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if not 0 < length <= MAX_BODY_BYTES:
                    raise ValueError("body missing or too long")
                body = json.loads(self.rfile.read(length))
                number, annotation = int(body["number"]), str(body["annotation"])
                identity = (str(body["recording"]), int(body["channel"]),
                            float(body["start_seconds"]), float(body["end_seconds"]))
                note = str(body.get("note", ""))
                if annotation not in VERDICTS:
                    raise ValueError(f"annotation must be one of {', '.join(VERDICTS)}")
                label = state.save(number, identity, annotation, note)
            except KeyError as error:
                self.send_json(HTTPStatus.NOT_FOUND if isinstance(error.args[0], int) else
                               HTTPStatus.BAD_REQUEST, {"error": f"no {error}"})
            except StaleDetections as error:
                self.send_json(HTTPStatus.CONFLICT, {"error": str(error)})
            except (ValueError, TypeError, LabelsError) as error:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            except OSError as error:  # not saved: the page says so and keeps the verdict
                log.error("verdict not saved: %s", error)
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                               {"error": f"not saved: {error}"})
            else:
                self.send_json(HTTPStatus.OK, {"number": number, "annotation": label.annotation,
                                               "note": label.note, "reviewer": label.reviewer})

    return Handler


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
    """A detect output's tables rewritten with the verdicts given (:mod:`detector.season`);
    a listen output has none."""
    from detector.presence import read_results
    from detector.season import write_season

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
