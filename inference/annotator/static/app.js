// TSMS-SAM2 annotator page: plain JS, no build step, nothing fetched from elsewhere.
"use strict";
// The access token (if any) came in the URL once; the server answered with a cookie, so the
// token leaves the address bar. State-changing requests carry the CSRF token of the page.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const canvas = $("canvas"), ctx = canvas.getContext("2d");
const S = { info: null, frame: 0, active: null, version: -1, timeline: null, polling: null, drag: null,
            frameImg: null, overlayImg: null, prompts: [] };
window.annotator = { latencies: [], drawn: 0 };  // read by the browser test

async function api(method, path, body) {
  const headers = method === "GET" ? {} : { "X-CSRF-Token": csrf };
  if (body) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined,
                                  credentials: "same-origin", cache: "no-store" });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) { status(data.error || res.statusText, true); throw new Error(data.error || res.statusText); }
  return data;
}

const WARNING_MS = 1500;  // a warning stays readable: progress updates do not replace it before then
let warnedAt = -Infinity;
function status(text, error) {
  const s = $("status"); s.textContent = text; s.className = error ? "error" : "";
  if (error) warnedAt = performance.now();
}
function progress(text) { if (performance.now() - warnedAt >= WARNING_MS) status(text); }

function loadImage(src) {
  return new Promise((resolve, reject) => { const img = new Image(); img.onload = () => resolve(img);
                                            img.onerror = reject; img.src = src; });
}

async function showFrame(frame, force) {
  frame = Math.max(0, Math.min(S.info.num_frames - 1, frame));
  const changed = frame !== S.frame || force || !S.frameImg;
  S.frame = frame;
  $("slider").value = frame;
  $("frame-label").textContent = `${frame} / ${S.info.num_frames - 1}`;
  if (!changed) return;
  const [img, overlay, prompts] = await Promise.all([
    S.frameImg && S.frameImg.dataset.frame == frame ? S.frameImg : loadImage(`/api/frame/${frame}`),
    loadImage(`/api/overlay/${frame}?selected=${S.active || 0}&v=${Date.now()}`), api("GET", `/api/prompts/${frame}`)]);
  if (frame !== S.frame) return;  // the user moved on meanwhile
  img.dataset.frame = frame;
  S.frameImg = img; S.overlayImg = overlay; S.prompts = prompts;
  draw();
}

function colorOf(id) {
  const o = S.info.objects.find((x) => x.id === id);
  return o ? `rgb(${o.color.join(",")})` : "#fff";
}

function draw() {
  if (!S.frameImg) return;
  ctx.drawImage(S.frameImg, 0, 0, canvas.width, canvas.height);
  if (S.overlayImg) ctx.drawImage(S.overlayImg, 0, 0, canvas.width, canvas.height);
  const r = Math.max(2, canvas.width / 160);
  for (const p of S.prompts) {
    if (p.box) { ctx.strokeStyle = colorOf(p.obj_id); ctx.lineWidth = r / 2;
                 ctx.strokeRect(p.box[0], p.box[1], p.box[2] - p.box[0], p.box[3] - p.box[1]); }
    p.points.forEach(([x, y], i) => { ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = p.labels[i] ? "#3fb950" : "#f85149"; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.stroke(); });
  }
  if (S.drag && S.drag.moved) { ctx.strokeStyle = "#fff"; ctx.setLineDash([4, 3]);
    ctx.strokeRect(S.drag.x0, S.drag.y0, S.drag.x1 - S.drag.x0, S.drag.y1 - S.drag.y0); ctx.setLineDash([]); }
  drawTimelines();
  window.annotator.drawn += 1;
}

function videoXY(ev) {
  const rect = canvas.getBoundingClientRect();
  const scale = Math.min(rect.width / canvas.width, rect.height / canvas.height);  // object-fit: contain
  const ox = (rect.width - canvas.width * scale) / 2, oy = (rect.height - canvas.height * scale) / 2;
  const x = (ev.clientX - rect.left - ox) / scale, y = (ev.clientY - rect.top - oy) / scale;
  return [Math.max(0, Math.min(canvas.width, x)), Math.max(0, Math.min(canvas.height, y))];
}

