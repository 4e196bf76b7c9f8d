// The performer's view: draws what the engine sends (controllers/view.py) and sends the engine's
// commands (controllers/commands.py: the OSC address space) for what is clicked. It keeps no
// state of the engine's own: every button shows what the engine says, not what was clicked.
"use strict";

const STEM_COLOURS = { drums: "#ff8c42", bass: "#ff3f6c", vocals: "#3ec9ff", other: "#8fe060" };
const GLOBAL_COLOURS = ["#ffffff", "#b48cff", "#ffd84a", "#7a8499"];
const SECTION_COLOURS = { intro: "#35507a", verse: "#2e6f5c", drop: "#8c3347", bridge: "#7a6330",
                          outro: "#55407a" };
const BACKGROUND = "#0b0d12";
const PLAYHEAD_AT = 0.3;  // of the zoomed view's width: more of what is coming than of what went
const TILE = 512;  // CSS pixels of the zoomed waveform drawn at once, then copied as it scrolls
const FRAME_MS = 1000 / 25;  // the canvases are drawn 25 times a second at most
const FEEDBACK_GAP_MS = 250;  // a playhead moves on by itself between messages, this long at most
const BARS = [2, 4, 8, 16, 32];
const QUANTIZE = ["off", "beat", "bar", "phrase"];

// Everything the engine said; the tests read it (window.automix), and so can a console.
const view = {
  hello: null, decks: [null, null], waves: [null, null], plan: null, running: null,
  state: {}, received: {}, connected: false, socket: null, zoomSeconds: 12,
  overviewPlayheads: [null, null], bytesReceived: 0,
};
window.automix = view;

// --- the connection ---------------------------------------------------------------------------

function connect() {
  const socket = new WebSocket(`ws://${location.host}/ws`);
  view.socket = socket;
  socket.onopen = () => { view.connected = true; renderConnection(); };
  socket.onmessage = (event) => {
    view.bytesReceived += event.data.length;
    let message;
    try { message = JSON.parse(event.data); } catch (err) { return; }
    receive(message);
  };
  socket.onclose = () => {
    view.connected = false;
    renderConnection();
    setTimeout(connect, 1000);  // the engine restarted, or the network blinked
  };
}

function send(address, ...args) {
  if (view.socket && view.socket.readyState === WebSocket.OPEN) {
    view.socket.send(JSON.stringify({ address, args }));
  }
}

function receive(message) {
  switch (message.type) {
    case "hello": view.hello = message; buildLegend(); break;
    case "deck": view.decks[message.deck] = message.track; cached.overview[message.deck] = null;
      cached.candidates = null; break;
    case "wave": view.waves[message.deck] = message.wave && takeWave(message.wave);
      cached.overview[message.deck] = null; break;
    case "plan": view.plan = message.plan; cached.candidates = null; break;
    case "running": view.running = message.running; cached.running = null; break;
    case "state": {
      const now = performance.now();
      for (const [key, value] of Object.entries(message.values)) {
        view.state[key] = value;
        view.received[key] = now;
      }
      if ("/transition/candidate" in message.values || "/transition/ready" in message.values) {
        cached.candidates = null;
      }
      break;
    }
  }
  renderSoon();
}

// --- decoding ---------------------------------------------------------------------------------

function bytes(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function takeWave(wave) {
  // Each byte is 255 * sqrt(amplitude): drawn as it is, which is how loud it looks.
  const peak = wave.peak.map(bytes), rms = wave.rms.map(bytes);
  const n = peak[0].length;
  let most = 1;
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (const row of peak) sum += row[i];
    if (sum > most) most = sum;
  }
  return { rate: wave.points_per_second, peak, rms, n, most };
}

function curves(transition) {
  return { ...transition, values: bytes(transition.curves) };
}

// --- time and beats ---------------------------------------------------------------------------

const deckName = (d) => "ab"[d];
const stateOf = (d, what) => view.state[`/deck/${deckName(d)}/${what}`];
const beatSeconds = (track) => 60 / track.bpm;
const secondsOf = (track, beat) => track.first_downbeat + beat * beatSeconds(track);
const beatOf = (track, seconds) => (seconds - track.first_downbeat) / beatSeconds(track);

function position(d) {
  // Seconds of the track as analysed, now: the last position heard, moved on at the deck's rate.
  let seconds = stateOf(d, "position") ?? 0;
  if (stateOf(d, "playing")) {
    const since = performance.now() - (view.received[`/deck/${deckName(d)}/position`] ?? 0);
    seconds += Math.min(since, FEEDBACK_GAP_MS) / 1000 * (stateOf(d, "rate") ?? 1);
  }
  return seconds;
}

