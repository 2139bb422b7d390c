// The ragsvc page: upload and follow jobs, list and delete documents, ask and watch the
// answer stream in. No build step, nothing fetched but this server's own API.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "ragsvc.api_key";

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function showError(message) {
  $("error").textContent = message || "";
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    if (response.status === 401) keyNeeded();
    const error = new Error(`${path}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

// Errors go next to what they are about: a missing or refused key beside the key box.
function report(error) {
  showError(error.status === 401 ? "" : error.message);
}

function text(tag, value, className) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (className) node.className = className;
  return node;
}

function pages(source) {
  if (source.page_start == null) return "";
  return source.page_start === source.page_end
    ? `page ${source.page_start}` : `pages ${source.page_start}-${source.page_end}`;
}

// -- the key ---------------------------------------------------------------------------------

function showKeyState() {
  const state = $("key-state");
  state.textContent = sessionStorage.getItem(KEY) ? "key set for this tab" : "";
  state.classList.remove("needed");
}

function keyNeeded() {
  const state = $("key-state");
  state.textContent = sessionStorage.getItem(KEY)
    ? "This key was refused (unknown or revoked): enter another."
    : "This server needs an API key: enter one here.";
  state.classList.add("needed");
  $("api-key").placeholder = "rsk_… (this server needs one)";
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
  $("api-key").value = "";
  showKeyState();
  refreshDocuments();
});

// -- uploads and jobs ------------------------------------------------------------------------

function jobRow(job) {
  let row = document.querySelector(`#jobs li[data-job="${job.id}"]`);
  if (!row) {
    row = document.createElement("li");
    row.dataset.job = job.id;
    $("jobs").prepend(row);
  }
  row.dataset.state = job.state;
  // A file stored before is not a failure: say so in words, without a chunk count.
  const unchanged = job.outcome === "unchanged";
  const state = unchanged ? "already stored, unchanged" : job.state;
  const progress = !unchanged && job.chunks_total
    ? ` ${job.chunks_done}/${job.chunks_total} chunks` : "";
  const why = job.error ? ` (${job.error})` : job.warning ? ` (${job.warning})` : "";
  row.replaceChildren(text("span", `${job.file_name}: `), text("span", state, "state"),
    text("span", `${progress}${why}`));
}

async function follow(jobs) {
  let open = jobs.filter((j) => !["ready", "failed", "cancelled"].includes(j.state));
  while (open.length) {
    await new Promise((done) => setTimeout(done, 500));
    const current = await Promise.all(open.map((j) => api(`/jobs/${j.id}`)));
    current.forEach(jobRow);
    open = current.filter((j) => !["ready", "failed", "cancelled"].includes(j.state));
  }
  refreshDocuments();
}

async function upload(files) {
  if (!files.length) return;
  showError("");
  const form = new FormData();
  for (const file of files) form.append("files", file);
  const collection = $("collection").value.trim();
  if (collection) form.append("collection", collection);
  try {
    const { jobs } = await api("/documents", { method: "POST", body: form });
    jobs.forEach(jobRow);
    await follow(jobs);
  } catch (error) {
    report(error);
  }
}

// Choosing files uploads them, once: the choice is cleared as the upload starts.
$("upload-form").addEventListener("submit", (event) => event.preventDefault());
$("files").addEventListener("change", () => {
  const chosen = Array.from($("files").files);
  $("files").value = "";
  upload(chosen);
});
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  upload(event.dataTransfer.files);
});

// -- documents -------------------------------------------------------------------------------

async function refreshDocuments() {
  try {
    const { documents } = await api("/documents?limit=200");
    showError("");
    $("documents").replaceChildren(...documents.map((doc) => {
      const row = document.createElement("tr");
      const remove = text("button", "Delete", "secondary");
      remove.type = "button";
      remove.setAttribute("aria-label", `Delete ${doc.source_name}`);
      remove.addEventListener("click", async () => {
        try {
          await api(`/documents/${doc.id}`, { method: "DELETE" });
          refreshDocuments();
        } catch (error) { report(error); }
      });
      const cell = document.createElement("td");
      cell.append(remove);
      row.append(text("td", doc.source_name), text("td", doc.collection),
        text("td", doc.page_count ?? ""), text("td", doc.chunk_count), cell);
      return row;
    }));
  } catch (error) {
    report(error);
  }
}
$("refresh").addEventListener("click", refreshDocuments);

// -- asking ----------------------------------------------------------------------------------

