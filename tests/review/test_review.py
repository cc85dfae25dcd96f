"""``whaled review`` in a real browser (headless Chromium through Selenium) over a real
``whaled detect`` output, plus its start-up errors and its audio lookup."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import DCLDE_WAV, WHALED, require_shared_data
from real import missing

from detector.annotations.reviewed import read_reviewed
from detector.review.items import AudioRef, load_items

SPAN_SECONDS = 300  # of the real recording: enough for several detections, quick to scan
NOTE = "faint; ship noise at 80 Hz"
SCREENSHOT_ENV = "WHALED_REVIEW_SCREENSHOT"  # where to copy the page's screenshot (docs/)


def detections(out: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    return [d for d in lines if d["type"] == "detection"]


@pytest.fixture(scope="module")
def span(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 300 s of the DCLDE 2013 recording, under the same name (so the same start)."""
    require_shared_data()
    audio, rate = soundfile.read(DCLDE_WAV, frames=SPAN_SECONDS * 2000, dtype="int16")
    path = tmp_path_factory.mktemp("audio") / DCLDE_WAV.name
    soundfile.write(path, audio, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def detect_output(tmp_path_factory: pytest.TempPathFactory, span: Path) -> Path:
    """``whaled detect`` over the 300-s span of the real recording."""
    out = tmp_path_factory.mktemp("review") / "out"
    run = subprocess.run([*WHALED, "detect", str(span), "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert len(detections(out)) >= 4, run.stderr
    return out


def start_review(out: Path, log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """The server on a free port, its stderr in ``log``; returns it and the page's URL."""
    with log.open("wb") as stderr:
        server = subprocess.Popen([*WHALED, "review", str(out), "--port", "0", "--reviewer",
                                   "tester", *args], stderr=stderr)
    found = wait_for(lambda: server.poll() is None and re.search(
        r"open (http://127\.0\.0\.1:\d+/)", log.read_text()), "the server to start", 60)
    return server, found.group(1)  # type: ignore[attr-defined]


def start_browser(width_px: int = 1440) -> object:
    """Headless Chromium through Selenium, its window ``width_px`` wide."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        missing("selenium not installed (the dev extra has it)")
    if not chromium or not driver_path:
        missing("chromium and chromedriver not installed (scripts/setup installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to fail on JS errors
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 f"--window-size={width_px},900", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_script_timeout(60)  # a spectrogram or WAV on a busy 2-core machine
    return driver


@pytest.fixture
def browser() -> Iterator[object]:
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()  # type: ignore[attr-defined]


def wait_for(condition: Callable[[], object], what: str, seconds: float = 60.0) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_review_three_detections_with_the_keyboard(detect_output: Path, browser: object,
                                                   tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    driver: object = browser
    found = sorted(detections(detect_output), key=lambda d: str(d["start_utc"]))
    total = len(found)
    server, url = start_review(detect_output, tmp_path / "review.log")
    try:
        driver.get(url)  # type: ignore[attr-defined]
        progress = lambda: driver.find_element(By.ID, "progress").text  # type: ignore[attr-defined]  # noqa: E731
        wait_for(lambda: progress() == f"0 of {total} reviewed", "the detections to load")
        width = wait_for(lambda: driver.execute_script(  # type: ignore[attr-defined]
            "const i = document.getElementById('spectrogram');"
            "return i.complete && i.naturalWidth;"), "the spectrogram")
        assert width == 960
        keys = ActionChains(driver)
        keys.send_keys("u").send_keys("e").send_keys(NOTE).send_keys("\ue00c")  # Escape
        keys.send_keys("n").send_keys("?").perform()
        wait_for(lambda: progress() == f"3 of {total} reviewed", "three verdicts saved")

        table = detect_output / "review" / f"{DCLDE_WAV.stem}.reviewed.selections.txt"
        labels = read_reviewed(table)
        assert [label.annotation for label in labels] == ["upcall", "not-upcall", "unsure"]
        for label, detection in zip(labels, found[:3], strict=True):
            assert label.begin_seconds == pytest.approx(detection["start_seconds"], abs=1e-6)
            assert label.end_seconds == pytest.approx(detection["end_seconds"], abs=1e-6)
            assert (label.channel, label.reviewer) == (detection["channel"], "tester")
        assert [label.note for label in labels] == ["", NOTE, ""]
        assert len(table.read_text().splitlines()) == 4  # header and one row per verdict

        # 4x playback: Chromium decodes the WAV; 2.25 s + 2 x 3 s of context at 4x speed
        duration = driver.execute_async_script(  # type: ignore[attr-defined]
            "const done = arguments[0]; const a = new Audio('/audio/0.wav?speed=4');"
            "a.onloadedmetadata = () => done(a.duration); a.onerror = () => done(-1);")
        first = found[0]
        clip_seconds = float(first["end_seconds"]) - float(first["start_seconds"]) + 6.0
        assert duration == pytest.approx(clip_seconds / 4, abs=0.01)

        driver.refresh()  # type: ignore[attr-defined]
        wait_for(lambda: progress() == f"3 of {total} reviewed", "the saved verdicts")
        cells = [driver.find_element(By.ID, f"row-{n}").find_elements(  # type: ignore[attr-defined]
            By.TAG_NAME, "td")[5].text for n in range(4)]
        assert cells == ["upcall", "not-upcall", "unsure", "—"]
        assert driver.find_element(By.ID, "title").text.startswith("Detection 4 of")  # type: ignore[attr-defined]
        ActionChains(driver).send_keys("k").send_keys("k").perform()
        assert driver.find_element(By.ID, "verdict").text == "not an upcall"  # type: ignore[attr-defined]
        assert driver.find_element(By.ID, "note").get_attribute("value") == NOTE  # type: ignore[attr-defined]
        wait_for(lambda: driver.execute_script(  # type: ignore[attr-defined]
            "const i = document.getElementById('spectrogram');"
            "return i.complete && i.naturalWidth && i.src.includes('/spectrogram/1.png?');"),
            "the second detection's spectrogram")
        driver.save_screenshot(str(tmp_path / "review.png"))  # type: ignore[attr-defined]
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copy(tmp_path / "review.png", os.environ[SCREENSHOT_ENV])
        Select(driver.find_element(By.ID, "sort")).select_by_value("score")  # type: ignore[attr-defined]
        first_row = driver.find_element(By.ID, "rows").find_element(By.TAG_NAME, "tr")  # type: ignore[attr-defined]
        assert float(first_row.find_elements(By.TAG_NAME, "td")[4].text) == pytest.approx(
            max(float(str(d["peak_score"])) for d in found), abs=1e-4)
        Select(driver.find_element(By.ID, "verdictFilter")).select_by_value("none")  # type: ignore[attr-defined]
        assert driver.find_element(By.ID, "shown").text == f"{total - 3} shown"  # type: ignore[attr-defined]
        Select(driver.find_element(By.ID, "verdictFilter")).select_by_value("unsure")  # type: ignore[attr-defined]
        assert driver.find_element(By.ID, "shown").text == "1 shown"  # type: ignore[attr-defined]
        errors = [entry for entry in driver.get_log("browser")  # type: ignore[attr-defined]
                  if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        server.terminate()
        status = server.wait(timeout=30)
        print((tmp_path / "review.log").read_text())  # shown when the test fails
    assert status == 0


@pytest.mark.parametrize("case", ["missing", "not an output", "no detections", "busy port"])
def test_bad_input_is_one_error_line(tmp_path: Path, case: str) -> None:
    out = tmp_path / "out"
    args = [str(out)]
    if case != "missing":
        out.mkdir()
    if case == "no detections":
        (out / "detections.jsonl").write_text('{"type":"gap","seconds":1.0}\n')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if case == "busy port":
            (out / "detections.jsonl").write_text(json.dumps(
                {"type": "detection", "label": "upcall", "channel": 1, "source": "hw:1,0",
                 "start_utc": "2026-01-02T03:04:05.000Z", "end_utc": "2026-01-02T03:04:07.000Z",
                 "peak_utc": "2026-01-02T03:04:06.000Z", "start_seconds": 5.0,
                 "end_seconds": 7.0, "peak_score": 0.9}) + "\n")
            args += ["--port", str(busy.getsockname()[1])]
        run = subprocess.run([*WHALED, "review", *args], capture_output=True, text=True,
                             timeout=60)
    expected = {"missing": "is not a folder", "not an output": "has no detections.jsonl",
                "no detections": "holds no detections", "busy port": "cannot serve on"}[case]
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("whaled: error: ")
    assert expected in run.stderr


def test_audio_from_evidence_clip_else_recording_by_name(tmp_path: Path) -> None:
    """A listen output: the evidence clip when kept, else the recording found under --audio."""
    out, recordings = tmp_path / "out", tmp_path / "recordings"
    clip_dir = out / "evidence" / "upcall"
    clip_dir.mkdir(parents=True)
    recordings.mkdir()
    soundfile.write(recordings / "site_20260102_030000.wav", np.zeros((40_000, 2)), 2000)
    rows = []
    for peak, channel in (("03:00:11.000", 2), ("03:00:15.000", 1)):
        start = float(peak[6:8]) - 1
        rows.append({"type": "detection", "label": "upcall", "channel": channel,
                     "source": "file:site_20260102_030000.wav",
                     "start_utc": f"2026-01-02T03:00:{start:06.3f}Z",
                     "end_utc": f"2026-01-02T03:00:{start + 2:06.3f}Z",
                     "peak_utc": f"2026-01-02T{peak}Z", "start_seconds": start,
                     "end_seconds": start + 2, "peak_score": 0.97})
    (out / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    soundfile.write(clip_dir / "20260102T030011000Z_ch2.wav", np.zeros(18_000), 2000)
    (clip_dir / "20260102T030011000Z_ch2.json").write_text(json.dumps(
        {"peak_utc": "2026-01-02T03:00:11.000Z", "channel": 2,
         "clip_start_utc": "2026-01-02T03:00:05.000Z"}))
    clip_item, recording_item = load_items(out, [recordings])
    assert clip_item.recording == recording_item.recording == "site_20260102_030000"
    assert clip_item.audio is not None and recording_item.audio is not None
    assert (clip_item.audio.path.name, clip_item.audio.first_seconds,
            clip_item.audio.column) == ("20260102T030011000Z_ch2.wav", 5.0, 0)
    assert (recording_item.audio.path, recording_item.audio.first_seconds,
            recording_item.audio.column) == (recordings / "site_20260102_030000.wav", 0.0, 0)
    assert load_items(out)[1].audio is None  # without --audio the recording is not found


def test_detect_layout_subfolders_reruns_unknown_start_and_stale_pages(tmp_path: Path) -> None:
    """Recordings keyed by their path below the scanned folder keep their own tables; a
    rescanned recording shows its latest result once; a verdict from a page that predates a
    rewrite of detections.jsonl is refused, not applied to another detection."""
    from detector.review.items import StaleDetections
    from detector.review.server import ReviewState

    out = tmp_path / "out"
    out.mkdir()

    def result(key: str, starts: list[float], utc: bool) -> str:
        lines = [{"type": "detection", "label": "upcall", "channel": 1, "recording": key,
                  "source": f"file:{Path(key).name}", "start_seconds": s, "end_seconds": s + 2,
                  "start_utc": f"2009-03-28T00:00:{s:06.3f}Z" if utc else None,
                  "end_utc": None, "peak_utc": None, "peak_score": 0.9} for s in starts]
        lines.append({"type": "recording", "recording": key, "path": f"/gone/{key}",
                      "status": "complete"})
        return "".join(json.dumps(line) + "\n" for line in lines)

    (out / "detections.jsonl").write_text(
        result("north/day.wav", [1.0, 5.0], True) + result("south/day.wav", [2.0], False)
        + result("north/day.wav", [7.5], True))  # north rescanned: only 7.5 s is current
    state = ReviewState(out, [], "tester")
    assert [(i.number, i.recording, i.start_seconds, i.start_utc) for i in state.items] == [
        (2, "south/day", 2.0, ""), (3, "north/day", 7.5, "2009-03-28T00:00:07.500Z")]
    state.save(3, ("north/day", 1, 7.5, 9.5), "unsure", "")
    state.save(2, ("south/day", 1, 2.0, 4.0), "upcall", "")
    with pytest.raises(StaleDetections):
        state.save(3, ("north/day", 1, 1.0, 3.0), "upcall", "")
    north = read_reviewed(out / "review" / "north" / "day.reviewed.selections.txt")
    south = read_reviewed(out / "review" / "south" / "day.reviewed.selections.txt")
    assert [(r.begin_seconds, r.annotation) for r in north] == [(7.5, "unsure")]
    assert [(r.begin_seconds, r.annotation) for r in south] == [(2.0, "upcall")]
    assert {n: v.annotation for n, v in ReviewState(out, [], "x").verdicts.items()} == {
        2: "upcall", 3: "unsure"}


@pytest.mark.slow
def test_listen_output_audio_from_evidence_clips_else_the_recording(
        tmp_path: Path, span: Path) -> None:
    """A real listen output: each detection's audio is its evidence clip (placed at its
    start in the recording); with the clip gone, the recording found under --audio."""
    from detector.review.server import ReviewState

    out = tmp_path / "out"
    run = subprocess.run([*WHALED, "listen", "--device", f"file:{span}", "--speed", "0",
                          "--out", str(out), "--metrics-port", "0"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    state = ReviewState(out, [span.parent], "tester")
    assert len(state.items) == len(detections(out)) >= 4
    for item in state.items:
        assert item.recording == span.stem
        assert item.audio is not None and item.audio.path.parent == out / "evidence" / "upcall"
        assert item.audio.first_seconds == pytest.approx(item.start_seconds - 5.0, abs=1e-3)
    first = state.items[0]
    from_clip = state.media(first.number, "wav", 4)
    assert first.audio is not None
    for suffix in (".wav", ".json", ".png"):
        first.audio.path.with_suffix(suffix).unlink()
    state = ReviewState(out, [span.parent], "tester")
    assert state.items[0].audio == AudioRef(span, 0.0, 0)
    from_recording = state.media(first.number, "wav", 4)
    clip, whole = (soundfile.read(io.BytesIO(wav)) for wav in (from_clip, from_recording))
    assert clip[1] == whole[1] == 8000  # 2 kHz played 4x faster
    assert len(clip[0]) == len(whole[0])  # the same 3 s either side of the detection
    assert np.corrcoef(clip[0], whole[0])[0, 1] > 0.99  # and the same audio


def serving(out: Path) -> ThreadingHTTPServer:
    """``whaled review``'s server over ``out`` on a free port of 127.0.0.1, in a thread."""
    import threading

    from detector.review.routes import make_handler
    from detector.review.server import ReviewServer, ReviewState

    server = ReviewServer(("127.0.0.1", 0), make_handler(ReviewState(out, [], "tester")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_detections(out: Path, recording: Path, key: str, starts: list[float]) -> None:
    """A detect output's detections.jsonl: a detection at each start, then the recording."""
    lines: list[dict[str, object]] = [
        {"type": "detection", "label": "upcall", "channel": 1, "recording": key,
         "source": f"file:{recording.name}", "start_seconds": start,
         "end_seconds": start + 2, "start_utc": None, "end_utc": None, "peak_utc": None,
         "peak_score": 0.9} for start in starts]
    lines.append({"type": "recording", "recording": key, "path": str(recording),
                  "status": "complete"})
    out.mkdir(exist_ok=True)
    (out / "detections.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def tones(path: Path) -> Path:
    """20 s at 2 kHz: a 100 Hz tone at 2-4 s, a 300 Hz tone at 12-14 s, silence elsewhere."""
    rate = 2000
    audio = np.zeros(20 * rate, np.float32)
    audio[2 * rate:4 * rate] = np.sin(2 * np.pi * 100 * np.arange(2 * rate) / rate)
    audio[12 * rate:14 * rate] = np.sin(2 * np.pi * 300 * np.arange(2 * rate) / rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, rate)
    return path


def test_media_follow_the_detection_not_its_number_after_a_rewrite(tmp_path: Path) -> None:
    """detections.jsonl rewritten (detect moves a superseded result out): number 0 is now
    another detection, and its audio is that detection's, not the cached audio of the old."""
    from detector.review.server import ReviewState

    out, recording = tmp_path / "out", tones(tmp_path / "day.wav")
    write_detections(out, recording, "day.wav", [2.0])
    state = ReviewState(out, [], "tester")
    before = state.media(0, "wav")
    write_detections(out, recording, "day.wav", [12.0])
    os.utime(out / "detections.jsonl", ns=(time.time_ns(), time.time_ns() + 10**9))
    state.refresh()
    assert state.item(0).start_seconds == 12.0
    after = state.media(0, "wav")
    assert after == ReviewState(out, [], "tester").media(0, "wav")
    assert after != before


def test_at_800_px_the_spectrogram_is_full_width_and_the_list_names_the_recording(
        tmp_path: Path) -> None:
    """A laptop-width window: the list goes under the detail instead of squeezing the
    spectrogram to a thumbnail, and each row names its recording."""
    from selenium.webdriver.common.by import By

    out, recording = tmp_path / "out", tones(tmp_path / "north" / "day.wav")
    write_detections(out, recording, "north/day.wav", [2.0, 12.0])
    driver: object = start_browser(800)
    server = serving(out)
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")  # type: ignore[attr-defined]
        wait_for(lambda: driver.execute_script(  # type: ignore[attr-defined]
            "const i = document.getElementById('spectrogram');"
            "return i.complete && i.naturalWidth;"), "the spectrogram")
        shown, window = driver.execute_script(  # type: ignore[attr-defined]
            "return [document.getElementById('spectrogram').getBoundingClientRect().width,"
            " window.innerWidth];")
        assert window <= 800 and shown >= 0.85 * window
        headers = [th.text for th in driver.find_elements(By.TAG_NAME, "th")]  # type: ignore[attr-defined]
        assert headers == ["#", "start (UTC)", "recording", "ch", "score", "verdict"]
        cells = driver.find_element(By.ID, "row-1").find_elements(By.TAG_NAME, "td")  # type: ignore[attr-defined]
        assert [cells[2].get_attribute("title"), cells[5].text] == ["north/day", "—"]
    finally:
        driver.quit()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("host", "origin", "status"), [
    ("{address}", "http://{address}", 200),
    ("localhost:{port}", "http://localhost:{port}", 200),
    ("{address}", None, 200),  # curl: not a browser page
    ("{address}", "http://evil.example", 403),  # a cross-site form or fetch
    ("{address}", "null", 403),  # a sandboxed or file: page
    ("evil.example:{port}", "http://evil.example:{port}", 403),  # DNS rebinding
    ("127.0.0.1:1", "http://127.0.0.1:1", 403),
])
def test_a_verdict_from_another_site_is_refused(tmp_path: Path, host: str,
                                                origin: str | None, status: int) -> None:
    import http.client

    out = tmp_path / "out"
    out.mkdir()
    (out / "detections.jsonl").write_text(json.dumps(
        {"type": "detection", "label": "upcall", "channel": 1, "source": "hw:1,0",
         "start_utc": None, "end_utc": None, "peak_utc": None, "start_seconds": 5.0,
         "end_seconds": 7.0, "peak_score": 0.9}) + "\n")
    server = serving(out)
    port = server.server_address[1]
    address = f"127.0.0.1:{port}"
    headers = {"Host": host.format(address=address, port=port),
               "Content-Type": "application/json"}
    if origin is not None:
        headers["Origin"] = origin.format(address=address, port=port)
    body = json.dumps({"number": 0, "recording": "hw_1_0", "channel": 1,
                       "start_seconds": 5.0, "end_seconds": 7.0, "annotation": "upcall"})
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/api/verdict", body, headers)
        answer = connection.getresponse()
        assert answer.status == status, answer.read()
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    tables = list((out / "review").rglob("*.txt")) if (out / "review").exists() else []
    assert len(tables) == (status == 200)
