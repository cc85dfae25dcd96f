"""Which recordings a ``whaled detect`` run scans: found under its arguments, this shard's.

``--shard K/N`` keeps the recordings whose name (the path below the argument it was found
under) hashes to K: a deterministic partition, so N shards on N machines cover every
recording exactly once. Everything here is checked before a model is loaded.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from detector.archive_output import DetectError, table_name
from detector.config import Settings
from detector.sources import AUDIO_SUFFIXES


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


def find_recordings(inputs: Iterable[Path]) -> tuple[list[Recording], list[tuple[str, str]]]:
    """Recordings named or found under folders, sorted; plus (path, why) for missing ones."""
    found: list[Recording] = []
    missing: list[tuple[str, str]] = []
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            for path in sorted(p for p in given.rglob("*") if p.is_file()
                               and p.suffix.lower() in AUDIO_SUFFIXES):
                found.append(Recording(path, path.relative_to(given).as_posix()))
        elif given.is_file():
            found.append(Recording(given, given.name))
        else:
            missing.append((str(given), "not found"))
    return found, missing


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
    found, missing = find_recordings(inputs)
    if not found:  # a typo or an empty folder: nothing would be scanned, say so at once
        if missing:
            raise DetectError(f"{missing[0][0]}: not found")
        raise DetectError(f"no recordings ({' '.join(AUDIO_SUFFIXES)}) in "
                          f"{', '.join(str(p) for p in inputs)}")
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
    return Plan(recordings, tuple(missing))
