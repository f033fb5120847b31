// The Fence web console: sessions, a session's history and runs, a run's status and live
// events, and its actions (cancel, approve, deny). It talks to the gateway's /v1 API with
// the bearer token a person enters once (kept in this browser tab's sessionStorage).
// Every piece of user content is put in the page as text (textContent), never as HTML.
"use strict";

const TOKEN_KEY = "fence-console-token";
const REFRESH_MS = 2000;
const HISTORY_PAGE = 20;
const RUNS_PAGE = 20;
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "rejected"]);

let view = 0; // bumped on every navigation: timers and streams of a left page stop

// -- the API --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token()}`, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const body = await response.json().catch(() => null);
  if (response.status === 401 && !options.trying) {  // the token was revoked: log in again
    sessionStorage.removeItem(TOKEN_KEY);
    route();
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// Server-Sent Events over fetch: EventSource cannot send the Authorization header.
async function follow(path, onEvent, isCurrent) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let fields = {};
  while (isCurrent()) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
      if (line === "") {
        if (fields.data !== undefined) onEvent(fields.event, fields.id, JSON.parse(fields.data));
        fields = {};
      } else if (!line.startsWith(":")) {
        const at = line.indexOf(":");
        const name = at < 0 ? line : line.slice(0, at);
        fields[name] = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
      }
    }
  }
  reader.cancel().catch(() => {});
}

// -- building the page (text only) ----------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "-";
}

function state(value) {
  return el("span", { class: `state state-${value}`, text: value });
}

function link(href, text) {
  return el("a", { href, text });
}

function table(id, headings, rows) {
  const head = el("tr", {}, ...headings.map((h) => el("th", { text: h })));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, ...rows));
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

function failure(error) {
  return el("p", { class: "error", role: "alert", text: `Error: ${error.message}` });
}

// -- pages ----------------------------------------------------------------------------

function login() {
  document.getElementById("logout").hidden = true;
  const input = el("input", { id: "login-token", type: "password", autocomplete: "off" });
  const message = el("p", { class: "error", id: "login-error" });
  const form = el(
    "form",
    { class: "login", id: "login" },
    el("label", { for: "login-token", text: "Bearer token (one of FENCE_API_TOKENS)" }),
    input,
    el("button", { id: "login-submit", type: "submit", text: "Enter" }),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("/v1/sessions?limit=1", { trying: true });
      route();
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      message.textContent = error.status === 401 ? "That token is not accepted." : error.message;
    }
  });
  show(el("h1", { text: "Log in" }), form);
}

async function sessionsPage(current) {
  const heading = el("h1", { text: "Sessions" });
  const body = el("div", { id: "sessions" }, el("p", { class: "muted", text: "Loading…" }));
  show(heading, el("p", { class: "muted", text: "Most recently active first." }), body);
  while (current()) {
    try {
      const page = await api("/v1/sessions?limit=100");
      if (!current()) return;
      const rows = page.sessions.map((s) =>
        el(
          "tr",
          { "data-session": s.session_id },
          el("td", {}, link(`#/session/${encodeURIComponent(s.session_id)}`, s.session_id)),
          el("td", {}, state(s.state)),
          el("td", {}, s.active_run ? link(`#/run/${s.active_run}`, s.active_run) : "-"),
          el("td", { text: String(s.queued_count) }),
          el("td", { text: when(s.last_activity) }),
        ),
      );
      const empty = el("p", { class: "muted", text: "No sessions yet." });
      body.replaceChildren(
        rows.length
          ? table("sessions-table", ["session", "state", "active run", "queued", "last activity"], rows)
          : empty,
      );
    } catch (error) {
      body.replaceChildren(failure(error));
    }
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
  }
}

function runRow(run) {
  return el(
    "tr",
    { "data-run": run.run_id },
    el("td", {}, link(`#/run/${run.run_id}`, run.run_id)),
    el("td", {}, state(run.state)),
    el("td", { text: run.agent }),
    el("td", { text: when(run.accepted_at) }),
    el("td", { class: "text", text: run.message }),
    el("td", { class: "text error", text: run.error || "" }),
  );
}

async function sessionPage(sessionId, current) {
  const encoded = encodeURIComponent(sessionId);
  const queue = el("div", { id: "queue" });
  const runs = el("div", { id: "runs" });
  const history = el("ol", { class: "history", id: "history", reversed: "" });
  const older = el("button", { id: "older", type: "button", text: "Older messages", hidden: "" });
  const moreRuns = el("button", { id: "more-runs", type: "button", text: "More runs", hidden: "" });
  show(
    el("h1", { text: `Session ${sessionId}` }),
    el("h2", { text: "Queue" }),
    queue,
    el("h2", { text: "Runs" }),
    runs,
    moreRuns,
    el("h2", { text: "History (newest first)" }),
    history,
    older,
  );
  try {
    const info = await api(`/v1/sessions/${encoded}`);
    if (!current()) return;
    const active = info.active_run ? link(`#/run/${info.active_run}`, info.active_run) : "none";
    const queued = info.queued.map((id) => el("li", {}, link(`#/run/${id}`, id)));
    queue.replaceChildren(
      el("p", {}, "State: ", state(info.state), " · active run: ", active),
      queued.length ? el("ol", { id: "queued" }, ...queued) : el("p", { class: "muted", text: "Nothing queued." }),
    );
  } catch (error) {
    queue.replaceChildren(failure(error));
  }
  let runsCursor = null;
  const runsBody = el("tbody");
  runs.replaceChildren(
    el(
      "table",
      { id: "runs-table" },
      el("thead", {}, el("tr", {}, ...["run", "state", "agent", "accepted", "message", "error"].map((h) => el("th", { text: h })))),
      runsBody,
    ),
  );
  async function loadRuns() {
    const query = new URLSearchParams({ limit: RUNS_PAGE });
    if (runsCursor) query.set("cursor", runsCursor);
    const page = await api(`/v1/sessions/${encoded}/runs?${query}`);
    runsBody.append(...page.runs.map(runRow));
    runsCursor = page.next_cursor;
    moreRuns.hidden = !runsCursor;
  }
  let before = null;
  async function loadHistory() {
    const query = new URLSearchParams({ limit: HISTORY_PAGE });
    if (before !== null) query.set("before_seq", before);
    try {
      const page = await api(`/v1/sessions/${encoded}/messages?${query}`);
      history.append(
        ...page.messages.map((m) =>
          el("li", { "data-seq": m.seq }, el("span", { class: "role", text: m.role }), el("span", { class: "text", text: m.content })),
        ),
      );
      before = page.next_before_seq;
      older.hidden = before === null;
    } catch (error) {
      history.append(el("li", {}, failure(error)));
      older.hidden = true;
    }
  }
  older.addEventListener("click", loadHistory);
  moreRuns.addEventListener("click", loadRuns);
  try {
    await loadRuns();
  } catch (error) {
    runs.replaceChildren(failure(error));
  }
  await loadHistory();
}