function spans() {
  // The transition's span on each deck in beats: the one running, or the one a trigger would
  // start now (the engine's next quantized beat on the deck on air, deck B from its cue).
  const st = view.state, phase = st["/transition/phase"], bpb = view.hello.beats_per_bar;
  const r = view.running;
  if (phase && phase !== "idle" && r) {
    const [progress, length] = st["/transition/beats"] ?? [0, r.bars * bpb];
    const start = phase === "pending" && r.start_beat !== null ? r.start_beat
      : (stateOf(r.outgoing, "beat") ?? 0) - progress;
    return [{ deck: r.outgoing, from: start, to: start + length, live: true },
            { deck: 1 - r.outgoing, from: r.cue_beat, to: r.cue_beat + length, live: true }];
  }
  const out = st["/transition/outgoing"] ?? 0;
  if (!view.decks[0] || !view.decks[1]) return [];
  const length = (st["/transition/bars"] ?? 16) * bpb;
  const start = st["/transition/start"] ?? beatOf(view.decks[out], position(out));
  return [{ deck: out, from: start, to: start + length, live: false },
          { deck: 1 - out, from: 0, to: length, live: false }];
}

// --- canvases ---------------------------------------------------------------------------------

const cached = { overview: [null, null], tiles: [null, null], candidates: null, running: null };

function unchanged(canvas, ...inputs) {
  // Whether a canvas would be drawn again as it is: then it is left alone. A stopped deck costs
  // the browser nothing, and the browser may share the machine with the engine.
  const same = canvas.drawnFrom !== undefined && canvas.drawnFrom.length === inputs.length
    && inputs.every((input, i) => input === canvas.drawnFrom[i]);
  canvas.drawnFrom = inputs;
  return same;
}

function spansOf(d) {
  return spans().filter((span) => span.deck === d)
    .map((span) => `${span.from.toFixed(2)}:${span.to.toFixed(2)}:${span.live}`).join();
}

function fit(canvas) {
  // The canvas's pixels follow its size on the screen (and the screen's pixel density).
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, w: w / ratio, h: h / ratio };
}

function columnMax(row, from, to) {
  let most = 0;
  for (let i = Math.max(0, from); i < Math.min(to, row.length); i++) if (row[i] > most) most = row[i];
  return most;
}

function drawStems(ctx, wave, x0, width, mid, half, pointAt) {
  // Each stem's envelope stacked around the middle line: peaks faint, RMS solid.
  const stems = view.hello.stems, columns = Math.ceil(width);
  for (const [rows, alpha] of [[wave.peak, 0.35], [wave.rms, 1]]) {
    const below = new Float32Array(columns + 1);
    rows.forEach((row, s) => {
      const top = new Float32Array(columns + 1);
      for (let x = 0; x <= columns; x++) {
        const [from, to] = pointAt(x0 + x);
        top[x] = below[x] + (to > from ? columnMax(row, from, to) : 0) / wave.most * half;
      }
      ctx.fillStyle = STEM_COLOURS[stems[s]] ?? "#999";
      ctx.globalAlpha = alpha;
      for (const sign of [-1, 1]) {
        ctx.beginPath();
        ctx.moveTo(x0, mid + sign * below[0]);
        for (let x = 0; x <= columns; x++) ctx.lineTo(x0 + x, mid + sign * top[x]);
        for (let x = columns; x >= 0; x--) ctx.lineTo(x0 + x, mid + sign * below[x]);
        ctx.fill();
      }
      below.set(top);
    });
  }
  ctx.globalAlpha = 1;
}

function drawSections(ctx, track, xOf, y, height, labels) {
  for (const [label, start, end] of track.sections) {
    const x1 = xOf(start), x2 = xOf(end);
    ctx.fillStyle = SECTION_COLOURS[label] ?? "#444";
    ctx.fillRect(x1, y, x2 - x1 - 1, height);
    if (labels && x2 - x1 > 30) {
      ctx.fillStyle = "#e8ecf4";
      ctx.font = "10px system-ui";
      ctx.fillText(label, Math.max(x1, 0) + 3, y + height - 2);
    }
  }
}

