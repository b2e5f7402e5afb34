// The vocable page: live transcription over the WebSocket, and file upload through the OpenAI-style API.
// Vanilla JS, no build step, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let live = null;  // {ws, ctx, media, node, opened, stopping, ...} from Start until the recording ends
const RETRY_SECONDS = [1, 2, 4, 8, 15];  // waits before each reconnection when a connection is lost
let lastFile = null;

function apiKey() { return $("api-key").value.trim(); }
function authHeaders() { return apiKey() ? { Authorization: "Bearer " + apiKey() } : {}; }
function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}
function fmtTime(s) { return s.toFixed(2).padStart(6, " "); }

async function loadModels() {
  try {
    const health = await (await fetch("/health")).json();
    $("key-label").hidden = !health.auth;
    const reply = await fetch("/v1/models", { headers: authHeaders() });
    if (!reply.ok) { setStatus("enter the server's API key", true); return; }
    const models = (await reply.json()).data;
    $("model").replaceChildren(...models.map((m) => new Option(m.id, m.id)));
  } catch (e) {
    setStatus("server unreachable: " + e, true);
  }
}

function streamUrl() {
  const url = new URL("/v1/audio/stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (apiKey()) url.searchParams.set("api_key", apiKey());
  return url.toString();
}

function showEvent(event, offset) {
  // offset: seconds of the recording before this connection (a reconnected stream's times start at 0)
  if (event.type === "partial") {
    $("partial").textContent = event.text;
  } else if (event.type === "final") {
    const line = document.createElement("p");
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = fmtTime(offset + event.start) + " – " + fmtTime(offset + event.end);
    line.append(time, document.createTextNode(event.text));
    $("finals").append(line);
    $("partial").textContent = "";
  } else if (event.type === "error") {
    setStatus(event.message, true);
  } else if (event.type === "ready") {
    setStatus("listening (" + event.model + ", " + event.engine + ")");
  } else if (event.type === "warning") {  // e.g. words to expect that a model without an LM cannot boost
    setStatus($("status").textContent + " — note: " + event.message);
  }
}

async function explainRefusal() {
  try {
    const health = await (await fetch("/health")).json();
    if (health.streams >= health.max_streams) return "the server is busy (" + health.max_streams + " streams open)";
    if (health.auth) return "refused: check the API key";
  } catch (e) { /* fall through */ }
  return "could not connect to the server";
}

const CLOSE_REASONS = { 1001: "the server went away", 1006: "the connection was lost", 1009: "a message was too large",
  1011: "the server failed", 1012: "the server is restarting" };
const RECONNECT_ON = [1001, 1006, 1012];  // a server gone or restarting may come back: the others would recur

function audioSource(ctx, media) {
  // Firefox refuses a microphone whose rate differs from the context's: then record at the device's rate
  // (the server resamples).
  try { return [ctx, ctx.createMediaStreamSource(media)]; } catch (e) {
    ctx.close();
    const fallback = new AudioContext();
    return [fallback, fallback.createMediaStreamSource(media)];
  }
}

async function startRecording() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("this browser gives no microphone here (a page needs https or localhost)", true);
    return;
  }
  document.body.dataset.state = "starting";
  $("finals").replaceChildren();  // each recording's times start at 0: a new transcript, not an appended one
  $("partial").textContent = "";
  const session = { ws: null, ctx: null, media: null, node: null, opened: false, stopping: false, retries: 0,
                    offset: 0 };
  live = session;
  $("record").textContent = "Stop";
  setStatus("connecting…");
  try {
    session.media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
  } catch (e) {
    finish(session, "no microphone: " + e.message);
    return;
  }
  let ctx;
  try { ctx = new AudioContext({ sampleRate: 16000 }); } catch (e) { ctx = new AudioContext(); }
  let source;
  [ctx, source] = audioSource(ctx, session.media);
  session.ctx = ctx;
  await ctx.resume();
  if (session.stopping) { finish(session); return; }  // Stop pressed while the microphone was opening
  session.began = ctx.currentTime;
  connect(session);
  const send = (buffer) => {
    const ws = session.ws;
    if (ws && ws.readyState === WebSocket.OPEN && session.opened && !session.stopping) ws.send(buffer);
  };
  if (ctx.audioWorklet) {
    try {
      await ctx.audioWorklet.addModule("/static/pcm-worklet.js");
    } catch (e) {
      if (!session.stopping) { session.ws.close(); finish(session, "cannot capture audio: " + e.message); }
      return;  // stopped meanwhile: the closed context refused the module, as it should
    }
    if (session.stopping) return;
    const node = new AudioWorkletNode(ctx, "pcm-capture");
    node.port.onmessage = (e) => send(e.data);
    source.connect(node).connect(ctx.destination);  // outputs silence; keeps the node running
    session.node = node;
  } else {  // older browsers: ScriptProcessor
    const node = ctx.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (e) => {
      const input = e.inputBuffer.getChannelData(0);
      const pcm = new Int16Array(input.length);
      for (let i = 0; i < input.length; i++) { const s = Math.max(-1, Math.min(1, input[i])); pcm[i] = s < 0 ? s * 32768 : s * 32767; }  // as the worklet
      send(pcm.buffer);
    };
    source.connect(node).connect(ctx.destination);
    session.node = node;
  }
  if (!session.stopping) document.body.dataset.state = "recording";
}

