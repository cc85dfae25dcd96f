"""Networked hydrophones: HLS playlists, Icecast or raw HTTP audio and RTSP, decoded by ffmpeg.

ffmpeg runs as a subprocess writing 32-bit float PCM to a pipe, at the stream's own rate and
channel count (the pipeline resamples as for a sound card). Start-up checks everything before
the first block: ffmpeg is installed, the URL answers, a playlist is found, the stream is audio;
each failure is one :class:`SourceError` line.

Time: for HLS, the program date-time of the first segment taken (``EXT-X-PROGRAM-DATE-TIME``,
``origin_from = "playlist"``) and, after lost segments, the next segment's own date-time;
without date-times, and for other streams, the arrival clock with the sample count, as for a
sound card. Segments that slid out of the playlist before they were fetched, a dropped or
stalled connection and the reconnect after it are :class:`Gap` records, reason
``network_lost``; the daemon's :class:`~detector.live.Reconnector` retries with backoff
through ``lost`` and :meth:`NetworkSource.reopen`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from detector.blocks import Block, EndOfStream, Gap, StreamInfo, utc_now
from detector.live import LiveCounters
from detector.sources import Item, SourceError, select_channels

log = logging.getLogger("whaled.netstream")
REASON_NETWORK_LOST = "network_lost"
NETWORK_SCHEMES = ("http://", "https://", "rtsp://", "rtsps://")
CONNECT_TIMEOUT_SECONDS = 10.0  # an answer to one request, or ffprobe's to the stream
PROBE_TIMEOUT_SECONDS = 20.0  # ffprobe as a whole
LIVE_START_SEGMENTS = 3  # a live playlist is joined this many segments from its end
PLAYLIST_POLL_MIN_SECONDS = 0.2
QUEUE_BLOCKS = 3000  # decoded blocks waiting for the pipeline (minutes of audio)


def is_network_url(device: str) -> bool:
    return device.lower().startswith(NETWORK_SCHEMES)


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
            program = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00"))
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


def ffmpeg_path() -> str:
    path = shutil.which("ffmpeg")
    if path is None or shutil.which("ffprobe") is None:
        raise SourceError("ffmpeg is not installed, and network streams are decoded by it "
                          "(Debian: apt-get install ffmpeg)")
    return path


def probe(target: str, data: bytes | None = None) -> tuple[int, int]:
    """(rate in Hz, channels) of the first audio stream at ``target`` (or in ``data``)."""
    args = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
            "stream=sample_rate,channels", "-of", "csv=p=0"]
    if data is None and target.startswith(("http://", "https://")):
        args += ["-rw_timeout", str(int(CONNECT_TIMEOUT_SECONDS * 1e6))]
    elif data is None:
        args += ["-timeout", str(int(CONNECT_TIMEOUT_SECONDS * 1e6))]
    args.append("pipe:0" if data is not None else target)
    try:
        run = subprocess.run(args, input=data, capture_output=True,
                             timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise SourceError(f"{target} does not answer (no audio within "
                          f"{PROBE_TIMEOUT_SECONDS:g} s)") from None
    fields = run.stdout.decode(errors="replace").strip().splitlines()
    if run.returncode != 0 or not fields:
        why = run.stderr.decode(errors="replace").strip().splitlines()
        detail = why[-1] if why else "no audio stream in it"
        raise SourceError(f"{target} is not an audio stream: {detail}")
    match = re.match(r"(\d+),(\d+)", fields[0])
    if match is None:
        raise SourceError(f"{target} is not an audio stream: {fields[0]}")
    return int(match.group(1)), int(match.group(2))


class Decoder:
    """One ffmpeg process: compressed audio in (a URL, or bytes written to its stdin), float32
    PCM at ``rate_hz`` with ``channels`` out, cut into blocks by a reader thread."""

    def __init__(self, ffmpeg: str, source: str | None, rate_hz: int, channels: int,
                 block_frames: int, on_block: Callable[[np.ndarray], None],
                 on_end: Callable[[], None]) -> None:
        args = [ffmpeg, "-hide_banner", "-loglevel", "error"]
        if source is None:
            args += ["-i", "pipe:0"]
        else:
            if source.startswith(("http://", "https://")):
                args += ["-rw_timeout", str(int(CONNECT_TIMEOUT_SECONDS * 1e6))]
            args += ["-i", source]
        args += ["-vn", "-f", "f32le", "-ac", str(channels), "-ar", str(rate_hz), "pipe:1"]
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE if source is None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._block_bytes = block_frames * channels * 4
        self._channels = channels
        self._on_block, self._on_end = on_block, on_end
        self._thread = threading.Thread(target=self._read, daemon=True, name="whaled-ffmpeg")
        self._thread.start()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        pending = b""
        while True:
            chunk = stdout.read(self._block_bytes - len(pending))
            if not chunk:
                break
            pending += chunk
            if len(pending) == self._block_bytes:
                self._on_block(np.frombuffer(pending, np.float32).reshape(-1, self._channels))
                pending = b""
        whole = len(pending) // (4 * self._channels) * 4 * self._channels
        if whole:
            self._on_block(np.frombuffer(pending[:whole], np.float32).reshape(
                -1, self._channels))
        self._on_end()

    def write(self, data: bytes) -> bool:
        stdin = self.process.stdin
        try:
            assert stdin is not None
            stdin.write(data)
            stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def finish(self, timeout_seconds: float = CONNECT_TIMEOUT_SECONDS) -> None:
        """No more input: wait until everything decoded has been handed on."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self._thread.join(timeout_seconds)
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("ffmpeg pid %d did not exit", self.process.pid)
        self._thread.join(5)