function drawSpans(ctx, d, xOfBeat, height) {
  for (const span of spans()) {
    if (span.deck !== d) continue;
    const x1 = xOfBeat(span.from), x2 = xOfBeat(span.to);
    ctx.fillStyle = span.live ? "rgba(57, 217, 138, 0.16)" : "rgba(255, 204, 51, 0.10)";
    ctx.fillRect(x1, 0, x2 - x1, height);
    ctx.strokeStyle = span.live ? "#39d98a" : "#ffcc33";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x1, 0.75, x2 - x1, height - 1.5);
  }
}

function zoomTile(d, index, perSecond, h) {
  // A stretch of the zoomed view in the track's time: its sections, the stems' waveform and
  // the beat grid (beats faint, downbeats brighter, phrase starts bright and numbered). Drawn
  // once for this track, waveform, zoom and size, kept while near, copied as the track scrolls.
  const track = view.decks[d], wave = view.waves[d], ratio = window.devicePixelRatio || 1;
  const key = `${perSecond}:${h}:${ratio}`;
  if (!cached.tiles[d] || cached.tiles[d].key !== key || cached.tiles[d].track !== track
      || cached.tiles[d].wave !== wave) {
    cached.tiles[d] = { key, track, wave, tiles: new Map() };
  }
  const tiles = cached.tiles[d].tiles;
  let tile = tiles.get(index);
  if (tile) return tile;
  tile = document.createElement("canvas");
  tile.width = Math.ceil(TILE * ratio);
  tile.height = Math.ceil(h * ratio);
  const ctx = tile.getContext("2d");
  ctx.scale(ratio, ratio);
  const start = index * TILE / perSecond, end = (index + 1) * TILE / perSecond;
  const xOf = (seconds) => (seconds - start) * perSecond;
  ctx.fillStyle = "#10141c";
  ctx.fillRect(xOf(0), 0, xOf(track.duration) - xOf(0), h);
  drawSections(ctx, track, xOf, 0, 11, true);
  if (wave) {
    drawStems(ctx, wave, 0, TILE, h / 2 + 5, h / 2 - 9, (x) => {
      const from = Math.floor((start + x / perSecond) * wave.rate);
      return [from, Math.max(from + 1, Math.floor((start + (x + 1) / perSecond) * wave.rate))];
    });
  }
  const bpb = view.hello.beats_per_bar, phrase = view.hello.phrase_bars * bpb;
  ctx.font = "10px system-ui";
  // From a little before the tile: a bar number that starts there runs on into it.
  for (let k = Math.ceil(beatOf(track, start - 30 / perSecond));
    k <= Math.floor(beatOf(track, Math.min(end, track.duration))); k++) {
    const x = Math.round(xOf(secondsOf(track, k))) + 0.5, inPhrase = ((k % phrase) + phrase) % phrase;
    if (inPhrase === 0) {
      ctx.strokeStyle = "rgba(255,255,255,0.85)";
      ctx.fillStyle = "#fff";
      ctx.fillText(`${k / bpb + 1}`, x + 3, 22);
    } else {
      ctx.strokeStyle = ((k % bpb) + bpb) % bpb === 0 ? "rgba(255,255,255,0.45)"
        : "rgba(255,255,255,0.14)";
    }
    ctx.lineWidth = inPhrase === 0 ? 2 : 1;
    ctx.beginPath();
    ctx.moveTo(x, 12);
    ctx.lineTo(x, h);
    ctx.stroke();
  }
  for (const far of tiles.keys()) if (Math.abs(far - index) > 6) tiles.delete(far);
  tiles.set(index, tile);
  return tile;
}

function drawZoom(canvas) {
  const d = Number(canvas.dataset.deck), track = view.decks[d];
  const perSecond = canvas.clientWidth / view.zoomSeconds;
  const now = position(d), shift = Math.round(now * perSecond);  // whole pixels: plain copies
  if (unchanged(canvas, canvas.clientWidth, canvas.clientHeight, view.zoomSeconds, track,
    view.waves[d], shift, spansOf(d))) return;
  const { ctx, w, h } = fit(canvas);
  ctx.fillStyle = BACKGROUND;
  ctx.fillRect(0, 0, w, h);
  if (!track || !view.hello) {
    ctx.fillStyle = "#556";
    ctx.font = "13px system-ui";
    ctx.fillText(`deck ${"AB"[d]}: no track`, 12, h / 2);
    return;
  }
  const x0 = Math.round(w * PLAYHEAD_AT), xOf = (seconds) => x0 + Math.round(seconds * perSecond) - shift;
  const first = Math.max(0, Math.floor((shift - x0) / TILE));
  const last = Math.min(Math.floor((shift + w - x0) / TILE), Math.floor(track.duration * perSecond / TILE));
  for (let index = first; index <= last; index++) {
    ctx.drawImage(zoomTile(d, index, perSecond, h), x0 + index * TILE - shift, 0, TILE, h);
  }
  drawSpans(ctx, d, (beat) => xOf(secondsOf(track, beat)), h);
  ctx.fillStyle = "#ff3355";
  ctx.fillRect(x0 - 1, 0, 2, h);
  ctx.beginPath();
  ctx.moveTo(x0 - 6, 0); ctx.lineTo(x0 + 6, 0); ctx.lineTo(x0, 7);
  ctx.fill();
}