function connect(session) {
  // One WebSocket of the recording; a lost one is opened again (RETRY_SECONDS) while the microphone runs,
  // and the transcript goes on where it was (audio in between is not heard).
  const ctx = session.ctx;
  const ws = new WebSocket(streamUrl());
  ws.binaryType = "arraybuffer";
  session.ws = ws;
  ws.onopen = () => {
    session.opened = true;
    session.offset = ctx.currentTime - session.began;
    ws.send(JSON.stringify({ type: "start", sample_rate: ctx.sampleRate, format: "s16le", model: $("model").value || undefined,
                             prompt: $("prompt").value || undefined }));  // its words the LM lacks are boosted
    if (session.stopping) ws.send(JSON.stringify({ type: "end" }));
  };
  ws.onmessage = (m) => {
    const event = JSON.parse(m.data);
    showEvent(event, session.offset);
    if (event.type === "ready" && session.retries > 0) {  // reconnected
      session.retries = 0;
      if (!session.stopping) document.body.dataset.state = "recording";
    }
    if (event.type === "error") document.body.dataset.state = "error";  // kept when the socket closes
    if (event.type === "done") ws.close();
  };
  ws.onclose = async (closing) => {
    if (session.ws !== ws) return;  // an earlier socket of this recording
    if (document.body.dataset.state === "error") { finish(session, null); return; }  // the server's error stays
    const wasOpen = session.opened;
    session.opened = false;
    const retrying = session.retries > 0 || (wasOpen && RECONNECT_ON.includes(closing.code));
    if (!session.stopping && retrying && session.retries < RETRY_SECONDS.length) {
      const wait = RETRY_SECONDS[session.retries++];
      const why = CLOSE_REASONS[closing.code] || "the connection was lost";
      $("partial").textContent = "";
      setStatus(why + "; reconnecting in " + wait + " s (try " + session.retries + " of " + RETRY_SECONDS.length + ")…", true);
      document.body.dataset.state = "reconnecting";
      setTimeout(() => { if (live === session && !session.stopping) connect(session); }, wait * 1000);
      return;
    }
    const refused = !wasOpen && !session.stopping;
    const lost = wasOpen && !session.stopping && CLOSE_REASONS[closing.code];
    finish(session, refused ? await explainRefusal() : lost ? "stopped: " + lost : undefined);
  };
}

function finish(session, error) {
  // The end of a recording: error undefined → idle, a message → shown as an error, null → keep what is shown.
  stopAudio(session);
  if (live === session) live = null;
  $("record").textContent = "Start recording";
  if (error === null) return;
  setStatus(error || "idle", Boolean(error));
  document.body.dataset.state = error ? "error" : "idle";
}

function stopAudio(session) {
  // The microphone goes off at once: the socket may stay open a moment for the last final.
  if (session.node) session.node.disconnect();
  if (session.media) session.media.getTracks().forEach((t) => t.stop());
  if (session.ctx && session.ctx.state !== "closed") session.ctx.close();
}

function stopRecording() {
  const session = live;
  if (!session || session.stopping) return;
  session.stopping = true;
  stopAudio(session);
  const ws = session.ws;
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));  // server answers "done"
  // still connecting: onopen sends "end" at once; no socket yet: startRecording stops where it is;
  // waiting to reconnect: nothing is left to finish
  if (ws && ws.readyState >= WebSocket.CLOSING) { finish(session); return; }
  setStatus("finishing…");
}

async function transcribeFile(format) {
  const form = new FormData();
  form.append("file", lastFile);
  form.append("model", $("model").value || "default");
  form.append("response_format", format);
  if ($("prompt").value) form.append("prompt", $("prompt").value);
  if (format === "verbose_json") form.append("timestamp_granularities[]", "segment");
  const reply = await fetch("/v1/audio/transcriptions", { method: "POST", body: form, headers: authHeaders() });
  if (!reply.ok) {
    let message = reply.status + " " + reply.statusText;
    try { message = (await reply.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return format === "verbose_json" ? reply.json() : reply.text();
}

async function onUpload(e) {
  e.preventDefault();
  lastFile = $("file").files[0];
  if (!lastFile) { $("upload-status").textContent = "choose a file first"; return; }
  $("upload-status").textContent = "transcribing…";
  $("upload-status").className = "";
  try {
    const result = await transcribeFile("verbose_json");
    $("upload-text").textContent = result.text || "(no speech found)";
    $("upload-status").textContent = result.duration.toFixed(1) + " s of audio"
      + (result.warnings ? " — note: " + result.warnings.join("; ") : "");
    $("download-srt").disabled = $("download-vtt").disabled = false;
  } catch (err) {
    $("upload-status").textContent = err.message;
    $("upload-status").className = "error";
  }
}

async function download(format) {
  try {
    const text = await transcribeFile(format);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    link.download = lastFile.name.replace(/\.[^.]*$/, "") + "." + format;
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (err) {
    $("upload-status").textContent = err.message;
    $("upload-status").className = "error";
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("api-key").value = params.get("api_key") || localStorage.getItem("vocable-api-key") || "";
  $("api-key").addEventListener("change", () => { localStorage.setItem("vocable-api-key", apiKey()); loadModels(); });
  $("record").addEventListener("click", () => (live ? stopRecording() : startRecording()));
  $("upload-form").addEventListener("submit", onUpload);
  $("download-srt").addEventListener("click", () => download("srt"));
  $("download-vtt").addEventListener("click", () => download("vtt"));
  await loadModels();
  if (params.get("autostart") === "1") startRecording();  // used by the browser test
});