class NetworkSource:
    """A network stream as a :class:`~detector.live.LiveSource`; ``lost`` from a drop until
    :meth:`reopen` works."""

    def __init__(self, url: str, *, block_seconds: float, channels: Sequence[int] = ()
                 ) -> None:
        self.url = url
        self._ffmpeg = ffmpeg_path()
        self.hls = is_hls(url)
        self._next_sequence = 0
        origin, origin_from = utc_now(), "clock"
        if self.hls:
            playlist = fetch_playlist(url)
            if not playlist.segments:
                raise SourceError(f"{url}: the playlist lists no segments")
            start = 0 if playlist.ended else max(0, len(playlist.segments) - LIVE_START_SEGMENTS)
            first = playlist.segments[start]
            rate, available = probe(first.url, fetch(first.url))
            self._next_sequence = first.sequence
            if first.program_utc is not None:
                origin, origin_from = first.program_utc, "playlist"
        else:
            rate, available = probe(url)
            origin = utc_now()  # the clock when the audio starts to come, as for a card
        self._columns = [c - 1 for c in select_channels(available, channels)]
        self._n_channels = available
        self.info = StreamInfo(rate, tuple(c + 1 for c in self._columns), origin, origin_from,
                               _display(url))
        self._block_frames = max(1, round(block_seconds * rate))
        self._queue: queue.Queue[Item] = queue.Queue(QUEUE_BLOCKS)
        self._lock = threading.Lock()
        self._next_index = 0  # where the next decoded sample goes
        self._origin_monotonic = time.monotonic()
        self._delivered = 0
        self._ended = False
        self._stop = threading.Event()
        self.lost = False
        self.network_losses = 0
        self._worker: threading.Thread | None = None
        self._decoder: Decoder | None = None
        self._start()

    # -- the worker ----------------------------------------------------------------------

    def _start(self, reanchor: bool = False) -> None:
        self._stop = threading.Event()
        if not self.hls and reanchor:
            self._reanchor_by_clock()
        target = self._hls_worker if self.hls else self._raw_worker
        self._worker = threading.Thread(target=target, args=(self._stop,), daemon=True,
                                        name="whaled-netstream")
        self._worker.start()

    def _on_block(self, samples: np.ndarray) -> None:
        with self._lock:
            first = self._next_index
            self._next_index += len(samples)
        block = Block(first, np.ascontiguousarray(samples[:, self._columns]), time.monotonic())
        self._put(block)

    def _put(self, item: Item) -> None:
        while not self._stop.is_set() or isinstance(item, EndOfStream):
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _gap_to(self, index: int) -> None:
        with self._lock:
            first = self._next_index
            if index <= first:
                return
            self._next_index = index
        log.warning("network stream %s: %.1f s of audio lost", self.info.name,
                    (index - first) / self.info.rate_hz)
        self._put(Gap(first, index, REASON_NETWORK_LOST))

    def _reanchor_by_clock(self) -> None:
        clock = round((time.monotonic() - self._origin_monotonic) * self.info.rate_hz)
        self._gap_to(clock)

    def _lose(self, why: str) -> None:
        if not self._stop.is_set():
            log.warning("network stream %s lost: %s", self.info.name, why)
            self.network_losses += 1
            self.lost = True

    def _raw_worker(self, stop: threading.Event) -> None:
        ended = threading.Event()
        decoder = Decoder(self._ffmpeg, self.url, self.info.rate_hz, self._n_channels,
                          self._block_frames, self._on_block, ended.set)
        self._decoder = decoder
        while not stop.is_set() and not ended.wait(0.2):
            pass
        decoder.kill()
        self._lose("the connection closed")

    def _hls_worker(self, stop: threading.Event) -> None:
        decoder: Decoder | None = None
        ended = threading.Event()
        try:
            while not stop.is_set():
                try:
                    playlist = fetch_playlist(self.url)
                except SourceError as error:
                    self._lose(str(error))
                    return
                for segment in playlist.segments:
                    if stop.is_set() or segment.sequence < self._next_sequence:
                        continue
                    if segment.sequence > self._next_sequence or segment.discontinuity:
                        if decoder is not None:  # what was decoded is placed before the gap
                            decoder.finish()
                            decoder = None
                        if segment.sequence > self._next_sequence:
                            self._place(segment)
                    try:
                        data = fetch(segment.url)
                    except SourceError as error:
                        if "HTTP 404" in str(error):  # slid out: lost, the next one may not be
                            log.warning("segment %d missing: %s", segment.sequence, error)
                            continue
                        self._lose(str(error))
                        return
                    if decoder is None:
                        ended.clear()
                        decoder = Decoder(self._ffmpeg, None, self.info.rate_hz,
                                          self._n_channels, self._block_frames, self._on_block,
                                          ended.set)
                    if not decoder.write(data):
                        self._lose("ffmpeg stopped decoding")
                        return
                    self._next_sequence = segment.sequence + 1
                last = playlist.segments[-1].sequence if playlist.segments else -1
                if playlist.ended and self._next_sequence > last:
                    if decoder is not None:
                        decoder.finish()
                        decoder = None
                    with self._lock:
                        end = self._next_index
                    self._put(EndOfStream(end))
                    return
                stop.wait(max(playlist.target_seconds / 2, PLAYLIST_POLL_MIN_SECONDS))
        finally:
            if decoder is not None:
                decoder.finish()

    def _place(self, segment: Segment) -> None:
        """Segments before ``segment`` were lost: it starts after a gap, at its own date-time
        when the playlist has them, else where the clock says."""
        if segment.program_utc is not None and self.info.origin_from == "playlist":
            seconds = (segment.program_utc - self.info.origin_utc).total_seconds()
            self._gap_to(round(seconds * self.info.rate_hz))
        else:
            self._reanchor_by_clock()

    # -- the Source protocol -------------------------------------------------------------

    def read(self, timeout_seconds: float) -> list[Item]:
        if self._ended:
            return [EndOfStream(self._delivered)]
        items: list[Item] = []
        try:
            items.append(self._queue.get(timeout=max(timeout_seconds, 0.0)))
            while len(items) < 100:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        out: list[Item] = []
        for item in items:
            if isinstance(item, EndOfStream):
                self._ended = True
                out.append(EndOfStream(self._delivered))
                break
            out.append(item)
            self._delivered = item.end_sample
        return out

    def counters(self) -> LiveCounters:
        return LiveCounters()  # ffmpeg's pipe drops nothing; losses are gaps

    def reopen(self) -> None:
        """Connect again after a loss or a stall; raises SourceError while it cannot."""
        self._halt()
        if self.hls:
            fetch_playlist(self.url)
        else:
            probe(self.url)
        self.lost = False
        self._start(reanchor=True)

    def _halt(self) -> None:
        self._stop.set()
        decoder = self._decoder
        if decoder is not None:
            decoder.kill()
        if self._worker is not None:
            self._worker.join(CONNECT_TIMEOUT_SECONDS * 2)

    def close(self) -> None:
        self._halt()


def _display(url: str) -> str:
    """The URL without credentials, for logs and records."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