function drawOverview(canvas) {
  const d = Number(canvas.dataset.deck), track = view.decks[d], wave = view.waves[d];
  const playhead = track ? Math.round(position(d) / track.duration * canvas.clientWidth) : null;
  if (unchanged(canvas, canvas.clientWidth, canvas.clientHeight, track, wave, playhead,
    spansOf(d), cached.overview[d])) return;
  const { ctx, w, h } = fit(canvas);
  if (!track || !view.hello) {
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, w, h);
    view.overviewPlayheads[d] = null;
    return;
  }
  const xOf = (seconds) => seconds / track.duration * w;
  const key = `${w}x${h}`;
  let image = cached.overview[d];
  if (!image || image.key !== key) {
    // The whole track changes only with a load, a grid edit or a resize: drawn once, then copied.
    image = document.createElement("canvas");
    image.key = key;
    image.width = canvas.width;
    image.height = canvas.height;
    const c = image.getContext("2d");
    c.scale(canvas.width / w, canvas.height / h);
    c.fillStyle = BACKGROUND;
    c.fillRect(0, 0, w, h);
    drawSections(c, track, xOf, h - 9, 9, false);
    if (wave) {
      const perPixel = wave.n / w;
      drawStems(c, wave, 0, w, (h - 9) / 2, (h - 11) / 2, (x) =>
        [Math.floor(x * perPixel), Math.max(Math.floor(x * perPixel) + 1, Math.floor((x + 1) * perPixel))]);
    }
    const bpb = view.hello.beats_per_bar, phrase = view.hello.phrase_bars * bpb;
    c.fillStyle = "rgba(255,255,255,0.5)";
    for (let k = Math.ceil(beatOf(track, 0) / phrase) * phrase; secondsOf(track, k) < track.duration;
      k += phrase) {
      c.fillRect(Math.round(xOf(secondsOf(track, k))), 0, 1, 5);
    }
    cached.overview[d] = image;
  }
  ctx.drawImage(image, 0, 0, w, h);
  const now = position(d), x = xOf(now);
  ctx.fillStyle = "rgba(11, 13, 18, 0.55)";  // what has played
  ctx.fillRect(0, 0, Math.max(0, x), h);
  drawSpans(ctx, d, (beat) => xOf(secondsOf(track, beat)), h);
  ctx.fillStyle = "#ff3355";
  ctx.fillRect(Math.round(x) - 1, 0, 2, h);
  view.overviewPlayheads[d] = x;
}

const CURVES_LEFT = 64;  // CSS pixels of lane titles left of the curves

function curvesImage(transition, w, h) {
  // One lane per kind of parameter (faders, the EQ bands, the filters, then the global ones),
  // each stem in its colour, deck A solid and deck B dashed, over the transition's bars: drawn
  // once per transition and size (a running transition's cursor moves over a copy).
  const ratio = window.devicePixelRatio || 1, key = `${w}x${h}x${ratio}`;
  if (transition.image && transition.image.key === key) return transition.image;
  const image = document.createElement("canvas");
  image.key = key;
  image.width = Math.round(w * ratio);
  image.height = Math.round(h * ratio);
  const ctx = image.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.fillStyle = BACKGROUND;
  ctx.fillRect(0, 0, w, h);
  const lanes = view.hello.lanes, n = view.hello.params.length, frames = transition.frames;
  const laneHeight = h / lanes.length, width = w - CURVES_LEFT - 4;
  const xOf = (frame) => CURVES_LEFT + frame / (frames - 1) * width;
  for (let bar = 0; bar <= transition.bars; bar++) {
    const x = Math.round(CURVES_LEFT + bar / transition.bars * width) + 0.5;
    ctx.strokeStyle = bar % view.hello.phrase_bars === 0 ? "rgba(255,255,255,0.35)"
      : "rgba(255,255,255,0.09)";
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
  }
  lanes.forEach((lane, l) => {
    const top = l * laneHeight + 3, height = laneHeight - 6;
    ctx.fillStyle = "#8a93a6";
    ctx.font = "10px system-ui";
    ctx.fillText(lane.title, 4, top + height / 2 + 3);
    ctx.strokeStyle = "rgba(255,255,255,0.06)";
    ctx.strokeRect(CURVES_LEFT, top, width, height);
    lane.params.forEach((param, p) => {
      ctx.strokeStyle = param.stem ? STEM_COLOURS[param.stem] : GLOBAL_COLOURS[p % GLOBAL_COLOURS.length];
      ctx.setLineDash(param.deck === "b" ? [4, 3] : []);
      ctx.lineWidth = 1.4;
      ctx.beginPath();
      for (let f = 0; f < frames; f++) {
        const y = top + (1 - transition.values[f * n + param.index] / 255) * height;
        if (f === 0) ctx.moveTo(xOf(f), y); else ctx.lineTo(xOf(f), y);
      }
      ctx.stroke();
    });
    ctx.setLineDash([]);
  });
  transition.image = image;
  return image;
}