function snippet(source) {
  const node = document.createElement("span");
  node.className = "snippet";
  const quote = source.quote;
  const body = source.snippet;
  const at = quote ? body.indexOf(quote) : -1;
  if (at >= 0) {
    node.append(body.slice(0, at), text("mark", quote), body.slice(at + quote.length));
  } else if (quote) {
    node.append(text("mark", quote), " … ", body);
  } else {
    node.append(body);
  }
  return node;
}

function showSources(sources) {
  $("sources").replaceChildren(...sources.map((source) => {
    const item = document.createElement("li");
    if (source.cited) item.classList.add("cited");
    const where = [pages(source), source.location].filter(Boolean).join(", ");
    item.append(text("strong", source.source_name),
      text("span", `${where ? " — " + where : ""}${source.cited ? " (cited)" : ""}`, "where"),
      snippet(source));
    return item;
  }));
}

// -- feedback --------------------------------------------------------------------------------

let answeredId = null;

async function rate(rating, correction) {
  const body = { request_id: answeredId, rating };
  if (correction) body.correction = correction;
  await api("/feedback", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  for (const [id, value] of [["rate-up", "up"], ["rate-down", "down"]]) {
    $(id).setAttribute("aria-pressed", String(value === rating));
  }
  $("feedback-state").textContent = correction ? "Thanks: correction saved" : "Thanks";
}

function resetFeedback(requestId) {
  answeredId = requestId;
  $("feedback-form").hidden = !requestId;
  $("correction-box").hidden = true;
  $("correction").value = "";
  $("feedback-state").textContent = "";
  for (const id of ["rate-up", "rate-down"]) $(id).setAttribute("aria-pressed", "false");
}

$("rate-up").addEventListener("click", () => {
  $("correction-box").hidden = true;
  rate("up").catch(report);
});
$("rate-down").addEventListener("click", () => {
  $("correction-box").hidden = false;
  rate("down").catch(report);
  $("correction").focus();
});
$("feedback-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const correction = $("correction").value.trim();
  if (correction) rate("down", correction).catch(report);
});

// The conversation so far: each follow-up is asked with it (the server bounds it too).
const MAX_THREAD_MESSAGES = 16;
let thread = [];

function showThread() {
  const items = [];
  for (let i = 0; i + 1 < thread.length; i += 2) {
    const item = document.createElement("li");
    const asked = document.createElement("strong");
    asked.textContent = thread[i].content;
    const answered = document.createElement("span");
    answered.textContent = thread[i + 1].content;
    item.append(asked, document.createElement("br"), answered);
    items.push(item);
  }
  $("thread").replaceChildren(...items);
  $("new-conversation").hidden = thread.length === 0;
}

$("new-conversation").addEventListener("click", () => {
  thread = [];
  showThread();
  $("answer-box").hidden = true;
  $("question").focus();
});

async function ask(question) {
  showError("");
  resetFeedback(null);
  const answer = $("answer");
  answer.textContent = "";
  answer.dataset.tokens = "0";
  answer.dataset.done = "false";
  $("confidence").textContent = "";
  $("searched").textContent = "";
  $("sources").replaceChildren();
  $("answer-box").hidden = false;
  const response = await fetch("/query", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ question, stream: true, messages: thread.length ? thread : undefined }),
  });
  if (!response.ok) {
    let detail = `${response.status}`;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    if (response.status === 401) keyNeeded();
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0 || (end = buffer.indexOf("\r\n\r\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^(\r?\n){2}/, "");
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      const payload = JSON.parse(data.join("\n"));
      if (name === "sources") showSources(payload);
      else if (name === "token") {
        answer.textContent += payload.text;
        answer.dataset.tokens = String(Number(answer.dataset.tokens) + 1);
      } else if (name === "done") {
        answer.textContent = payload.answer;
        $("confidence").textContent =
          `Confidence ${(payload.confidence * 100).toFixed(0)}%` +
          (payload.answerable ? "" : " (not found in the documents)");
        showSources(payload.sources);
        resetFeedback(payload.request_id);
        if (payload.retrieval_query) $("searched").textContent = `Searched: ${payload.retrieval_query}`;
        thread = [...thread, { role: "user", content: question },
          { role: "assistant", content: payload.answer }].slice(-MAX_THREAD_MESSAGES);
        showThread();
        answer.dataset.done = "true";
      } else if (name === "error") {
        throw new Error(payload.detail);
      }
    }
  }
}

$("ask-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  $("ask").disabled = true;
  try { await ask(question); } catch (error) { report(error); }
  finally { $("ask").disabled = false; }
});
$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask-form").requestSubmit();
  }
});

showKeyState();
refreshDocuments();
