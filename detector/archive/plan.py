"""Which recordings a ``whaled detect`` run scans: found under its arguments, this shard's.

``--shard K/N`` keeps the recordings whose name (the path below the argument it was found
under) hashes to K: a deterministic partition, so N shards on N machines cover every
recording exactly once. Everything here is checked before a model is loaded.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from detector.archive.outputs import DetectError, table_name
from detector.core.config import Settings
from detector.core.progress import counted
from detector.sources.formats import readable_suffixes, skipped_audio

UNDECODABLE_SHOWN = 3  # audio files named in the line about those a folder scan passed by


@dataclass(frozen=True)
class Recording:
    path: Path
    key: str  # the path below the argument it was found under: stable across machines

    @property
    def audio_seconds(self) -> float:
        import soundfile

        try:
            info = soundfile.info(str(self.path))
            return float(info.frames / info.samplerate)
        except (RuntimeError, OSError, soundfile.LibsndfileError):
            return 0.0


@dataclass(frozen=True)
class Plan:
    """This shard's recordings, found and checked before anything is loaded."""

    recordings: tuple[Recording, ...]
    missing: tuple[tuple[str, str], ...]  # (argument, why)
    undecodable: tuple[str, ...] = ()  # audio files in the folders that no decoder here reads


def find_recordings(inputs: Iterable[Path]) -> tuple[list[Recording], list[tuple[str, str]],
                                                    list[str]]:
    """Recordings named or found under folders, sorted; (path, why) for missing ones; audio
    files in the folders whose format no decoder here reads."""
    found: list[Recording] = []
    missing: list[tuple[str, str]] = []
    undecodable: list[str] = []
    readable = readable_suffixes()
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file())
            for path in files:
                if path.suffix.lower() in readable:
                    found.append(Recording(path, path.relative_to(given).as_posix()))
                elif skipped_audio(path, readable):
                    undecodable.append(str(path))
        elif given.is_file():
            found.append(Recording(given, given.name))
        else:
            missing.append((str(given), "not found"))
    return found, missing, undecodable


def undecodable_line(paths: Sequence[str]) -> str:
    """One line naming the audio files a folder scan passed by, or "" when none."""
    if not paths:
        return ""
    shown = ", ".join(paths[:UNDECODABLE_SHOWN])
    more = f" and {len(paths) - UNDECODABLE_SHOWN} more" if len(paths) > UNDECODABLE_SHOWN \
        else ""
    return (f"warning: {counted(len(paths), 'audio file')} skipped: no decoder here reads their "
            "format "
            f"(whaled reads {' '.join(readable_suffixes())}): {shown}{more}")


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 0 <= K < N (Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise DetectError(f"--shard {text!r} is not K/N") from None
    if not (n >= 1 and 0 <= k < n):
        raise DetectError(f"--shard {text!r}: need 0 <= K < N")
    return k, n


def in_shard(recording: Recording, k: int, n: int) -> bool:
    return zlib.crc32(recording.key.encode()) % n == k


def plan(inputs: Iterable[Path], settings: Settings, shard: tuple[int, int] = (0, 1)) -> Plan:
    """The recordings to scan; DetectError when the run cannot make sense of them."""
    inputs = list(inputs)
    found, missing, undecodable = find_recordings(inputs)
    if not found:  # a typo or an empty folder: nothing would be scanned, say so at once
        if missing:
            raise DetectError(f"{missing[0][0]}: not found")
        skipped = f"; {undecodable_line(undecodable).removeprefix('warning: ')}" \
            if undecodable else ""
        raise DetectError(f"no recordings ({' '.join(readable_suffixes())}) in "
                          f"{', '.join(str(p) for p in inputs)}{skipped}")
    recordings = tuple(r for r in found if in_shard(r, *shard))
    if settings.origin_utc and len(found) + len(missing) > 1:
        raise DetectError(f"--origin is the start of one recording, but {len(found)} were "
                          "found: name their starts with --timestamp-pattern")
    tables = Counter(table_name(r.key) for r in found)
    for name, n in tables.items():
        if n > 1:
            clash = [str(r.path) for r in found if table_name(r.key) == name]
            raise DetectError(f"two recordings would share the table {name} ("
                              f"{' and '.join(clash[:2])}): give their common parent folder")
    return Plan(recordings, tuple(missing), tuple(undecodable))