function drawCurves(canvas, transition, progress) {
  // A transition's curves; with ``progress`` (0..1), where it is and the parameters the hand
  // holds, at the values the hand plays.
  const frame = view.state["/mixer/frame"] ?? [], taken = view.state["/transition/taken"] ?? [];
  if (unchanged(canvas, canvas.clientWidth, canvas.clientHeight, transition,
    progress === undefined ? -1 : Math.round(progress * canvas.clientWidth / 4),  // 4 px steps
    taken.map((name) => frame[view.hello.params.indexOf(name)]).join())) return;
  const { ctx, w, h } = fit(canvas);
  ctx.drawImage(curvesImage(transition, w, h), 0, 0, w, h);
  if (progress === undefined) return;
  const lanes = view.hello.lanes, laneHeight = h / lanes.length;
  const x = CURVES_LEFT + progress * (w - CURVES_LEFT - 4);
  ctx.fillStyle = "#fff";
  ctx.fillRect(x - 1, 0, 2, h);
  ctx.font = "10px system-ui";
  for (const name of taken) {
    lanes.forEach((lane, l) => {
      const param = lane.params.find((p) => p.name === name);
      if (!param || frame[param.index] === undefined) return;
      const y = l * laneHeight + 3 + (1 - frame[param.index]) * (laneHeight - 6);
      ctx.strokeStyle = "#fff";
      ctx.fillStyle = param.stem ? STEM_COLOURS[param.stem] : "#fff";
      ctx.beginPath(); ctx.arc(x, y, 4.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      ctx.fillText("hand", x + 7, y + 3);
    });
  }
}

// --- the page's controls ----------------------------------------------------------------------

function button(label, onClick, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (title) b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function pathForm(placeholder, label, onPath) {
  const form = document.createElement("form");
  form.className = "path";
  const input = document.createElement("input");
  input.placeholder = placeholder;
  form.append(input, button(label, () => form.requestSubmit()));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) onPath(input.value.trim());
  });
  return form;
}

function throttled(send, ms) {
  // A slider sends at most every ``ms``, and its last value always.
  let last = 0, timer = null;
  return (value) => {
    clearTimeout(timer);
    const wait = last + ms - performance.now();
    if (wait <= 0) { last = performance.now(); send(value); } else {
      timer = setTimeout(() => { last = performance.now(); send(value); }, wait);
    }
  };
}

function buildDeckControls(d) {
  const deck = `/deck/${deckName(d)}`;
  const box = document.querySelector(`.deck-controls[data-deck="${d}"]`);
  const play = button("PLAY", () => send(`${deck}/play`, stateOf(d, "playing") ? 0 : 1));
  play.dataset.role = "play";
  const tempo = document.createElement("input");
  Object.assign(tempo, { type: "range", min: 0, max: 1, step: 0.0025, title: "tempo ±8 %" });
  const sendTempo = throttled((value) => send(`${deck}/tempo`, value), 40);
  tempo.addEventListener("input", () => sendTempo(Number(tempo.value)));
  tempo.dataset.role = "tempo";
  const sep = () => Object.assign(document.createElement("span"), { className: "sep" });
  box.append(
    play, button("CUE", () => send(`${deck}/cue`)), button("SYNC", () => send(`${deck}/sync`)),
    tempo, sep(),
    button("◀", () => send(`${deck}/grid/shift`, -1 / 64), "beat grid 1/64 beat earlier"),
    button("▶", () => send(`${deck}/grid/shift`, 1 / 64), "beat grid 1/64 beat later"),
    button("DOWNBEAT", () => send(`${deck}/grid/downbeat`), "the play position is a downbeat"),
    button("½", () => send(`${deck}/grid/half`), "half the grid's BPM"),
    button("×2", () => send(`${deck}/grid/double`), "double the grid's BPM"),
    button("TAP", () => send(`${deck}/grid/tap`), "tap the beat: from the 4th tap"),
    pathForm("track (a file or a stem folder)", "LOAD", (path) => send(`${deck}/load`, path)));
}