async function ensureObject() {
  if (S.active == null || !S.info.objects.some((o) => o.id === S.active)) {
    const obj = await api("POST", "/api/objects", {});
    S.active = obj.id;
    await refreshInfo();
  }
  return S.active;
}

async function prompt(kind, body) {
  const t0 = performance.now();
  const obj_id = await ensureObject();
  const res = await api("POST", `/api/prompt/${kind}`, Object.assign({ obj_id, frame: S.frame }, body));
  await showFrame(S.frame, true);
  const ms = performance.now() - t0;
  window.annotator.latencies.push(ms);
  status(`object ${obj_id}: ${res.area} px (${ms.toFixed(0)} ms)`);
  refreshInfo();
}

canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
canvas.addEventListener("mousedown", (ev) => {
  if (ev.detail > 1) { S.drag = null; return; }  // the 2nd click of a double-click: the 1st made the point
  const [x, y] = videoXY(ev);
  S.drag = { x0: x, y0: y, x1: x, y1: y, moved: false, negative: ev.button === 2 || ev.shiftKey };
});
// Move and release are followed outside the canvas too: a box dragged past the edge is
// clamped to the frame (videoXY) and a release anywhere ends it.
window.addEventListener("mousemove", (ev) => {
  if (!S.drag) return;
  if (!ev.buttons) { S.drag = null; draw(); return; }  // released where we could not see it
  [S.drag.x1, S.drag.y1] = videoXY(ev);
  S.drag.moved = Math.hypot(S.drag.x1 - S.drag.x0, S.drag.y1 - S.drag.y0) > canvas.width / 100 + 2;
  if (S.drag.moved) draw();
});
window.addEventListener("mouseup", (ev) => {
  const d = S.drag; S.drag = null;
  if (!d) return;
  [d.x1, d.y1] = videoXY(ev);
  d.moved = d.moved || Math.hypot(d.x1 - d.x0, d.y1 - d.y0) > canvas.width / 100 + 2;
  draw();
  if (busy()) return;
  if (d.moved) {
    prompt("box", { box: [Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)] }).catch(() => {});
  } else {
    prompt("point", { x: d.x0, y: d.y0, positive: !d.negative }).catch(() => {});
  }
});

function busy() {
  if (S.info.job && S.info.job.running) { status("tracking is running: wait for it or press Cancel", true); return true; }
  return false;
}

async function refreshInfo() {
  S.info = await api("GET", "/api/info");
  renderObjects();
  $("undo").disabled = !S.info.can_undo;
  const ex = S.info.export, mark = $("export-state");
  mark.textContent = ex.current ? "\u2713 exported" : ex.ever ? "changes not exported" : "not exported yet";
  mark.className = ex.current ? "ok" : "pending";
  mark.title = ex.current ? `the export in ${S.info.output_dir} holds every change`
                          : "press Export to write the masks (the work itself is saved and survives a restart)";
  if (S.info.version !== S.version) { S.version = S.info.version; S.timeline = await api("GET", "/api/timeline"); drawTimelines(); }
}

// Rows are kept and updated in place: a re-render (polling, the end of tracking) never takes
// the focus or a half-typed name away.
function renderObjects() {
  const ul = $("objects");
  if (S.active == null && S.info.objects.length) S.active = S.info.objects[0].id;
  const rows = new Map([...ul.children].map((li) => [li.dataset.id, li]));
  S.info.objects.forEach((o, i) => {
    const li = rows.get(String(o.id)) || objectRow(o);
    rows.delete(String(o.id));
    if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);  // only moved when out of order (a move blurs)
    li.className = o.id === S.active ? "active" : "";
    const name = li.querySelector("input"), type = li.querySelector("select");
    if (document.activeElement !== name && !name.dataset.editing) name.value = o.name;
    if (document.activeElement !== type) type.value = o.type;
    const from = S.info.dirty[String(o.id)];
    let mark = li.querySelector(".retrack");
    if (from != null) {  // prompted since last tracked (also after a restart): Track re-tracks it from there
      if (!mark) { mark = document.createElement("span"); mark.className = "retrack"; li.append(mark); }
      mark.textContent = `\u27f3 ${from}`; mark.title = `to re-track from frame ${from} (press Track)`;
    } else if (mark) mark.remove();
  });
  for (const li of rows.values()) li.remove();
}

