"""``whaled review`` adds and corrects: boxes drawn for missed calls and for detections, the
views (context, contrast, zoom) and their pixel-to-axis mapping, and what training reads back."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_review import SCREENSHOT_ENV, serving, start_browser, wait_for, write_detections

from detector.annotations.datasets import LoadOptions, load_dataset
from detector.annotations.reviewed import read_reviewed

RATE_HZ = 2000
SECONDS = 20


def noisy_tones(path: Path) -> Path:
    """20 s at 2 kHz of faint noise: a 100 Hz tone at 2-4 s, a 300 Hz tone at 12-14 s."""
    t = np.arange(2 * RATE_HZ) / RATE_HZ
    audio = np.random.default_rng(1).standard_normal(SECONDS * RATE_HZ) * 0.05
    audio[2 * RATE_HZ:4 * RATE_HZ] += 0.5 * np.sin(2 * np.pi * 100 * t)
    audio[12 * RATE_HZ:14 * RATE_HZ] += 0.5 * np.sin(2 * np.pi * 300 * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio.astype(np.float32), RATE_HZ)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Path]:
    """A recording with an expert table that marks no call, and a detect output with one
    detection on it (2-4 s): (data folder, output folder)."""
    data = tmp_path / "data"
    recording = noisy_tones(data / "day.wav")
    (data / "day.Table.1.selections.txt").write_text(
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation\n")
    write_detections(tmp_path / "out", recording, "day.wav", [2.0])
    return data, tmp_path / "out"


def request(port: int, method: str, path: str, body: dict[str, object] | None = None
            ) -> tuple[int, dict[str, object] | bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)  # a busy machine
    connection.request(method, path, json.dumps(body) if body is not None else None,
                       {"Content-Type": "application/json"})
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    is_json = answer.getheader("Content-Type") == "application/json"
    return answer.status, json.loads(data) if is_json else data


GOOD = {"recording": "day", "channel": 1, "begin_s": 12.2, "end_s": 13.8, "low_hz": 250.0,
        "high_hz": 350.0, "note": "missed"}
BAD = [({"begin_s": 13.8, "end_s": 12.2}, "begin_s must be before end_s"),
       ({"low_hz": 350.0, "high_hz": 250.0}, "low_hz must be below high_hz"),
       ({"begin_s": "12.2"}, "begin_s must be a number, got '12.2'"),
       ({"end_s": 25.0}, "is outside the audio of day (0.000-20.000 s)"),
       ({"high_hz": 1500.0}, "above the audio's Nyquist frequency (1000 Hz)"),
       ({"channel": 2}, "no audio of day channel 2"),
       ({"recording": "night"}, "no recording 'night'"),
       ({"annotation": "maybe"}, "annotation must be one of upcall, not-upcall, unsure")]


def test_add_and_correct_write_rows_and_bad_boxes_are_400(folder: tuple[Path, Path]) -> None:
    data, out = folder
    server = serving(out)
    port = server.server_address[1]
    table = out / "review" / "day.reviewed.selections.txt"
    try:
        for change, message in BAD:
            status, answer = request(port, "POST", "/api/add", {**GOOD, **change})
            assert (status, message in str(answer)) == (400, True), answer
        assert not table.exists()
        status, answer = request(port, "POST", "/api/add", GOOD)
        assert status == 200, answer
        status, answer = request(port, "POST", "/api/correct", {
            **GOOD, "number": 0, "start_seconds": 2.0, "end_seconds": 4.0, "begin_s": 2.1,
            "end_s": 3.9, "low_hz": 80.0, "high_hz": 125.0, "note": ""})
        assert status == 200 and answer["box"] == {  # type: ignore[index]
            "channel": 1, "begin_s": 2.1, "end_s": 3.9, "low_hz": 80.0, "high_hz": 125.0,
            "annotation": "upcall", "note": "", "reviewer": "tester"}
        status, answer = request(port, "POST", "/api/correct", {
            **GOOD, "number": 0, "start_seconds": 5.0, "end_seconds": 7.0})
        assert status == 409  # the page knew another detection under that number
        status, state = request(port, "GET", "/api/state")
        assert state["added"] == [{"recording": "day", "channel": 1, "begin_s": 12.2,  # type: ignore[index]
                                   "end_s": 13.8, "low_hz": 250.0, "high_hz": 350.0,
                                   "annotation": "upcall", "note": "missed",
                                   "reviewer": "tester"}]
        assert state["items"][0]["box"]["begin_s"] == 2.1  # type: ignore[index]
    finally:
        server.shutdown()
        server.server_close()
    rows = read_reviewed(table)
    assert [(r.interval, r.low_hz, r.high_hz, r.annotation, r.replaces) for r in rows] == [
        ((2.1, 3.9), 80.0, 125.0, "upcall", (2.0, 4.0)),
        ((12.2, 13.8), 250.0, 350.0, "upcall", None)]
    dataset = load_dataset(data, LoadOptions(reviewed_dirs=(out / "review",)))
    calls = sorted((round(e.start_seconds + e.call_samples[0] / 2000, 3),
                    round(e.start_seconds + e.call_samples[1] / 2000, 3))
                   for e in dataset.train if e.label == 1 and e.call_samples)
    assert calls == [(2.1, 3.9), (12.2, 13.8)]  # both positives, the detection once


def tone_row_px(png: bytes, column_px: int, rows: tuple[int, int]) -> int:
    """The brightest row (the tone's line) of one pixel column of a spectrogram PNG, between
    ``rows`` (the plot area: the page around it is white)."""
    from matplotlib.image import imread

    image = imread(io.BytesIO(png), format="png")
    column = image[rows[0] + 2:rows[1] - 2, column_px, :3].sum(axis=1)
    return rows[0] + 2 + int(np.argmax(column))


def test_a_view_reports_where_its_axes_are_and_bad_views_are_400(
        folder: tuple[Path, Path]) -> None:
    _, out = folder
    server = serving(out)
    port = server.server_address[1]
    try:
        status, geo = request(port, "GET", "/api/view/0?context=10&range=30&top=500")
        assert status == 200 and isinstance(geo, dict)
        assert (geo["seconds"], geo["hz"], geo["image_px"]) == ([0.0, 14.0], [0.0, 500.0],
                                                                [960, 360])
        status, png = request(port, "GET", str(geo["png"]))
        assert status == 200 and isinstance(png, bytes)
        left, top, right, bottom = geo["axes_px"]  # type: ignore[misc]
        at_13_s = round(left + 13.0 / 14.0 * (right - left))
        expected_300_hz = top + (1 - 300 / 500) * (bottom - top)
        bin_px = RATE_HZ / 256 / 500 * (bottom - top)  # one STFT bin (7.8 Hz) in pixels
        row_300_hz = tone_row_px(png, at_13_s, (top, bottom))
        assert abs(row_300_hz - expected_300_hz) <= bin_px + 1
        at_3_s = round(left + 3.0 / 14.0 * (right - left))
        expected_100_hz = top + (1 - 100 / 500) * (bottom - top)
        assert abs(tone_row_px(png, at_3_s, (top, bottom)) - expected_100_hz) <= bin_px + 1
        from matplotlib.image import imread

        line = imread(io.BytesIO(png), format="png")[row_300_hz, left:right, :3].sum(axis=1)
        onset_px = left + int(np.argmax(line > (line.max() + np.median(line)) / 2))
        assert abs(onset_px - (left + 12.0 / 14.0 * (right - left))) <= 5  # the tone's start
        status, zoomed = request(port, "GET", "/api/view/0?top=5000")
        assert zoomed["hz"] == [0.0, 1000.0]  # type: ignore[index]  # Nyquist of 2 kHz audio
        for query, message in (("context=abc", "context must be a number of s"),
                               ("top=10", "top must be 60-24000 Hz"),
                               ("range=200", "range must be 6-90 dB")):
            status, answer = request(port, "GET", f"/api/view/0?{query}")
            assert (status, message in str(answer)) == (400, True), answer
        assert request(port, "GET", "/api/view/7")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_box_drawn_in_chromium_is_a_positive_that_training_reads(
        folder: tuple[Path, Path], tmp_path: Path) -> None:
    """Headless Chromium: widen the context (c), drag a box over the 300 Hz call at 12-14 s
    and press a; drag a tighter box over the detection's 100 Hz call and press b. The table
    holds both within a pixel of the drag, and training takes both as positives."""
    from selenium.webdriver.common.action_chains import ActionChains

    data, out = folder
    driver: object = start_browser()
    server = serving(out)
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")  # type: ignore[attr-defined]
        wait_for(lambda: driver.execute_script(  # type: ignore[attr-defined]
            "const i = document.getElementById('spectrogram');"
            "return i.complete && i.naturalWidth && typeof geo !== 'undefined' && geo;"),
            "the page's first view")  # a key pressed before the page is ready is lost
        ActionChains(driver).send_keys("c").perform()  # 10 s either side: 0-14 s
        geo = wait_for(lambda: driver.execute_script(  # type: ignore[attr-defined]
            "const i = document.getElementById('spectrogram');"
            "return i.complete && i.naturalWidth && i.src.includes('context=10') && geo;"),
            "the 10-s view")
        image = driver.find_element("id", "spectrogram")  # type: ignore[attr-defined]
        scale = image.size["width"] / 960

        def drag(box: tuple[float, float, float, float], key: str) -> None:
            left, top, right, bottom = geo["axes_px"]  # type: ignore[index]
            (s0, s1), (_, h1) = geo["seconds"], geo["hz"]  # type: ignore[index]
            x = [left + (s - s0) / (s1 - s0) * (right - left) for s in box[:2]]
            y = [top + (1 - f / h1) * (bottom - top) for f in box[2:]]
            at = [(px * scale - image.size["width"] / 2, py * scale - image.size["height"] / 2)
                  for px, py in ((x[0], y[1]), (x[1], y[0]))]  # top left, bottom right
            ActionChains(driver).move_to_element_with_offset(image, *map(round, at[0])) \
                .click_and_hold().move_to_element_with_offset(image, *map(round, at[1])) \
                .release().send_keys(key).perform()

        drag((12.2, 13.8, 250.0, 350.0), "a")
        wait_for(lambda: "saved added missed call" in driver.find_element(  # type: ignore[attr-defined]
            "id", "status").text, "the added call saved")
        drag((2.1, 3.9, 70.0, 130.0), "b")
        wait_for(lambda: "saved corrected box" in driver.find_element(  # type: ignore[attr-defined]
            "id", "status").text, "the corrected box saved")
        boxes = driver.find_elements("css selector", "#boxes .box")  # type: ignore[attr-defined]
        assert sorted(b.get_attribute("class") for b in boxes) == ["box added", "box fixed"]
        assert driver.find_element("id", "verdict").text == "upcall"  # type: ignore[attr-defined]
        driver.save_screenshot(str(tmp_path / "boxes.png"))  # type: ignore[attr-defined]
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copy(tmp_path / "boxes.png", os.environ[SCREENSHOT_ENV])
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
        assert errors == []
    finally:
        driver.quit()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
    seconds_per_px = 14.0 / (geo["axes_px"][2] - geo["axes_px"][0]) / scale  # type: ignore[index]
    hz_per_px = 500.0 / (geo["axes_px"][3] - geo["axes_px"][1]) / scale  # type: ignore[index]
    rows = read_reviewed(out / "review" / "day.reviewed.selections.txt")
    assert [(r.annotation, r.reviewer, r.channel, r.replaces) for r in rows] == [
        ("upcall", "tester", 1, (2.0, 4.0)), ("upcall", "tester", 1, None)]
    for row, box in zip(rows, [(2.1, 3.9, 70.0, 130.0), (12.2, 13.8, 250.0, 350.0)],
                        strict=True):
        got = (row.begin_seconds, row.end_seconds, row.low_hz, row.high_hz)
        tolerance = [2 * seconds_per_px] * 2 + [2 * hz_per_px] * 2
        assert all(abs(g - b) <= t for g, b, t in zip(got, box, tolerance, strict=True)), got
    dataset = load_dataset(data, LoadOptions(reviewed_dirs=(out / "review",)))
    positives = [e for e in dataset.train if e.label == 1 and e.call_samples]
    centres = sorted(e.start_seconds + sum(e.call_samples) / 2 / 2000  # type: ignore[arg-type]
                     for e in positives)
    assert centres == [pytest.approx(3.0, abs=0.05), pytest.approx(13.0, abs=0.05)]


def test_verdicts_on_evidence_clips_make_negatives_for_training(tmp_path: Path) -> None:
    """A listen output's evidence/ holds only upcall/ clips: training on it used to stop at
    "only positive examples". Reviewed, a not-upcall clip is a negative centred on the false
    alarm, an unsure one is left out, an upcall one stays a positive."""
    from detector.annotations.layouts import DatasetError
    from detector.review.server import ReviewState

    out = tmp_path / "out"
    clips = out / "evidence" / "upcall"
    clips.mkdir(parents=True)
    rows = []
    for start in (20.0, 40.0, 60.0):  # each clip: 5 s before the detection to 5 s after
        utc = lambda s: f"2026-01-02T03:{int(s) // 60:02d}:{s % 60:06.3f}Z"  # noqa: E731
        detection = {"type": "detection", "label": "upcall", "channel": 1,
                     "source": "file:site_20260102_030000.wav", "start_seconds": start,
                     "end_seconds": start + 2, "start_utc": utc(start),
                     "end_utc": utc(start + 2), "peak_utc": utc(start + 1), "peak_score": 0.9}
        rows.append(detection)
        stem = clips / f"{utc(start + 1)}_ch1"
        soundfile.write(stem.with_suffix(".wav"), np.random.default_rng(int(start))
                        .standard_normal(12 * RATE_HZ).astype(np.float32) * 0.1, RATE_HZ)
        stem.with_suffix(".json").write_text(json.dumps(
            {**detection, "clip_start_utc": utc(start - 5)}))
    (out / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match="only positive examples"):
        load_dataset(out / "evidence")
    state = ReviewState(out, [], "tester")
    for number, annotation in enumerate(("upcall", "not-upcall", "unsure")):
        item = state.item(number)
        state.save(number, (item.recording, 1, item.start_seconds, item.end_seconds),
                   annotation, "")
    dataset = load_dataset(out / "evidence")
    examples = dataset.train + dataset.validation
    assert sorted((e.label, Path(e.source).name[17:19]) for e in examples) == [
        (0, "41"), (1, "21")]  # 03:00:41 the false alarm, 03:00:21 the call; 03:01:01 out
    negative = next(e for e in examples if e.label == 0)
    window = len(negative.audio) / RATE_HZ
    assert negative.start_seconds + window / 2 == pytest.approx(6.0, abs=0.01)  # its centre
    assert "1 upcall, 1 not-upcall (negatives), 1 unsure (left out)" in dataset.split