function buildLegend() {
  // What the curves' colours and dashes mean (the lanes' parameters come from the engine).
  const swatch = (colour, text, dashed) => `<span class="key"><i style="border-color: ${colour}; `
    + `border-top-style: ${dashed ? "dashed" : "solid"}"></i>${escaped(text)}</span>`;
  const global = view.hello.lanes.find((lane) => !lane.params[0].stem);
  document.getElementById("legend").innerHTML = [
    ...view.hello.stems.map((stem) => swatch(STEM_COLOURS[stem], stem)),
    swatch("#aaa", "deck A"), swatch("#aaa", "deck B", true),
    ...(global ? global.params.map((p, i) => swatch(GLOBAL_COLOURS[i % GLOBAL_COLOURS.length],
      p.name.replace("_", " "))) : [])].join("");
}

function buildControls() {
  for (const element of document.querySelectorAll("[data-address]")) {
    element.addEventListener("click", () => send(element.dataset.address));
  }
  for (const element of document.querySelectorAll("[data-toggle]")) {
    element.addEventListener("click",
      () => send(element.dataset.toggle, view.state[element.dataset.state] ? 0 : 1));
  }
  const bars = document.getElementById("bars");
  for (const n of BARS) {
    const b = button(String(n), () => send("/transition/bars", n));
    b.dataset.bars = n;
    bars.append(b);
  }
  const quantize = document.getElementById("quantize");
  for (const q of QUANTIZE) {
    const b = button(q, () => send("/transition/quantize", q));
    b.dataset.quantize = q;
    quantize.append(b);
  }
  // Guidance resamples the candidates: sent once, when the slider is let go.
  const guidance = document.getElementById("guidance");
  guidance.addEventListener("input", () => {
    guidance.nextElementSibling.value = (4 * guidance.value).toFixed(2);
  });
  guidance.addEventListener("change", () => send("/transition/guidance", Number(guidance.value)));
  const crossfader = document.getElementById("crossfader");
  const sendFader = throttled((value) => send("/mixer/crossfader", value), 30);
  crossfader.addEventListener("input", () => sendFader(Number(crossfader.value)));
  for (const zoom of document.querySelectorAll("[data-zoom]")) {
    zoom.addEventListener("click", () => {
      view.zoomSeconds = Math.min(64, Math.max(3, view.zoomSeconds / Number(zoom.dataset.zoom)));
      renderSoon();
    });
  }
  for (const canvas of document.querySelectorAll("canvas.overview")) {
    canvas.addEventListener("click", (event) => {
      const d = Number(canvas.dataset.deck), track = view.decks[d];
      if (!track) return;
      const seconds = event.offsetX / canvas.clientWidth * track.duration;
      send(`/deck/${deckName(d)}/seek`, beatOf(track, seconds));
    });
  }
  document.getElementById("queue").append(
    pathForm("track to queue (a file or a stem folder)", "QUEUE",
      (path) => send("/playlist/queue", path)));
  buildDeckControls(0);
  buildDeckControls(1);
}

// --- rendering --------------------------------------------------------------------------------

// The page is written only where it changes: every write costs the browser a layout.
function setText(element, text) { if (element.textContent !== text) element.textContent = text; }

function setHTML(element, html) {
  if (element.writtenHTML !== html) { element.innerHTML = html; element.writtenHTML = html; }
}

function setClass(element, name) { if (element.className !== name) element.className = name; }

function setHidden(element, hidden) { if (element.hidden !== hidden) element.hidden = hidden; }

function unlessHeld(input, value) {
  // A control being moved by hand shows the hand, not the engine's last word.
  if (document.activeElement !== input && value !== undefined && input.writtenValue !== value) {
    input.value = value;
    input.writtenValue = value;
  }
}

function renderConnection() {
  const element = document.getElementById("connection");
  setClass(element, view.connected ? "on" : "off");
  element.textContent = view.connected ? "connected" : "no engine: reconnecting";
}

