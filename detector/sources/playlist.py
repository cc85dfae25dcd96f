"""HLS media playlists: fetched over HTTP and parsed into segments with their date-times.

:func:`fetch` and :func:`fetch_playlist` fail with one :class:`SourceError` line; a master
playlist is refused with one of its variants named.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

from detector.core.stamps import parse_utc
from detector.sources.replay import SourceError

CONNECT_TIMEOUT_SECONDS = 10.0  # an answer to one request, or ffprobe's to the stream


def is_hls(url: str) -> bool:
    return urllib.parse.urlsplit(url).path.lower().endswith((".m3u8", ".m3u"))


@dataclass(frozen=True)
class Segment:
    sequence: int
    url: str
    duration_seconds: float
    program_utc: datetime | None  # EXT-X-PROGRAM-DATE-TIME, carried forward by durations
    discontinuity: bool


@dataclass(frozen=True)
class Playlist:
    segments: tuple[Segment, ...]
    target_seconds: float
    ended: bool  # EXT-X-ENDLIST: no segment will be added


def program_date_time(text: str) -> datetime:
    """``EXT-X-PROGRAM-DATE-TIME`` as an aware UTC time: an offset is applied; one without a
    zone (the specification asks for one, some servers leave it out) is taken as UTC, never
    as the machine's local time."""
    return parse_utc(text)


def parse_playlist(text: str, base_url: str) -> Playlist:
    """A media playlist; raises SourceError for anything else."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise SourceError(f"{base_url} is not an HLS playlist (no #EXTM3U)")
    sequence, target, ended = 0, 0.0, False
    segments: list[Segment] = []
    duration, program, discontinuity = 0.0, None, False
    variants: list[str] = []
    expect_variant = False
    for line in lines[1:]:
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            program = program_date_time(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY"):
            discontinuity = True
        elif line.startswith("#EXT-X-STREAM-INF"):
            expect_variant = True
        elif not line.startswith("#"):
            url = urllib.parse.urljoin(base_url, line)
            if expect_variant:
                variants.append(url)
                expect_variant = False
                continue
            segments.append(Segment(sequence + len(segments), url, duration, program,
                                    discontinuity))
            program = None if program is None else program + timedelta(seconds=duration)
            duration, discontinuity = 0.0, False
    if variants and not segments:
        raise SourceError(f"{base_url} is a master playlist: give one of its variants, "
                          f"e.g. {variants[0]}")
    return Playlist(tuple(segments), target or 1.0, ended)


def fetch(url: str, timeout_seconds: float = CONNECT_TIMEOUT_SECONDS) -> bytes:
    """The body at ``url``; SourceError with one line when it cannot be had."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        raise SourceError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise SourceError(f"{url} does not answer: {reason}") from None


def fetch_playlist(url: str) -> Playlist:
    try:
        text = fetch(url).decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{url} is not an HLS playlist (not text)") from None
    return parse_playlist(text, url)
