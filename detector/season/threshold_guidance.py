"""Threshold guidance for one deployment: precision per score bin, from a reviewed sample.

``whaled detect --evidence N`` draws, per recording, its N best detections and N more at
random from the rest, and notes the draw in ``OUT/evidence_sample.jsonl``
(:mod:`detector.archive.evidence_sample`). Once an analyst has given verdicts on them (``whaled
review``), each reviewed detection of the draw stands for the detections of its stratum (the
recording's top N, or the rest of it) that it was drawn from: weight = the stratum's
detections / its reviewed ones. So the estimate counts every recording in proportion to its
detections, not its sample, and reviews made outside the draw (browsing the best ones) are
left out: they are not a random sample.

Per peak-score bin of :data:`BIN_WIDTH`, and for every threshold at a bin's lower edge
(the detections at or above it): the weighted share of ``upcall`` among ``upcall`` and
``not-upcall`` (``unsure`` is counted apart), with a 95 % Wilson interval on the effective
sample size. Fewer than :data:`MIN_REVIEWS` decided reviews: no estimate ("too few"). The
guided threshold is the lowest edge whose detections at or above reach the target precision.

This is precision over *detections only*: the sample is drawn from what the scan detected at
its own on-threshold, so it says nothing about calls never detected (recall) nor about
thresholds below the scan's. A detection's peak score decides whether it survives a higher
on-threshold (``whaled events --on-threshold T``); its boundaries there may differ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.annotations.reviewed import NOT_UPCALL, UNSURE, UPCALL
from detector.archive.evidence_sample import SAMPLE_NAME
from detector.review.items import Item
from detector.season.presence import Result, json_lines, write_csv
from detector.season.validated import UNREVIEWED, Verdicts

GUIDANCE_CSV_NAME = "threshold_guidance.csv"
GUIDANCE_JSON_NAME = "threshold_guidance.json"
DEFAULT_TARGET_PRECISION = 0.9
BIN_WIDTH = 0.05  # of peak score
MIN_REVIEWS = 5  # decided (upcall or not-upcall) reviews for an estimate
Z_95 = 1.959964  # two-sided 95 % normal quantile
DECIMALS = 3
CSV_COLUMNS = ("score_from", "score_to", "detections", "reviewed", "upcall", "not_upcall",
               "unsure", "precision", "precision_low", "precision_high",
               "detections_at_or_above", "reviewed_at_or_above", "precision_at_or_above",
               "precision_at_or_above_low", "precision_at_or_above_high")


@dataclass(frozen=True)
class Reviewed:
    """One reviewed detection of the draw."""

    score: float  # peak score
    verdict: str  # upcall, not-upcall or unsure
    weight: float  # detections of its stratum it stands for


@dataclass(frozen=True)
class Sample:
    reviewed: tuple[Reviewed, ...]
    recordings: int  # with a current draw
    drawn: int
    stale: int  # draws whose recording was scanned again since: left out


@dataclass(frozen=True)
class Estimate:
    reviewed: int
    upcall: int
    not_upcall: int
    unsure: int
    precision: float | None  # None: fewer than MIN_REVIEWS decided
    low: float | None
    high: float | None


@dataclass(frozen=True)
class ScoreBin:
    score_from: float
    score_to: float
    detections: int
    own: Estimate  # the detections in the bin
    detections_at_or_above: int
    at_or_above: Estimate  # every detection scoring score_from or more


@dataclass(frozen=True)
class Guidance:
    target: float
    sample: Sample
    bins: tuple[ScoreBin, ...]
    threshold: ScoreBin | None  # the lowest bin whose at-or-above precision meets the target
    detections: int


def latest_draws(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Resolved recording path -> its latest line of ``evidence_sample.jsonl``."""
    return {str(doc["path"]): doc for doc in json_lines(out_dir / SAMPLE_NAME)
            if doc.get("path")}


