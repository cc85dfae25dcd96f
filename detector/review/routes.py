"""The HTTP routes of ``whaled review`` over one :class:`~detector.review.server.ReviewState`.

``GET /`` the page; ``GET /api/state`` detections, verdicts and added calls as JSON;
``GET /api/view/N?context=S&range=DB&top=HZ`` where the spectrogram of detection N at that
view puts its axes (image and plot-area pixels, the seconds and Hz at the plot's edges), so
the page turns a mouse position into seconds and Hz; ``GET /spectrogram/N.png?...`` that
spectrogram; ``GET /audio/N.wav?speed=S&context=S`` (speed 1 or 4).

``POST /api/verdict`` ``{"number", "recording", "channel", "start_seconds", "end_seconds",
"annotation", "note"}``; ``POST /api/add`` ``{"recording", "channel", "begin_s", "end_s",
"low_hz", "high_hz", "annotation" (default upcall), "note"}`` a call the model missed;
``POST /api/correct`` the same box with the detection's ``number``, ``start_seconds`` and
``end_seconds``: its corrected box. A POST is taken only from the page itself
(:mod:`detector.review.origin`) and answered once its row is on disk; bad input is HTTP 400
with ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from detector.annotations.reviewed import VERDICTS, LabelsError, ReviewedLabel
from detector.review.items import StaleDetections, box_json
from detector.review.origin import foreign_request

if TYPE_CHECKING:
    from detector.review.server import ReviewState

log = logging.getLogger("whaled.review")
SPEEDS = (1, 4)  # playback: as recorded, and 4x faster so 100 Hz sounds at 400 Hz
MAX_BODY_BYTES = 64_000  # a verdict with its note
JSON_TYPE = "application/json"
IDLE_CONNECTION_SECONDS = 5.0  # a browser's idle pre-opened socket is closed after this
POSTS = ("/api/verdict", "/api/add", "/api/correct")


def identity_of(body: dict[str, Any]) -> tuple[str, int, float, float]:
    """How the page knows a detection: recording, channel, start and end seconds."""
    return (str(body["recording"]), int(body["channel"]), float(body["start_seconds"]),
            float(body["end_seconds"]))


def make_handler(state: ReviewState) -> type[BaseHTTPRequestHandler]:
    from detector.review.page import PAGE

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
            from detector.review.media import View

            parts = path.strip("/").split("/")
            if path == "/":
                return HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8"
            if path == "/favicon.ico":
                return HTTPStatus.NO_CONTENT, b"", "image/x-icon"
            if path == "/api/state":
                state.refresh()
                return HTTPStatus.OK, json.dumps(state.state_json()).encode(), JSON_TYPE
            if len(parts) == 3 and parts[:2] == ["api", "view"]:
                doc = self.geometry(detection_number(parts[2]), View.parse(query))
                return HTTPStatus.OK, json.dumps(doc).encode(), JSON_TYPE
            if len(parts) == 2 and parts[0] == "spectrogram" and parts[1].endswith(".png"):
                number = detection_number(parts[1].removesuffix(".png"))
                return HTTPStatus.OK, state.media(number, "png", view=View.parse(query)), \
                    "image/png"
            if len(parts) == 2 and parts[0] == "audio" and parts[1].endswith(".wav"):
                speed = query.get("speed", ["1"])[0]
                if speed not in [str(s) for s in SPEEDS]:
                    raise ValueError(f"speed must be one of {SPEEDS}")
                number = detection_number(parts[1].removesuffix(".wav"))
                view = View.parse({"context": query.get("context", [""])})
                return HTTPStatus.OK, state.media(number, "wav", int(speed), view), "audio/wav"
            return self.error(HTTPStatus.NOT_FOUND, f"no page {path}")

        @staticmethod
        def geometry(number: int, view: Any) -> dict[str, object]:
            from detector.figures.detections import plot_geometry
            from detector.review.media import clip_extent

            item = state.item(number)
            if item.audio is None:
                raise KeyError(number)
            extent = clip_extent(item, item.audio, view.context_seconds)
            return {**plot_geometry(extent.seconds, extent.rate_hz, view),
                    "png": f"/spectrogram/{number}.png?{view.query()}"}

        @staticmethod
        def error(status: int, message: str) -> tuple[int, bytes, str]:
            return status, json.dumps({"error": message}).encode(), JSON_TYPE

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            if path not in POSTS:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": "no such endpoint"})
                return
            address, port = cast(tuple[str, int], self.server.server_address)[:2]
            refusal = foreign_request(self.headers.get("Host"), self.headers.get("Origin"),
                                      address, port)
            if refusal:
                log.warning("%s refused: %s", path, refusal)
                self.send_json(HTTPStatus.FORBIDDEN, {"error": refusal})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if not 0 < length <= MAX_BODY_BYTES:
                    raise ValueError("body missing or too long")
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                doc = self.post(path, body)
            except KeyError as error:
                self.send_json(HTTPStatus.NOT_FOUND if isinstance(error.args[0], int) else
                               HTTPStatus.BAD_REQUEST, {"error": f"no {error}"})
            except StaleDetections as error:
                self.send_json(HTTPStatus.CONFLICT, {"error": str(error)})
            except (ValueError, TypeError, LabelsError) as error:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            except OSError as error:  # not saved: the page says so and keeps the verdict
                log.error("%s not saved: %s", path, error)
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                               {"error": f"not saved: {error}"})
            else:
                self.send_json(HTTPStatus.OK, doc)

        @staticmethod
        def post(path: str, body: dict[str, Any]) -> dict[str, object]:
            from detector.review.boxes import parse_box

            if path == "/api/add":
                label = state.add(str(body["recording"]), parse_box(body))
                return {"recording": str(body["recording"]), **box_json(label)}
            number = int(body["number"])
            if path == "/api/correct":
                label = state.correct(number, identity_of(body), parse_box(body))
                return answer_of(number, label)
            annotation = str(body["annotation"])
            if annotation not in VERDICTS:
                raise ValueError(f"annotation must be one of {', '.join(VERDICTS)}")
            return answer_of(number, state.save(number, identity_of(body), annotation,
                                                str(body.get("note", ""))))

    return Handler


def answer_of(number: int, label: ReviewedLabel) -> dict[str, object]:

    return {"number": number, "annotation": label.annotation, "note": label.note,
            "reviewer": label.reviewer,
            "box": box_json(label) if label.replaces is not None else None}


def detection_number(text: str) -> int:
    """A detection's number in a path; KeyError (no such detection) when it is not one."""
    if not text.isdigit():
        raise KeyError(text)
    return int(text)
