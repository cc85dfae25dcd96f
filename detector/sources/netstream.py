"""Networked hydrophones: HLS playlists, Icecast or raw HTTP audio and RTSP, decoded by ffmpeg.

ffmpeg (:mod:`detector.sources.decoder`) runs as a subprocess writing 32-bit float PCM to a pipe, at
the stream's own rate and channel count (the pipeline resamples as for a sound card); HLS
playlists are read by :mod:`detector.sources.playlist`. Start-up checks everything before
the first block: ffmpeg is installed, the URL answers, a playlist is found, the stream is audio;
each failure is one :class:`SourceError` line.

Time: for HLS, the program date-time of the first segment taken (``EXT-X-PROGRAM-DATE-TIME``,
in UTC, a date-time without a zone taken as UTC; ``origin_from = "playlist"``) and, after lost
segments, the next segment's own date-time; without date-times, and for other streams, the
arrival clock with the sample count, as for a sound card. Segments that slid out of the
playlist before they were fetched, a dropped or stalled connection and the reconnect after it
are :class:`Gap` records, reason
``network_lost``; the daemon's :class:`~detector.sources.reopen.Reconnector` retries with backoff
through ``lost`` and :meth:`NetworkSource.reopen`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.parse
from collections.abc import Sequence

import numpy as np

from detector.sources.decoder import Decoder, ffmpeg_path, probe
from detector.sources.playlist import (
    CONNECT_TIMEOUT_SECONDS,
    Segment,
    fetch,
    fetch_playlist,
    is_hls,
)
from detector.sources.reopen import LiveCounters
from detector.sources.replay import SourceError, select_channels
from detector.stream.blocks import (
    Block,
    EndOfStream,
    Gap,
    Item,
    StreamInfo,
    frames_per_block,
    utc_now,
)

log = logging.getLogger("whaled.netstream")
REASON_NETWORK_LOST = "network_lost"
NETWORK_SCHEMES = ("http://", "https://", "rtsp://", "rtsps://")
LIVE_START_SEGMENTS = 3  # a live playlist is joined this many segments from its end
PLAYLIST_POLL_MIN_SECONDS = 0.2
QUEUE_BLOCKS = 3000  # decoded blocks waiting for the pipeline (minutes of audio)


def is_network_url(device: str) -> bool:
    return device.lower().startswith(NETWORK_SCHEMES)


class NetworkSource:
    """A network stream as a :class:`~detector.sources.reopen.LiveSource`; ``lost`` from a drop
    until
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
        self._block_frames = frames_per_block(block_seconds, rate)
        self._queue: queue.Queue[Item] = queue.Queue(QUEUE_BLOCKS)
        self._lock = threading.Lock()
        self._next_index = 0  # where the next decoded sample goes
        self._origin_monotonic = time.monotonic()
        self._delivered = 0
        self._ended = False
        self._stop = threading.Event()
        self.lost = False
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
