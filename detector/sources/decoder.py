"""The ffmpeg child process that decodes network audio: compressed audio in (a URL, or bytes
written to its stdin), 32-bit float PCM out through a pipe, cut into blocks by a reader
thread; and ffprobe, which says a stream's rate and channels before it is opened.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable

import numpy as np

from detector.sources.playlist import CONNECT_TIMEOUT_SECONDS
from detector.sources.replay import SourceError

log = logging.getLogger("whaled.netstream")
PROBE_TIMEOUT_SECONDS = 20.0  # ffprobe as a whole


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