function renderDeckHead(d) {
  const head = document.querySelector(`.deck-head[data-deck="${d}"]`);
  const track = view.decks[d], st = view.state;
  const playing = stateOf(d, "playing"), onAir = st["/transition/outgoing"] === d;
  const beat = stateOf(d, "beat") ?? 0, bpb = view.hello ? view.hello.beats_per_bar : 4;
  const bar = Math.floor(beat / bpb) + 1, inBar = Math.floor(((beat % bpb) + bpb) % bpb) + 1;
  const html = !track ? `<span class="letter">${"AB"[d]}</span><span class="muted">no track yet</span>`
    : `<span class="letter">${"AB"[d]}</span>`
      + `<span class="name" title="${escaped(track.name)}">${escaped(track.name)}</span>`
      + `<span class="bpm">${(stateOf(d, "bpm") ?? track.bpm).toFixed(2)} BPM</span>`
      + `<span class="muted">${track.bpm.toFixed(1)} as analysed</span>`
      + `<span class="key"><b>${track.camelot}</b> ${track.key}</span>`
      + `<span class="num">bar ${bar}.${inBar}</span>`
      + `<span class="state ${playing ? "playing" : ""}">${playing ? "▶ playing" : "■ stopped"}</span>`
      + (onAir ? `<span class="air">ON AIR</span>` : "")
      + `<span class="${track.weak ? "weak" : "muted"}" title="${escaped(track.grid)}">grid `
      + `${(stateOf(d, "grid/confidence") ?? track.confidence).toFixed(2)}`
      + `${track.weak ? " weak: check it by ear" : ""}</span>`;
  setHTML(head, html);
  const controls = document.querySelector(`.deck-controls[data-deck="${d}"]`);
  const play = controls.querySelector('[data-role="play"]');
  if (play) {
    setText(play, playing ? "PAUSE" : "PLAY");
    play.classList.toggle("on", Boolean(playing));
  }
  const tempo = controls.querySelector('[data-role="tempo"]');
  if (tempo) unlessHeld(tempo, ((stateOf(d, "rate") ?? 1) - 1) / 0.16 + 0.5);
}