function field(name, value, id) {
  return [el("dt", { text: name }), el("dd", id ? { id, text: value } : { text: value })];
}

async function runPage(runId, current) {
  const status = el("dl", { id: "status" });
  const actions = el("div", { class: "actions", id: "actions" });
  const message = el("p", { id: "action-result", role: "status" });
  const events = el("ol", { class: "events", id: "events" });
  show(el("h1", { text: `Run ${runId}` }), status, actions, message, el("h2", { text: "Events" }), events);

  let actionsFor = null;

  async function refresh() {
    let run;
    try {
      run = await api(`/v1/runs/${runId}`);
    } catch (error) {
      status.replaceChildren(failure(error));
      return null;
    }
    if (!current()) return null;
    status.replaceChildren(
      el("dt", { text: "state" }),
      el("dd", { id: "run-state" }, state(run.state)),
      ...field("session", run.session_id),
      ...field("agent", run.agent),
      ...field("message", run.message, "run-message"),
      ...field("result", run.result || "-", "run-result"),
      ...field("error", run.error || "-", "run-error"),
      ...field("accepted", when(run.accepted_at)),
      ...field("started", when(run.started_at)),
      ...field("finished", when(run.finished_at)),
      ...field("deliveries / attempts", `${run.deliveries} / ${run.attempts}`),
    );
    const shown = `${run.state}|${run.approval ? run.approval.id : ""}`;
    if (shown === actionsFor) return run; // keep what a person is typing
    actionsFor = shown;
    const sessionLink = link(`#/session/${encodeURIComponent(run.session_id)}`, "Session");
    const buttons = [sessionLink];
    if (!TERMINAL.has(run.state)) {
      buttons.push(el("button", { id: "cancel", type: "button", text: "Cancel run", onclick: () => act(() => api(`/v1/runs/${runId}/cancel`, { method: "POST" }), "Cancel requested.") }));
    }
    if (run.state === "waiting" && run.approval) {
      const call = run.approval;
      const args = el("textarea", { id: "approve-arguments", "aria-label": "arguments" });
      args.value = JSON.stringify(call.arguments, null, 2);
      const reason = el("input", { id: "deny-reason", placeholder: "reason (told to the model)" });
      const approve = () => {
        let edited;
        try {
          edited = JSON.parse(args.value);
        } catch (error) {
          message.textContent = `arguments: not valid JSON (${error.message})`;
          return;
        }
        const same = JSON.stringify(edited) === JSON.stringify(call.arguments);
        const body = same ? { approve: true } : { approve: true, arguments: edited };
        act(() => api(`/v1/runs/${runId}/approval`, { method: "POST", body }), "Approved.");
      };
      const deny = () =>
        act(() => api(`/v1/runs/${runId}/approval`, { method: "POST", body: { approve: false, reason: reason.value || null } }), "Denied.");
      buttons.push(
        el(
          "div",
          { id: "approval" },
          el("p", {}, "Waiting for approval of ", el("code", { text: call.name }), ` (until ${when(call.deadline)}):`),
          args,
          el("button", { id: "approve", type: "button", text: "Approve", onclick: approve }),
          reason,
          el("button", { id: "deny", type: "button", text: "Deny", onclick: deny }),
        ),
      );
    }
    actions.replaceChildren(...buttons);
    return run;
  }

  async function act(call, done) {
    try {
      await call();
      message.textContent = done;
    } catch (error) {
      message.textContent = `Error: ${error.message}`;
    }
    await refresh();
  }

  const run = await refresh();
  if (!run) return;
  try {
    await follow(
      `/v1/runs/${runId}/events`,
      (type, id, event) => {
        const data = JSON.stringify(event.data);
        events.append(el("li", { "data-type": type, "data-id": id }, el("span", { class: "role", text: type }), el("span", { class: "text", text: data })));
        if (type !== "text.delta") refresh();
      },
      current,
    );
  } catch (error) {
    events.append(el("li", {}, failure(error)));
  }
}

// -- routing --------------------------------------------------------------------------

function route() {
  view += 1;
  const mine = view;
  const current = () => view === mine;
  if (!token()) return login();
  document.getElementById("logout").hidden = false;
  const [, page, id] = (location.hash || "#/sessions").match(/^#\/([^/]*)\/?(.*)$/) || [];
  if (page === "session" && id) return sessionPage(decodeURIComponent(id), current);
  if (page === "run" && id) return runPage(decodeURIComponent(id), current);
  return sessionsPage(current);
}

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  route();
});
window.addEventListener("hashchange", route);
route();
