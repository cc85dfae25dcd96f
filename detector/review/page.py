"""The ``whaled review`` page: one self-contained HTML document (no external assets).

Keys: j / ↓ / → next, k / ↑ / ← previous, u upcall, n not an upcall, ? unsure (each saves and
moves on), p play, s play 4x faster (higher), e edit the note (Enter saves it with the
verdict, Escape leaves it); c context (3, 10, 30 s either side), x contrast, z frequency zoom;
a drag on the spectrogram draws a box: a saves it as a missed call, b as the detection's box,
Escape clears it. The server says where the plot area is (``/api/view/N``), so a drag maps to
seconds and Hz exactly.
"""

from detector.review.boxes import BOX_SCRIPT

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>whaled review</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1b1d21; }
 header { background: #14304a; color: #fff; padding: 8px 16px; display: flex; gap: 24px;
          align-items: baseline; flex-wrap: wrap; }
 header h1 { font-size: 18px; margin: 0; }
 #progress { font-weight: 600; }
 #folder { opacity: .8; font-size: 13px; }
 .bar { padding: 8px 16px; display: flex; gap: 16px; flex-wrap: wrap; align-items: center;
        background: #e3e7ec; }
 .bar label { font-size: 14px; }
 select, input, button { font: inherit; }
 main { display: flex; gap: 16px; padding: 12px 16px; align-items: flex-start; }
 #detail { flex: 1 1 auto; min-width: 0; background: #fff; border-radius: 6px; padding: 12px;
           box-shadow: 0 1px 3px #0002; }
 #title { font-size: 18px; font-weight: 600; }
 #facts { color: #333; margin: 2px 0 8px; white-space: pre-line; overflow-wrap: anywhere; }
 #plot { position: relative; width: 100%; max-width: 960px; }
 #spectrogram { width: 100%; display: block; background: #e8e8e8; aspect-ratio: 960 / 360; }
 #boxes { position: absolute; inset: 0; cursor: crosshair; overflow: hidden; }
 .box { position: absolute; border: 2px solid; box-sizing: border-box; pointer-events: none; }
 .box.drawn { border: 2px dashed #fff; background: #ffffff18; }
 .box.added { border-color: #ffd400; }
 .box.fixed { border-color: #3cff5a; }
 .box span { position: absolute; top: -18px; left: -2px; font-size: 12px; padding: 0 3px;
             background: #000a; color: #fff; white-space: nowrap; }
 #drawn { font-variant-numeric: tabular-nums; }
 #noaudio { display: none; padding: 40px; background: #fbecc8; max-width: 880px; }
 .row { display: flex; gap: 10px; align-items: center; margin-top: 10px; flex-wrap: wrap; }
 button.v { padding: 6px 14px; border: 2px solid #888; border-radius: 5px; background: #fff;
            cursor: pointer; }
 button.v kbd { font-weight: 700; }
 .upcall { background: #d6f5d6 !important; border-color: #2a8a2a !important; }
 .not-upcall { background: #f8d7d7 !important; border-color: #b02a2a !important; }
 .unsure { background: #fff0c2 !important; border-color: #a07800 !important; }
 #tally { font-size: 14px; opacity: .85; }
 #verdict { font-weight: 700; padding: 4px 10px; border-radius: 4px; border: 2px solid #ccc; }
 #note { flex: 1 1 300px; padding: 5px; }
 #status { min-height: 1.4em; font-weight: 600; }
 #status.error { color: #b00020; }
 #keys { color: #555; font-size: 13px; margin-top: 8px; }
 kbd { border: 1px solid #999; border-bottom-width: 2px; border-radius: 3px; padding: 0 4px;
       font-family: ui-monospace, monospace; background: #fafafa; color: #111; }
 #list { flex: 0 0 590px; max-height: calc(100vh - 130px); overflow-y: auto; background: #fff;
         border-radius: 6px; box-shadow: 0 1px 3px #0002; }
 @media (max-width: 1280px) {  /* narrow: the list under the detail, the spectrogram full width */
   main { flex-direction: column; align-items: stretch; }
   #list { flex: none; max-height: 45vh; }
 }
 table { border-collapse: collapse; width: 100%; font-size: 14px; }
 th { position: sticky; top: 0; background: #dde3ea; text-align: left; padding: 4px 6px; }
 td { padding: 3px 5px; border-top: 1px solid #eee; white-space: nowrap; cursor: pointer; }
 tr.current td { outline: 2px solid #14304a; outline-offset: -2px; font-weight: 600; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; }
 td.rec { max-width: 150px; overflow: hidden; text-overflow: ellipsis; }
</style></head>
<body>
<header><h1>whaled review</h1><span id="progress">loading…</span><span id="tally"></span>
 <span id="folder"></span>
</header>
<div class="bar">
 <label>Sort <select id="sort"><option value="time">by time</option>
  <option value="score">by score, highest first</option></select></label>
 <label>Day <select id="day"><option value="">all days</option></select></label>
 <label>Recording <select id="recording"><option value="">all recordings</option></select>
 </label>
 <label>Verdict <select id="verdictFilter"><option value="">all</option>
  <option value="none">not reviewed</option><option value="upcall">upcall</option>
  <option value="not-upcall">not-upcall</option><option value="unsure">unsure</option>
 </select></label>
 <span id="shown"></span>
</div>
<main>
<section id="detail">
 <div id="title"></div>
 <div id="facts"></div>
 <div id="plot"><img id="spectrogram" alt="spectrogram of the detection" draggable="false">
  <div id="boxes"></div></div>
 <div class="row">
  <button class="v" id="context" title="c">context <b>3 s</b> <kbd>c</kbd></button>
  <button class="v" id="contrast" title="x">contrast <b>auto</b> <kbd>x</kbd></button>
  <button class="v" id="zoom" title="z">0–<b>500</b> Hz <kbd>z</kbd></button>
  <button class="v" id="addBox" title="a"><kbd>a</kbd> add box as missed call</button>
  <button class="v" id="fixBox" title="b"><kbd>b</kbd> box is this detection's</button>
  <span id="drawn">drag on the spectrogram to draw a box</span>
 </div>
 <div id="noaudio">No audio for this detection: its evidence clip is gone and its recording
  was not found. Start whaled review with --audio FOLDER holding the recording.</div>
 <div class="row">
  <button class="v" id="play1" title="p">▶ play <kbd>p</kbd></button>
  <button class="v" id="play4" title="s">▶ 4× faster, 2 octaves higher <kbd>s</kbd></button>
  <audio id="audio" controls preload="none"></audio>
 </div>
 <div class="row">
  <button class="v" data-a="upcall"><kbd>u</kbd> upcall</button>
  <button class="v" data-a="not-upcall"><kbd>n</kbd> not an upcall</button>
  <button class="v" data-a="unsure"><kbd>?</kbd> unsure</button>
  <span>Verdict:</span><span id="verdict">not reviewed</span>
 </div>
 <div class="row"><label for="note">Note <kbd>e</kbd></label>
  <input id="note" placeholder="optional: saved with the verdict (Enter saves, Esc leaves)">
 </div>
 <div id="status"></div>
 <div id="keys"><kbd>j</kbd>/<kbd>↓</kbd> next · <kbd>k</kbd>/<kbd>↑</kbd> previous ·
  <kbd>u</kbd> upcall · <kbd>n</kbd> not an upcall · <kbd>?</kbd> unsure (each saves at once
  and moves on) · <kbd>p</kbd> play · <kbd>s</kbd> play 4× faster · <kbd>e</kbd> note ·
  <kbd>c</kbd> context · <kbd>x</kbd> contrast · <kbd>z</kbd> zoom · drag a box, then
  <kbd>a</kbd> missed call or <kbd>b</kbd> the detection's box (<kbd>Esc</kbd> clears).
  Dashed cyan: the detection, 50–250 Hz; green: its corrected box; yellow: calls added.
  Verdicts and boxes go to OUT_DIR/review/.</div>
</section>
<section id="list"><table><thead><tr><th>#</th><th>start (UTC)</th><th>recording</th>
 <th>ch</th><th>score</th><th>verdict</th></tr></thead><tbody id="rows"></tbody></table>
</section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let items = [], view = [], pos = 0, added = [];
const CONTEXTS = [3, 10, 30], RANGES = ["auto", 20, 30, 45], TOPS = [500, 300, 1000];
const look = { context: 0, range: 0, top: 0 };  // indices into the lists above
let geo = null, drawn = null, dragFrom = null;  // the plot's axes; the box being drawn
const VERDICT_COLUMN = 5;  // of the list: #, start, recording, ch, score, verdict

function text(el, value) { el.textContent = value; return el; }
function when(item) {  // the start in UTC, else seconds into the recording
  return item.start_utc ? item.start_utc.replace("T", " ").replace("Z", "")
    : item.start_seconds.toFixed(3) + " s";
}
function verdictName(a) { return a === "not-upcall" ? "not an upcall" : (a || "not reviewed"); }

async function load() {
  const response = await fetch("/api/state");
  const state = await response.json();
  items = state.items; added = state.added;
  text($("folder"), state.out_dir + " · reviewer " + state.reviewer);
  fillSelect($("day"), [...new Set(items.map((i) => i.day))].sort());
  fillSelect($("recording"), [...new Set(items.map((i) => i.recording))].sort());
  applyView(true);
}

function fillSelect(select, values) {
  for (const value of values) {
    const option = document.createElement("option");
    option.value = value; option.textContent = value; select.appendChild(option);
  }
}

function applyView(toFirstUnreviewed) {
  const day = $("day").value, rec = $("recording").value, v = $("verdictFilter").value;
  view = items.filter((i) => (!day || i.day === day) && (!rec || i.recording === rec)
    && (!v || (v === "none" ? !i.annotation : i.annotation === v)));
  if ($("sort").value === "score") view.sort((a, b) => b.score - a.score || a.number - b.number);
  else view.sort((a, b) => a.start_utc.localeCompare(b.start_utc)
    || a.recording.localeCompare(b.recording) || a.start_seconds - b.start_seconds
    || a.channel - b.channel || a.number - b.number);
  const rows = $("rows"); rows.replaceChildren();
  view.forEach((item, index) => {
    const tr = document.createElement("tr");
    tr.id = "row-" + item.number;
    for (const value of [index + 1, when(item), item.recording,
      item.channel, item.score.toFixed(4), ""]) {
      text(tr.appendChild(document.createElement("td")), value);
    }
    tr.children[0].className = "num"; tr.children[4].className = "num";
    tr.children[2].className = "rec"; tr.children[2].title = item.recording;
    tr.onclick = () => show(index);
    rows.appendChild(tr); paintRow(item);
  });
  text($("shown"), view.length + " shown");
  const first = view.findIndex((i) => !i.annotation);
  show(toFirstUnreviewed && first >= 0 ? first : 0);
  progress();
}

function paintRow(item) {
  const tr = $("row-" + item.number); if (!tr) return;
  const cell = tr.children[VERDICT_COLUMN];
  text(cell, item.annotation || "—"); cell.className = item.annotation;
}

function progress() {
  const done = items.filter((i) => i.annotation).length;
  text($("progress"), done + " of " + items.length + " reviewed");
  const count = (a) => items.filter((i) => i.annotation === a).length;
  text($("tally"), count("upcall") + " upcall · " + count("not-upcall") + " not an upcall · "
    + count("unsure") + " unsure · " + added.length + " added");
}

function show(index) {
  if (!view.length) { text($("title"), "no detections match the filters"); return; }
  pos = Math.max(0, Math.min(index, view.length - 1));
  const item = view[pos];
  document.querySelectorAll("tr.current").forEach((tr) => tr.classList.remove("current"));
  const tr = $("row-" + item.number); tr.classList.add("current");
  tr.scrollIntoView({ block: "nearest" });
  text($("title"), "Detection " + (pos + 1) + " of " + view.length + " · model score "
    + item.score.toFixed(4) + (item.label === "upcall" ? "" : " · " + item.label));
  text($("facts"), (item.start_utc ? when(item) + " – " + item.end_utc.slice(11, 23) + " UTC"
    : "UTC unknown: the recording's start time is not known") + "\\nrecording "
    + item.recording + " · channel "
    + item.channel + " · " + item.start_seconds.toFixed(3) + "–" + item.end_seconds.toFixed(3)
    + " s from its start");
  $("spectrogram").style.display = item.has_audio ? "block" : "none";
  $("noaudio").style.display = item.has_audio ? "none" : "block";
  drawn = null; geo = null; paintBoxes();
  if (item.has_audio) loadView(item);
  $("audio").removeAttribute("src"); $("audio").load();
  $("note").value = item.note;
  paintVerdict(item); text($("status"), "").className = "";
}

function paintVerdict(item) {
  const badge = $("verdict");
  text(badge, verdictName(item.annotation)); badge.className = item.annotation;
}

""" + BOX_SCRIPT + """function play(speed) {
  const item = view[pos]; if (!item || !item.has_audio) return;
  const audio = $("audio");
  audio.src = "/audio/" + item.number + ".wav?speed=" + speed + "&context="
    + CONTEXTS[look.context];
  audio.play().catch((error) => text($("status"), "cannot play: " + error).className = "error");
}

let saving = Promise.resolve();  // verdicts are posted one after another, in key order

function save(annotation, advance) {
  const item = view[pos]; if (!item) return;
  const note = $("note").value;
  const row = $("row-" + item.number);
  if (row) text(row.children[VERDICT_COLUMN], "saving…");
  saving = saving.then(() => post(item, annotation, note));
  if (advance && pos + 1 < view.length) show(pos + 1);
}

async function post(item, annotation, note) {
  const number = view.indexOf(item) + 1;
  try {
    const response = await fetch("/api/verdict", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ number: item.number, recording: item.recording,
        channel: item.channel, start_seconds: item.start_seconds,
        end_seconds: item.end_seconds, annotation: annotation, note: note }) });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    item.annotation = answer.annotation; item.note = answer.note;
    paintRow(item); progress();
    if (view[pos] === item) paintVerdict(item);
    text($("status"), "saved #" + number + ": " + verdictName(answer.annotation)
      + (answer.note ? " (note: " + answer.note + ")" : "")).className = "";
  } catch (error) {
    paintRow(item);
    text($("status"), "NOT SAVED #" + number + ": " + error.message).className = "error";
  }
}

document.querySelectorAll("button[data-a]").forEach((b) => {
  b.onclick = () => save(b.dataset.a, true);
});
$("play1").onclick = () => play(1);
$("play4").onclick = () => play(4);
$("context").onclick = () => cycle("context", CONTEXTS, $("context"), " s");
$("contrast").onclick = () => cycle("range", RANGES, $("contrast"), "");
$("zoom").onclick = () => cycle("top", TOPS, $("zoom"), "");
$("addBox").onclick = () => saveBox(false);
$("fixBox").onclick = () => saveBox(true);
for (const id of ["sort", "day", "recording", "verdictFilter"]) {
  $(id).onchange = () => { applyView(false); $(id).blur(); };
}
$("note").addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault(); $("note").blur();
    const item = view[pos];
    if (item && item.annotation) save(item.annotation, false);
    else text($("status"), "note kept: press u, n or ? to save it with a verdict");
  } else if (event.key === "Escape") { $("note").blur(); }
  event.stopPropagation();
});
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const tag = event.target.tagName;
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
  const actions = { j: () => show(pos + 1), ArrowDown: () => show(pos + 1),
    ArrowRight: () => show(pos + 1), k: () => show(pos - 1), ArrowUp: () => show(pos - 1),
    ArrowLeft: () => show(pos - 1), u: () => save("upcall", true),
    n: () => save("not-upcall", true), "?": () => save("unsure", true), p: () => play(1),
    s: () => play(4), e: () => $("note").focus(), c: () => $("context").click(),
    x: () => $("contrast").click(), z: () => $("zoom").click(), a: () => saveBox(false),
    b: () => saveBox(true), Escape: () => { drawn = null; paintBoxes(); } };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});
load().catch((error) => text($("progress"), "cannot load detections: " + error));
</script>
</body></html>
"""