function escaped(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function renderTransition() {
  const st = view.state, phase = st["/transition/phase"] ?? "idle";
  const [progress, length] = st["/transition/beats"] ?? [0, 0];
  const bpb = view.hello ? view.hello.beats_per_bar : 4;
  const trigger = document.getElementById("trigger");
  trigger.classList.toggle("armed", phase === "pending");
  trigger.classList.toggle("live", phase === "running" || phase === "returning");
  for (const element of document.querySelectorAll("[data-state]")) {
    element.classList.toggle("on", Boolean(st[element.dataset.state]));
  }
  for (const b of document.querySelectorAll("[data-bars]")) {
    b.classList.toggle("on", Number(b.dataset.bars) === st["/transition/bars"]);
  }
  for (const b of document.querySelectorAll("[data-quantize]")) {
    b.classList.toggle("on", b.dataset.quantize === st["/transition/quantize"]);
  }
  const guidance = document.getElementById("guidance");
  if (st["/transition/guidance"] !== undefined && document.activeElement !== guidance) {
    unlessHeld(guidance, st["/transition/guidance"] / 4);
    setText(guidance.nextElementSibling, st["/transition/guidance"].toFixed(2));
  }
  const frame = st["/mixer/frame"];
  const xfader = view.hello && frame ? frame[view.hello.params.indexOf("crossfader")] : undefined;
  unlessHeld(document.getElementById("crossfader"), xfader);
  const phaseBox = document.getElementById("phase");
  setClass(phaseBox, phase);
  const out = view.running ? view.running.outgoing : st["/transition/outgoing"] ?? 0;
  const ready = st["/transition/ready"] ?? 0;
  const note = view.plan && view.plan.note !== st["/engine/model"] ? view.plan.note : "";
  const label = phase === "idle"
    ? `next: ${"AB"[st["/transition/outgoing"] ?? 0]} → ${"AB"[1 - (st["/transition/outgoing"] ?? 0)]}, `
      + `${st["/transition/bars"] ?? "–"} bars, quantize ${st["/transition/quantize"] ?? "–"}, `
      + `${ready} candidate${ready === 1 ? "" : "s"} ready` + (note ? ` (${note})` : "")
    : `${phase}${st["/transition/held"] ? " (held)" : ""}: ${"AB"[out]} → ${"AB"[1 - out]}, `
      + `bar ${(progress / bpb).toFixed(1)} of ${(length / bpb).toFixed(0)}`;
  setText(phaseBox.querySelector(".label"), label);
  const done = `${length ? Math.round(100 * progress / length) : 0}%`, bar = phaseBox.querySelector(".bar span");
  if (bar.style.width !== done) bar.style.width = done;
  const running = document.getElementById("running");
  setHidden(running, phase === "idle" || !view.running);
  if (!running.hidden) {
    const taken = st["/transition/taken"] ?? [];
    setText(running.querySelector(".title"), `playing: ${view.running.source} curves, `
      + `${view.running.bars} bars` + (taken.length ? ` · hand on ${taken.join(", ")}` : ""));
  }
}

function renderCandidates() {
  if (cached.candidates) return;
  const box = document.getElementById("candidates");
  box.replaceChildren();
  const plan = view.plan, chosen = view.state["/transition/candidate"] ?? 1;
  if (!view.hello || !plan || !plan.candidates.length) {
    const note = !view.decks[0] || !view.decks[1] ? "load both decks"
      : "sampling candidates… (a trigger now plays the rule-based policy)";
    box.append(Object.assign(document.createElement("div"), { className: "empty", textContent: note }));
    cached.candidates = [];
    return;
  }
  cached.candidates = plan.candidates.map((candidate, i) => {
    const panel = document.createElement("div");
    panel.className = `candidate${i + 1 === chosen ? " chosen" : ""}`;
    panel.dataset.candidate = i + 1;
    panel.innerHTML = `<div class="title"><span><b>${i + 1}</b> · ${candidate.source}</span>`
      + `<span class="muted">${candidate.bars} bars${i + 1 === chosen ? " · chosen" : ""}</span></div>`;
    const canvas = document.createElement("canvas");
    canvas.className = "curves";
    panel.append(canvas);
    panel.addEventListener("click", () => send("/transition/candidate", i + 1));
    box.append(panel);
    return { canvas, transition: curves(candidate) };
  });
  for (const { canvas, transition } of cached.candidates) drawCurves(canvas, transition);
}

function renderQueue() {
  const queue = view.state["/playlist/queue"], box = document.getElementById("queue");
  setHidden(box, !Array.isArray(queue));
  if (box.hidden) return;
  const html = queue.map((item) => `<li class="${escaped(item.state)}">${escaped(item.title)}`
    + `<span class="muted">${Number(item.bpm).toFixed(1)} BPM · ${escaped(item.camelot)} · `
    + `${escaped(item.state)}</span></li>`).join("");
  const list = box.querySelector("ol");
  setHTML(list, html);
}

function renderEngine() {
  const st = view.state, load = st["/engine/load"];
  setText(document.getElementById("load"),
    load ? `load ${Math.round(100 * load[0])}% · p99 ${Math.round(100 * load[1])}%` : "load –");
  const xruns = document.getElementById("xruns");
  setText(xruns, `xruns ${st["/engine/xruns"] ?? "–"}`);
  xruns.classList.toggle("bad", (st["/engine/xruns"] ?? 0) > 0);
  setText(document.getElementById("model"), st["/engine/model"] ?? "");
  setText(document.getElementById("zoom-seconds"), `${view.zoomSeconds.toFixed(0)} s`);
}

let renderPending = false;
function renderSoon() { renderPending = true; }

function render() {
  // Text and buttons, when a message came since the last frame.
  renderEngine();
  if (!view.hello) return;
  renderDeckHead(0);
  renderDeckHead(1);
  renderTransition();
  renderCandidates();
  renderQueue();
}

function drawCanvases() {
  if (!view.hello) return;
  for (const canvas of document.querySelectorAll("canvas.zoom")) drawZoom(canvas);
  for (const canvas of document.querySelectorAll("canvas.overview")) drawOverview(canvas);
  const running = document.getElementById("running");
  if (!running.hidden && view.running) {
    cached.running ??= curves(view.running);
    const [progress, length] = view.state["/transition/beats"] ?? [0, 1];
    drawCurves(running.querySelector("canvas"), cached.running, length ? progress / length : 0);
  }
}

function frame() {
  if (renderPending) { renderPending = false; render(); }
  drawCanvases();
}

window.addEventListener("resize", () => { cached.candidates = null; renderSoon(); });
buildControls();
connect();
// One frame FRAME_MS apart for the text and the canvases together, not one more for each message
// (up to 20 a second) on top of those: the browser may share the engine's cores. Nothing is drawn
// that would look the same.
setInterval(frame, FRAME_MS);