def read_sample(draws: dict[str, dict[str, Any]], results: Sequence[Result],
                verdicts: Verdicts) -> Sample:
    """The reviewed detections of the current draws, weighted by their strata."""
    reviewed: list[Reviewed] = []
    recordings = drawn = stale = 0
    for r in results:
        doc = draws.get(str(r.doc.get("path") or ""))
        if doc is None:
            continue
        by_key = {Item.key_of(int(d["channel"]), float(d["start_seconds"]),
                              float(d["end_seconds"])): d for d in r.detections}
        strata = [[by_key.get(Item.key_of(int(c), float(b), float(e)))
                   for c, b, e in doc.get(part) or []] for part in ("top", "random")]
        models = {d.get("model") for d in r.detections}
        if int(doc.get("detections", -1)) != len(r.detections) or any(
                d is None for stratum in strata for d in stratum) or (
                doc.get("model") and models != {doc["model"]}):
            stale += 1
            continue
        recordings += 1
        top = len(strata[0])
        for stratum, population in zip(strata, (top, len(r.detections) - top), strict=True):
            drawn += len(stratum)
            judged = [(d, verdicts.of(r, d)) for d in stratum if d is not None]
            judged = [(d, v) for d, v in judged if v != UNREVIEWED]
            reviewed += [Reviewed(float(d["peak_score"]), v, population / len(judged))
                         for d, v in judged]
    return Sample(tuple(reviewed), recordings, drawn, stale)


def estimate(items: Sequence[Reviewed]) -> Estimate:
    decided = [x for x in items if x.verdict in (UPCALL, NOT_UPCALL)]
    upcall, not_upcall, unsure = (sum(x.verdict == v for x in items)
                                  for v in (UPCALL, NOT_UPCALL, UNSURE))
    if len(decided) < MIN_REVIEWS:
        return Estimate(len(items), upcall, not_upcall, unsure, None, None, None)
    weight = sum(x.weight for x in decided)
    p = sum(x.weight for x in decided if x.verdict == UPCALL) / weight
    n = weight ** 2 / sum(x.weight ** 2 for x in decided)  # Kish's effective sample size
    low, high = wilson(p, n)
    return Estimate(len(items), upcall, not_upcall, unsure, round(p, DECIMALS), low, high)