function objectRow(o) {
  const li = document.createElement("li"); li.dataset.id = o.id;
  const swatch = document.createElement("span"); swatch.className = "swatch";
  swatch.style.background = `rgb(${o.color.join(",")})`;  // CSSOM, not an inline style attribute (CSP)
  const id = document.createElement("b"); id.textContent = o.id;
  const name = document.createElement("input"); name.type = "text"; name.value = o.name; name.title = "name";
  name.addEventListener("input", () => { name.dataset.editing = "1"; });
  name.addEventListener("change", () => api("PATCH", `/api/objects/${o.id}`, { name: name.value })
    .then(() => { delete name.dataset.editing; return refreshInfo(); }).catch(() => {}));
  name.addEventListener("keydown", (ev) => { if (ev.key === "Enter") name.blur(); });
  const type = document.createElement("select"); type.title = "instrument type";
  for (const t of [""].concat(S.info.types)) type.add(new Option(t || "(type)", t, false, t === o.type));
  type.addEventListener("change", () => api("PATCH", `/api/objects/${o.id}`, { type: type.value }).then(refreshInfo).catch(() => {}));
  const del = document.createElement("button"); del.textContent = "\u2715"; del.title = "delete object (z undoes it)";
  del.addEventListener("click", (ev) => { ev.stopPropagation();
    api("DELETE", `/api/objects/${o.id}`).then(() => { if (S.active === o.id) S.active = null; return refreshInfo(); })
      .then(() => { status(`deleted object ${o.id} with its prompts and masks (Undo / z brings it back)`); return showFrame(S.frame, true); })
      .catch(() => {}); });
  li.append(swatch, id, name, type, del);
  li.addEventListener("click", () => selectObject(o.id));
  return li;
}

function selectObject(id) {
  if (S.active === id) return;
  S.active = id; renderObjects(); showFrame(S.frame, true);  // the overlay outlines the selected object
}

function drawTimelines() {
  const box = $("timelines");
  if (!S.timeline || !S.info) return;
  $("threshold").textContent = `(flag < ${S.timeline.threshold})`;
  for (const o of S.info.objects) {
    let c = box.querySelector(`canvas[data-id="${o.id}"]`);
    if (!c) { c = document.createElement("canvas"); c.className = "timeline"; c.dataset.id = o.id; c.width = 300; c.height = 28;
              c.title = `object ${o.id}: object score per frame`;
              c.addEventListener("click", (ev) => { const r = c.getBoundingClientRect();
                showFrame(Math.floor((ev.clientX - r.left) / r.width * S.info.num_frames)); });
              box.append(c); }
    const t = S.timeline.objects[String(o.id)], g = c.getContext("2d"), n = S.info.num_frames, w = c.width / n;
    g.clearRect(0, 0, c.width, c.height);
    if (t) t.prob.forEach((p, f) => { if (p == null) return;
      g.fillStyle = p < S.timeline.threshold ? "#f85149" : `rgb(${o.color.join(",")})`;
      const h = Math.max(2, p * c.height); g.fillRect(f * w, c.height - h, Math.max(1, w), h); });
    if (t) { g.fillStyle = "#e3b341"; t.iou.forEach((q, f) => { if (q == null) return;  // predicted IoU ticks
      g.fillRect(f * w, c.height - Math.max(0, Math.min(1, q)) * (c.height - 2) - 2, Math.max(1, w), 2); }); }
    g.fillStyle = "#fff"; g.fillRect(S.frame * w, 0, Math.max(1, w / 2), c.height);
  }
  for (const c of box.querySelectorAll("canvas")) if (!S.info.objects.some((o) => String(o.id) === c.dataset.id)) c.remove();
}

function nextFlagged() {
  if (!S.timeline) return;
  const flagged = new Set();
  for (const t of Object.values(S.timeline.objects)) t.flagged.forEach((f) => flagged.add(f));
  const after = [...flagged].sort((a, b) => a - b).find((f) => f > S.frame);
  if (after !== undefined) showFrame(after); else status("no flagged frame after this one");
}

