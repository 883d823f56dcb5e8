// rnnflow serve: the page. Talks only to this server's JSON API (no external assets).
"use strict";

const N = 28;                      // canvas and model input: 28 x 28, row r = time step r
const $ = (id) => document.getElementById(id);
const pixels = new Uint8ClampedArray(N * N);  // the drawing: 0..255, light ink on black
const state = { info: null, last: null, view: null, poem: null, step: N, timer: null, pixels };
window.rnnflow = state;            // for the browser tests and the curious: the last answers

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, body, contentType) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": contentType || "application/json" },
    body: contentType ? body : JSON.stringify(body),
  });
  let data;
  try { data = await response.json(); } catch (e) { data = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function bars(container, names, probs, top) {
  container.replaceChildren();
  names.forEach((name, i) => {
    const p = probs[i];
    const label = document.createElement("span");
    label.textContent = name;
    const track = document.createElement("span");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.className = "val";
    value.textContent = p.toFixed(3);
    const row = [label, track, value];
    row.forEach((el) => {
      el.dataset.index = String(i);
      el.dataset.p = String(p);        // the exact number, for tests
      if (i === top) el.classList.add("top");
    });
    for (const el of row) { el.classList.add("cell"); container.append(el); }
  });
}

// ---------------------------------------------------------------- drawing pad (image runs)
const cursor = { x: 14, y: 14, pen: false };
let last = null;

function paint(fx, fy) {            // a soft round brush, radius ~1.6 cells, centred at (fx, fy)
  for (let y = Math.floor(fy - 2); y <= Math.ceil(fy + 2); y++) {
    for (let x = Math.floor(fx - 2); x <= Math.ceil(fx + 2); x++) {
      if (x < 0 || y < 0 || x >= N || y >= N) continue;
      const d = Math.hypot(x + 0.5 - fx, y + 0.5 - fy) / 1.6;
      const v = Math.round(255 * Math.max(0, Math.min(1, 1.25 - d * d)));
      pixels[y * N + x] = Math.max(pixels[y * N + x], v);
    }
  }
}

function strokeTo(fx, fy) {
  if (last) {
    const steps = Math.ceil(Math.hypot(fx - last.x, fy - last.y) / 0.25);
    for (let i = 1; i <= steps; i++) {
      paint(last.x + ((fx - last.x) * i) / steps, last.y + ((fy - last.y) * i) / steps);
    }
  } else paint(fx, fy);
  last = { x: fx, y: fy };
  drawPad();
}

function drawPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const s = pad.width / N;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  for (let i = 0; i < N * N; i++) {
    if (!pixels[i]) continue;
    ctx.fillStyle = `rgb(${pixels[i]},${pixels[i]},${pixels[i]})`;
    ctx.fillRect((i % N) * s, Math.floor(i / N) * s, s, s);
  }
  if (document.activeElement === pad) {   // the keyboard cursor
    ctx.strokeStyle = cursor.pen ? "#ff5a5a" : "#4da3ff";
    ctx.lineWidth = 2;
    ctx.strokeRect(cursor.x * s + 1, cursor.y * s + 1, s - 2, s - 2);
  }
  $("download").href = pixelsPNG();
}