def wilson(p: float, n: float) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``p`` over ``n`` trials."""
    z2 = Z_95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return round(max(0.0, centre - half), DECIMALS), round(min(1.0, centre + half), DECIMALS)


def bin_of(score: float) -> int:
    """Bin k holds scores in [k, k + 1) * BIN_WIDTH; a score of 1 is in the top bin."""
    top = round(1 / BIN_WIDTH) - 1
    return min(max(0, math.floor(score / BIN_WIDTH + 1e-9)), top)


def guidance(results: Sequence[Result], sample: Sample,
             target: float = DEFAULT_TARGET_PRECISION) -> Guidance:
    scores = [float(d["peak_score"]) for r in results for d in r.detections
              if d.get("peak_score") is not None]
    bins: list[ScoreBin] = []
    for k in sorted({bin_of(s) for s in scores}):
        inside = [x for x in sample.reviewed if bin_of(x.score) == k]
        above = [x for x in sample.reviewed if bin_of(x.score) >= k]
        bins.append(ScoreBin(round(k * BIN_WIDTH, DECIMALS), round((k + 1) * BIN_WIDTH,
                                                                   DECIMALS),
                             sum(bin_of(s) == k for s in scores), estimate(inside),
                             sum(bin_of(s) >= k for s in scores), estimate(above)))
    meets = [b for b in bins if b.at_or_above.precision is not None
             and b.at_or_above.precision >= target]
    return Guidance(target, sample, tuple(bins), meets[0] if meets else None, len(scores))


def blank(value: float | None) -> object:
    return "" if value is None else value


def csv_rows(g: Guidance) -> list[tuple[object, ...]]:
    return [(b.score_from, b.score_to, b.detections, b.own.reviewed, b.own.upcall,
             b.own.not_upcall, b.own.unsure, blank(b.own.precision), blank(b.own.low),
             blank(b.own.high), b.detections_at_or_above, b.at_or_above.reviewed,
             blank(b.at_or_above.precision), blank(b.at_or_above.low),
             blank(b.at_or_above.high)) for b in g.bins]


def write_guidance(out_dir: Path, g: Guidance) -> None:
    write_csv(out_dir / GUIDANCE_CSV_NAME, CSV_COLUMNS, csv_rows(g))
    chosen = g.threshold
    doc = {"target_precision": g.target,
           "threshold": chosen.score_from if chosen else None,
           "precision": chosen.at_or_above.precision if chosen else None,
           "precision_low": chosen.at_or_above.low if chosen else None,
           "precision_high": chosen.at_or_above.high if chosen else None,
           "detections_kept": chosen.detections_at_or_above if chosen else None,
           "detections": g.detections,
           "sample": {"recordings": g.sample.recordings, "drawn": g.sample.drawn,
                      "reviewed": len(g.sample.reviewed), "stale_draws": g.sample.stale},
           "bin_width": BIN_WIDTH, "min_reviews": MIN_REVIEWS,
           "note": "precision over detections only (peak score at or above the scan's "
                   "on-threshold), estimated from the reviewed part of the detect --evidence "
                   "draw, each review weighted by the detections of its recording's top or "
                   "random stratum; no estimate where fewer than min_reviews were decided",
           "bins": [dict(zip(CSV_COLUMNS, row, strict=True)) for row in csv_rows(g)]}
    staged = out_dir / (GUIDANCE_JSON_NAME + ".tmp")
    staged.write_text(json.dumps(doc, indent=1) + "\n")
    staged.replace(out_dir / GUIDANCE_JSON_NAME)


def interval(e: Estimate) -> str:
    if e.precision is None:
        return "too few" if e.reviewed else "-"
    return f"{e.precision:.2f} ({e.low:.2f}-{e.high:.2f})"


def guidance_lines(g: Guidance) -> list[str]:
    """The table and the guided threshold, for the terminal."""
    s = g.sample
    reviewed = len(s.reviewed)
    lines = [f"threshold guidance: precision over detections only, from {reviewed} reviewed "
             f"of {s.drawn} drawn (detect --evidence) in {s.recordings} recording(s)"
             + (f"; {s.stale} draw(s) of recordings scanned again since left out"
                if s.stale else "")]
    if not reviewed:
        return [*lines, "threshold guidance: no detection of the draw has a verdict yet "
                "(whaled review OUT, then whaled presence OUT)"]
    lines.append(f"{'score':<11} {'detections':>10} {'reviewed':>8} {'upcall':>6} {'not':>4} "
                 f"{'unsure':>6}  {'precision (95% CI)':<19} {'>= score: detections':>20}  "
                 "precision (95% CI)")
    for b in g.bins:
        e = b.own
        lines.append(f"{b.score_from:.2f}-{b.score_to:.2f}  {b.detections:>10} {e.reviewed:>8} "
                     f"{e.upcall:>6} {e.not_upcall:>4} {e.unsure:>6}  {interval(e):<19} "
                     f"{b.detections_at_or_above:>20}  {interval(b.at_or_above)}")
    if g.threshold is None:
        known = [b for b in g.bins if b.at_or_above.precision is not None]
        best = max(known, key=lambda b: b.at_or_above.precision or 0.0, default=None)
        lines.append(f"threshold guidance: no threshold reaches an estimated precision of "
                     f"{g.target:g} with at least {MIN_REVIEWS} decided reviews above it"
                     + (f"; the highest is {interval(best.at_or_above)} at "
                        f">= {best.score_from:g}" if best else ""))
    else:
        t = g.threshold
        lines.append(f"threshold guidance: lowest threshold with estimated precision >= "
                     f"{g.target:g}: {t.score_from:g} (precision {interval(t.at_or_above)}, "
                     f"keeps {t.detections_at_or_above} of {g.detections} detections); redo "
                     f"with whaled events --on-threshold {t.score_from:g} (needs detect "
                     "--save-scores) or whaled detect --on-threshold")
    return lines
