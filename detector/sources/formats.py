"""Which audio files whaled decodes, and the native decoders' stderr kept off the process's.

Every file is read by libsndfile (through soundfile). WAV, FLAC and AIFF always; MP3 and
Ogg (Vorbis, Opus) where the installed libsndfile decodes them (1.1 and later: the wheels'
1.2 does), checked when a folder is scanned, never at import. A file with another audio
suffix (``.m4a``, ``.wma`` ...) is none of these: a folder scan names it as skipped instead
of passing it by without a word.

libmpg123, inside libsndfile, writes lines such as ``[src/libmpg123/layer3.c:...] error:
part2_3_length (1056) too large for available bit count (1048)`` straight to file descriptor
2 when it conceals a damaged frame. :func:`native_stderr_to_log` catches fd 2 around a call,
logs those lines at debug level and passes anything else written in that moment (another
thread's log line) through to the real stderr unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("whaled.decode")
# suffix -> the libsndfile major format that decodes it, where this libsndfile has it
COMPRESSED_SUFFIXES = {".mp3": "MP3", ".ogg": "OGG", ".oga": "OGG", ".opus": "OGG"}
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".aifc")  # what libsndfile decodes
OTHER_AUDIO_SUFFIXES = (".m4a", ".aac", ".mp4", ".wma", ".amr", ".ape", ".wv", ".mka",
                        ".caf", ".au", ".w64", ".rf64")  # audio, but not scanned by name
NATIVE_LINE_PREFIXES = ("[src/libmpg123", "Note: Illegal Audio-MPEG-Header", "Note: Trying to "
                        "resync", "Note: Skipped ", "Warning: Encountered more data")  # mpg123
_stderr_lock = threading.Lock()  # fd 2 is the process's: one catcher at a time


def readable_suffixes() -> tuple[str, ...]:
    """The suffixes a folder scan takes: WAV, FLAC, AIFF, and MP3/Ogg where decoded here."""
    import soundfile

    formats = soundfile.available_formats()
    return AUDIO_SUFFIXES + tuple(s for s, f in COMPRESSED_SUFFIXES.items() if f in formats)


def skipped_audio(path: Path, readable: tuple[str, ...]) -> bool:
    """An audio file by its suffix that a folder scan does not take."""
    suffix = path.suffix.lower()
    return suffix not in readable and (suffix in COMPRESSED_SUFFIXES
                                       or suffix in OTHER_AUDIO_SUFFIXES)


def native_stderr_guard(path: Path) -> contextlib.AbstractContextManager[None]:
    """:func:`native_stderr_to_log` for an MP3 (libmpg123 prints); nothing for the rest."""
    if Path(path).suffix.lower() == ".mp3":
        return native_stderr_to_log(path)
    return contextlib.nullcontext()


@contextlib.contextmanager
def native_stderr_to_log(path: Path) -> Iterator[None]:
    """Around a libsndfile call on ``path``: the decoder's own stderr lines to the debug log."""
    with _stderr_lock:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(ValueError, OSError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                caught.seek(0)
                text = caught.read().decode(errors="replace")
    passed = []
    for line in text.splitlines(keepends=True):
        if line.startswith(NATIVE_LINE_PREFIXES):
            log.debug("%s: decoder: %s", path, line.rstrip())
        else:
            passed.append(line)
    if passed:
        os.write(2, "".join(passed).encode())