async function track(direction) {
  if (busy()) return;
  await api("POST", "/api/track", { direction });
  $("cancel").disabled = false;
  S.info.job = { running: true };
  S.polling = setInterval(pollTracking, 200);
}

async function pollTracking() {
  if (S.polling == null || S.pollBusy) return;
  S.pollBusy = true;
  try { await pollOnce(); } finally { S.pollBusy = false; }
}

async function pollOnce() {
  const job = await api("GET", "/api/track");
  $("progress").max = Math.max(1, job.total); $("progress").value = job.done;
  if (job.running) {
    progress(`tracking: ${job.done} / ${job.total} frames` + (job.frame != null ? ` (at frame ${job.frame})` : ""));
    if (job.version !== S.version) {  // new masks: the timeline and the frame in view follow them
      S.version = job.version;
      S.timeline = await api("GET", "/api/timeline"); drawTimelines();
      if ($("follow").checked && job.frame != null) await showFrame(job.frame, true);
      else await showFrame(S.frame, true);  // the view stays where the user put it
    }
  }
  if (!job.running) {
    clearInterval(S.polling); S.polling = null; $("cancel").disabled = true;
    status(job.error ? `tracking failed: ${job.error}` : `${job.cancelled ? "cancelled" : "tracked"} ${job.done} frames in ${job.seconds} s`, !!job.error);
    await refreshInfo(); await showFrame(S.frame, true);
  }
}

$("track-forward").onclick = () => track("forward").catch(() => {});
$("track-reverse").onclick = () => track("reverse").catch(() => {});
$("track-both").onclick = () => track("both").catch(() => {});
$("cancel").onclick = () => api("POST", "/api/track/cancel").catch(() => {});
$("undo").onclick = () => api("POST", "/api/undo").then(refreshInfo).then(() => showFrame(S.frame, true)).catch(() => {});
$("export").onclick = () => { status("exporting..."); api("POST", "/api/export")
  .then((r) => { status(`exported to ${r.masks}, ${r.coco}, ${r.overlay}`); return refreshInfo(); }).catch(() => {}); };
function addObject() {
  return api("POST", "/api/objects", {}).then((o) => { S.active = o.id; return refreshInfo(); })
    .then(() => { status(`object ${S.active}: click or drag on the frame`); return showFrame(S.frame, true); }).catch(() => {});
}
$("add-object").onclick = addObject;
$("preset").onchange = () => api("POST", "/api/preset", { preset: $("preset").value }).then(refreshInfo)
  .then(() => status(`memory preset ${S.info.preset}: the next Track re-tracks every object`)).catch(() => refreshInfo());
$("slider").oninput = () => showFrame(Number($("slider").value));

document.addEventListener("keydown", (ev) => {
  const t = ev.target;  // keys typed into a field are text, never shortcuts
  if ((t.tagName === "INPUT" && !["range", "checkbox", "button"].includes(t.type)) || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const step = ev.shiftKey ? 10 : 1;
  if (ev.key === "ArrowRight") { showFrame(S.frame + step); ev.preventDefault(); }
  else if (ev.key === "ArrowLeft") { showFrame(S.frame - step); ev.preventDefault(); }
  else if (ev.key === "Home") showFrame(0);
  else if (ev.key === "End") showFrame(S.info.num_frames - 1);
  else if (ev.key === "n") nextFlagged();
  else if (ev.key === "z") $("undo").click();
  else if (ev.key === "t") $("track-forward").click();
  else if (ev.key === "+") addObject();
  else if (/^[1-9]$/.test(ev.key) && S.info.objects.some((o) => o.id === Number(ev.key))) selectObject(Number(ev.key));
});

(async function start() {
  await refreshInfo();
  canvas.width = S.info.width; canvas.height = S.info.height;
  const fps = `${Number(S.info.fps.toFixed(2))} fps` + (S.info.fps_source === "default" ? " (a default: the video does not say; --fps or meta.json)" : "");
  $("title").textContent = `${S.info.video} (${S.info.num_frames} frames, ${fps})`;
  $("slider").max = S.info.num_frames - 1;
  for (const p of S.info.presets) $("preset").add(new Option(p, p, false, p === S.info.preset));
  S.timeline = await api("GET", "/api/timeline");
  await showFrame(0, true);
  document.body.dataset.ready = "1";
})();