function pixelsPNG() {              // the exact 28x28 the page sends, as a grayscale PNG
  const c = document.createElement("canvas");
  c.width = c.height = N;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(N, N);
  for (let i = 0; i < N * N; i++) {
    img.data.set([pixels[i], pixels[i], pixels[i], 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  return c.toDataURL("image/png");
}

function pixelRows() {
  const rows = [];
  for (let y = 0; y < N; y++) rows.push(Array.from(pixels.slice(y * N, (y + 1) * N)));
  return rows;
}

function padPoint(event) {
  const r = $("pad").getBoundingClientRect();
  return { x: ((event.clientX - r.left) / r.width) * N, y: ((event.clientY - r.top) / r.height) * N };
}

function setupPad() {
  const pad = $("pad");
  pad.addEventListener("pointerdown", (e) => {
    pad.setPointerCapture(e.pointerId);
    last = null;
    const p = padPoint(e);
    strokeTo(p.x, p.y);
    e.preventDefault();
  });
  pad.addEventListener("pointermove", (e) => {
    if (!pad.hasPointerCapture(e.pointerId)) return;
    const p = padPoint(e);
    strokeTo(p.x, p.y);
  });
  const end = (e) => {
    if (!pad.hasPointerCapture(e.pointerId)) return;
    pad.releasePointerCapture(e.pointerId);
    last = null;
    predictDrawing();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  pad.addEventListener("focus", drawPad);
  pad.addEventListener("blur", drawPad);
  pad.addEventListener("keydown", (e) => {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (moves[e.key]) {
      cursor.x = Math.max(0, Math.min(N - 1, cursor.x + moves[e.key][0]));
      cursor.y = Math.max(0, Math.min(N - 1, cursor.y + moves[e.key][1]));
      if (cursor.pen) strokeTo(cursor.x + 0.5, cursor.y + 0.5); else drawPad();
    } else if (e.key === " ") {
      cursor.pen = !cursor.pen;
      last = null;
      if (cursor.pen) strokeTo(cursor.x + 0.5, cursor.y + 0.5); else drawPad();
    } else if (e.key === "Enter") {
      predictDrawing();
    } else if (e.key === "Delete" || e.key === "Backspace") {
      clearPad();
    } else return;
    e.preventDefault();
  });
  $("clear").addEventListener("click", clearPad);
  $("predict").addEventListener("click", predictDrawing);
  $("file").addEventListener("change", () => { if ($("file").files[0]) upload($("file").files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
  });
  setupReading();
  drawPad();
}

function setupReading() {
  $("play").addEventListener("click", play);
  $("step").addEventListener("input", () => showStep(Number($("step").value)));
}

// ---------------------------------------------------------------- series upload (sequence runs)
function setupSeries() {
  const limits = state.info.limits;
  $("series-limits").textContent = `This model reads ${state.info.num_channels} channels per ` +
    `step; at most ${limits.series} series of at most ${limits.steps} steps per file.`;
  const send = (file) => {
    const kind = file.name.toLowerCase().endsWith(".csv") ? "text/csv" : "application/octet-stream";
    upload(file, kind);
  };
  $("series-file").addEventListener("change", () => { if ($("series-file").files[0]) send($("series-file").files[0]); });
  const drop = $("series-drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0]);
  });
  $("series-pick").addEventListener("change", () => showSeries(Number($("series-pick").value)));
  $("reading-title").textContent = "The reading, step by step";
  $("step-unit").textContent = "steps read";
  $("rows-figure").hidden = true;
  $("series-figure").hidden = false;
  $("step-probs-caption").textContent = "Class probabilities after these steps.";
  $("trace-caption").textContent = "Each class's probability after each step (the predicted " +
    "class thick); the line marks the slider.";
  const read = state.info.pooling === "mean"
    ? "the mean of the outputs so far: this model pools by the mean" : "the hidden state";
  $("heat-caption").textContent = `What the output layer reads after each step (${read}): ` +
    "columns are steps read, lines are units; red positive, blue negative.";
  $("moved-title").replaceChildren("Steps that moved the decision most ");
  const small = document.createElement("small");
  small.textContent = "(change of the predicted class's probability when the step was read; step 0 is the first)";
  $("moved-title").append(small);
  setupReading();
}

function clearPad() {
  pixels.fill(0);
  last = null;
  drawPad();
  showError("");
}

// Only the answer to the latest request is shown (an older one arriving late is dropped);
// body[data-busy] is set while that latest request is in flight.
async function latest(request, onError) {
  const seq = (state.seq = (state.seq || 0) + 1);
  document.body.dataset.busy = "1";
  try {
    const data = await request;
    if (seq === state.seq) showResult(data);
  } catch (err) {
    if (seq === state.seq) onError(err);
  } finally {
    if (seq === state.seq) delete document.body.dataset.busy;
  }
}

function predictDrawing() {
  if (!pixels.some((v) => v > 0)) { showError("The canvas is empty: draw something first."); return; }
  latest(api("/api/predict", { pixels: pixelRows(), top: 3 }), (err) => showError(err.message));
}

function upload(file, contentType) {
  const kind = contentType || file.type || "application/octet-stream";
  latest(api("/api/predict", file, kind), (err) => showError(`${file.name}: ${err.message}`));
}

// ---------------------------------------------------------------- results and the reading
function showResult(data) {
  showError("");
  state.last = data;
  if (state.info.kind !== "sequence") {
    show({ entry: data.predictions[0], probabilities: data.probabilities, reading: data.reading, input: data.input });
    return;
  }
  const pick = $("series-pick");
  pick.replaceChildren(...data.predictions.map((p, i) => {
    const option = document.createElement("option");
    option.value = String(i);
    option.textContent = `series ${i} (${p.length} steps): ${p.class}`;
    return option;
  }));
  $("series-pick-label").hidden = data.predictions.length < 2;
  showSeries(0);
}

function showSeries(i) {
  const s = state.last.series[i];
  $("series-pick").value = String(i);
  show({ entry: state.last.predictions[i], probabilities: s.probabilities, reading: s.reading, input: s.input });
}

// One prediction and its reading: entry (the fields of predict --json), probabilities [C],
// reading (probabilities [T + 1][C], hidden [T][F], moved), input (what the model read).
function show(view) {
  state.view = view;
  const names = state.info.classes;
  const p = view.entry;
  const unit = state.info.kind === "sequence" ? "step" : "row";
  const pred = $("prediction");
  pred.replaceChildren();
  const strong = document.createElement("strong");
  strong.id = "pred-class";
  strong.textContent = p.class;
  strong.dataset.index = String(p.class_index);
  const prob = document.createElement("span");
  prob.id = "pred-prob";
  prob.dataset.p = String(p.probability);
  prob.textContent = ` ${(100 * p.probability).toFixed(1)} %`;
  pred.append(strong, prob);
  bars($("probs"), names, view.probabilities, p.class_index);
  $("reading").hidden = false;
  const moved = $("moved");
  moved.replaceChildren();
  for (const m of view.reading.moved) {
    const li = document.createElement("li");
    const sign = m.change >= 0 ? "+" : "−";
    li.textContent = `${unit} ${m[unit]}: ${sign}${Math.abs(m.change).toFixed(3)} for ${p.class}`;
    moved.append(li);
  }
  legend(names, p.class_index);
  const T = view.reading.hidden.length;
  $("step").max = String(T);
  if (state.timer) { clearInterval(state.timer); state.timer = null; $("play").textContent = "▶ Play"; }
  showStep(T);
}

function showStep(t) {
  const view = state.view;
  if (!view) return;
  const T = view.reading.hidden.length;
  state.step = t;
  $("step").value = String(t);
  $("step-label").textContent = `${t} of ${T}`;
  const probs = view.reading.probabilities[t];
  let top = 0;
  probs.forEach((v, i) => { if (v > probs[top]) top = i; });
  bars($("step-probs"), state.info.classes, probs, top);
  if (state.info.kind === "sequence") drawSeries(view.input, t); else drawRows(view.input, t);
  drawTrace(view.reading, t);
  drawHeat(view.reading, t);
}

function drawSeries(input, t) {     // one line per channel over the steps; unread steps dimmed
  const c = $("series-plot");
  const ctx = c.getContext("2d");
  const w = c.width, h = c.height, pad = 6;
  const T = input.length, D = input[0].length;
  let lo = Infinity, hi = -Infinity;
  for (const row of input) for (const v of row) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (hi === lo) { hi += 1; lo -= 1; }
  const cw = w / T;
  const X = (i) => (i + 0.5) * cw;
  const Y = (v) => h - pad - ((h - 2 * pad) * (v - lo)) / (hi - lo);
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#e3e6ea";
  ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
  for (let d = 0; d < D; d++) {
    ctx.beginPath();
    ctx.strokeStyle = COLORS[d % COLORS.length];
    ctx.lineWidth = 1.5;
    input.forEach((row, i) => (i ? ctx.lineTo(X(i), Y(row[d])) : ctx.moveTo(X(i), Y(row[d]))));
    if (T === 1) ctx.arc(X(0), Y(input[0][d]), 2, 0, 2 * Math.PI);
    ctx.stroke();
  }
  ctx.fillStyle = "rgba(255,255,255,0.75)";
  ctx.fillRect(t * cw, 0, w - t * cw, h);
  if (t > 0 && t <= T) {
    ctx.fillStyle = "#ff9f1c";
    ctx.fillRect(t * cw - 1, 0, 2, h);
  }
  const box = $("channels");
  if (box.childElementCount !== D) {
    box.replaceChildren(...Array.from({ length: D }, (_, d) => {
      const item = document.createElement("span");
      item.textContent = `channel ${d}`;
      item.style.borderColor = COLORS[d % COLORS.length];
      return item;
    }));
  }
}

function drawRows(image, t) {
  const c = $("rows");
  const ctx = c.getContext("2d");
  const s = c.width / N;
  for (let y = 0; y < N; y++) {
    for (let x = 0; x < N; x++) {
      const v = Math.round(255 * image[y][x]);
      ctx.fillStyle = `rgb(${v},${v},${v})`;
      ctx.fillRect(x * s, y * s, s, s);
    }
  }
  ctx.fillStyle = "rgba(20, 32, 46, 0.78)";
  ctx.fillRect(0, t * s, c.width, c.height - t * s);
  if (t > 0 && t <= N) {
    ctx.fillStyle = "#ff9f1c";
    ctx.fillRect(0, t * s - 2, c.width, 2);
  }
}

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];

function drawTrace(reading, t) {
  const c = $("trace");
  const ctx = c.getContext("2d");
  const w = c.width, h = c.height, pad = 6;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#e3e6ea";
  ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
  const steps = reading.probabilities.length;
  const X = (i) => pad + ((w - 2 * pad) * i) / (steps - 1);
  const Y = (p) => h - pad - (h - 2 * pad) * p;
  const C = reading.probabilities[0].length;
  for (let k = 0; k < C; k++) {
    ctx.beginPath();
    ctx.strokeStyle = COLORS[k % COLORS.length];
    ctx.lineWidth = k === reading.predicted ? 3 : 1;
    reading.probabilities.forEach((p, i) => (i ? ctx.lineTo(X(i), Y(p[k])) : ctx.moveTo(X(i), Y(p[k]))));
    ctx.stroke();
  }
  ctx.fillStyle = "#ff9f1c";
  ctx.fillRect(X(t) - 1, 0, 2, h);
  ctx.fillStyle = "#5b6571";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText("p = 1", pad + 2, pad + 10);
  const unit = state.info.kind === "sequence" ? "steps" : "rows";
  ctx.fillText(`${unit} read: 0 … ${steps - 1}`, w - 110, pad + 10);
}

function legend(names, predicted) {
  const box = $("legend");
  box.replaceChildren();
  names.forEach((name, k) => {
    const item = document.createElement("span");
    item.textContent = name;
    item.style.borderColor = COLORS[k % COLORS.length];
    if (k === predicted) item.classList.add("top");
    box.append(item);
  });
}

function drawHeat(reading, t) {
  const c = $("heat");
  const ctx = c.getContext("2d");
  const T = reading.hidden.length, F = reading.hidden[0].length;
  const scale = reading.hidden_scale || 1;
  const cw = c.width / T, ch = c.height / F;
  ctx.clearRect(0, 0, c.width, c.height);
  for (let i = 0; i < T; i++) {
    for (let u = 0; u < F; u++) {
      const v = Math.max(-1, Math.min(1, reading.hidden[i][u] / scale));
      const a = Math.abs(v);
      const r = v > 0 ? 255 : Math.round(255 * (1 - a)), b = v < 0 ? 255 : Math.round(255 * (1 - a));
      const g = Math.round(255 * (1 - a));
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(i * cw, u * ch, Math.ceil(cw), Math.ceil(ch));
    }
  }
  ctx.fillStyle = "rgba(255,255,255,0.75)";
  ctx.fillRect(t * cw, 0, c.width - t * cw, c.height);
}

function play() {
  if (state.timer) { clearInterval(state.timer); state.timer = null; $("play").textContent = "▶ Play"; return; }
  let t = 0;
  const T = state.view.reading.hidden.length;
  $("play").textContent = "❚❚ Pause";
  showStep(0);
  state.timer = setInterval(() => {
    t += 1;
    showStep(t);
    if (t >= T) { clearInterval(state.timer); state.timer = null; $("play").textContent = "▶ Play"; }
  }, 150);
}

// ---------------------------------------------------------------- poems (char-LM runs)
function setupPoem() {
  const select = $("form");
  for (const f of state.info.forms) {
    const o = document.createElement("option");
    o.value = o.textContent = f;
    select.append(o);
  }
  $("poem-form").addEventListener("submit", (e) => { e.preventDefault(); writePoem(); });
}

const SEPARATORS = "，。？！\n";      // end a verse (rnnflow.text.constraints.verses)

function mark(spans, request) {      // acrostic characters and rhyme positions, for the eye
  const verses = [];                 // [verse][spans]
  let current = [];
  for (const span of spans) {
    if (SEPARATORS.includes(span.textContent) || !span.textContent) {
      if (current.length) verses.push(current);
      current = [];
    } else current.push(span);
  }
  if (current.length) verses.push(current);
  verses.forEach((verse, v) => {
    if (request.acrostic) verse[0].classList.add("acrostic");
    if (request.rhyme && v % 2 === 1) verse[verse.length - 1].classList.add("rhyme");
  });
}

async function writePoem() {
  const int = (id) => Number.parseInt($(id).value || "0", 10);
  const num = (id) => Number.parseFloat($(id).value || "0");
  const request = {
    prime: $("prime").value,
    length: int("length"),
    temperature: num("temperature"),
    top_k: int("top_k"),
    top_p: num("top_p"),
    seed: int("seed"),
    form: $("form").value || null,
    acrostic: $("acrostic").value.trim(),
    rhyme: $("rhyme").checked,
    tonal: $("tonal").checked,
  };
  let data;
  try { data = await api("/api/generate", request); } catch (err) { showError(err.message); return; }
  showError("");
  state.poem = data;
  const sample = data.samples[0];
  const poem = $("poem");
  const primed = [...data.prime].map((ch) => {
    const span = document.createElement("span");
    span.textContent = ch;
    span.className = "prime";
    return span;
  });
  poem.replaceChildren(...primed);
  $("poem-meta").textContent = "";
  clearInterval(state.timer);
  let i = 0;
  state.timer = setInterval(() => {
    if (i >= sample.steps.length) {
      clearInterval(state.timer);
      state.timer = null;
      mark([...poem.querySelectorAll("span")], data);
      const checks = data.form === null ? "" :
        ` · even verses rhyme: ${sample.rhymes ? "yes" : "no"}` +
        ` · 平仄 pattern: ${sample.tonal ? "yes" : "no"}` +
        (data.acrostic ? " · red: the acrostic" : "") + (data.rhyme ? " · underlined: the rhymes" : "");
      $("poem-meta").textContent = `${sample.steps.length} characters, log-probability ` +
        `${sample.log_prob.toFixed(2)}${sample.finished ? "" : " (stopped at the length limit)"}` +
        checks;
      poem.dataset.done = "1";
      return;
    }
    const step = sample.steps[i];
    const span = document.createElement("span");
    span.textContent = step.text || (step.symbol === "<eos>" ? "" : step.symbol);
    span.tabIndex = 0;
    span.dataset.step = String(i);
    const k = i;
    span.addEventListener("click", () => showCandidates(k));
    span.addEventListener("focus", () => showCandidates(k));
    poem.append(span);
    showCandidates(i);
    i += 1;
  }, 60);
  delete poem.dataset.done;
}

function showCandidates(i) {
  const step = state.poem.samples[0].steps[i];
  $("poem").querySelectorAll("span").forEach((s) => s.classList.toggle("sel", s.dataset.step === String(i)));
  const shown = step.symbol === "\n" ? "a line break" : step.symbol === "<eos>" ? "the end" : `“${step.symbol}”`;
  $("cand-step").textContent = `character ${i + 1} (${shown} was drawn)`;
  const names = step.candidates.map((c) => (c.symbol === "\n" ? "⏎ line break" : c.symbol));
  const probs = step.candidates.map((c) => c.probability);
  const drawn = step.candidates.findIndex((c) => c.symbol === step.symbol);
  bars($("cands"), names, probs, drawn);
}

// ---------------------------------------------------------------- start
async function start() {
  try {
    const response = await fetch("/api/info");
    state.info = await response.json();
  } catch (err) { showError(`cannot reach the server: ${err.message}`); return; }
  const info = state.info;
  const run = info.kind === "poem"
    ? `character model · ${info.cell.toUpperCase()} ${info.num_units} units · step ${info.checkpoint_step} · ${info.checkpoint}`
    : `${info.kind === "sequence" ? "sequence classifier · " : ""}${info.dataset} · ` +
      `${info.cell.toUpperCase()} ${info.num_units} units` +
      `${info.bidirectional ? " · bidirectional" : ""}` +
      `${info.pooling === "mean" ? " · mean pooling" : ""} · ${info.checkpoint}`;
  $("run-info").textContent = run;
  if (info.kind === "image" || info.kind === "sequence") {
    $("classify-view").hidden = false;
    $("reading-note").textContent = info.note;
    if (info.kind === "image") {
      $("draw-panel").hidden = false;
      $("prediction").textContent = "Draw something.";
      setupPad();
    } else {
      $("series-panel").hidden = false;
      $("prediction").textContent = "Upload a series.";
      setupSeries();
    }
  } else {
    $("poem-view").hidden = false;
    setupPoem();
  }
  document.body.dataset.ready = info.kind;
}

start();
