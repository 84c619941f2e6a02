// Baton console: plain JavaScript, no build step. Everything shown is built with DOM calls
// and textContent, never innerHTML, so node data (facts, messages) cannot inject markup.
"use strict";

const state = {
  csrf: "",
  filter: {},
  filterError: null,
  selection: "",
  nodes: [],
  agents: [],
  resourceRows: null,
  resourceNodes: [],
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showError(id, message) {
  const node = $(id);
  node.textContent = message || "";
  node.hidden = !message;
}

async function api(method, path, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    options.headers["X-CSRF-Token"] = state.csrf;
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body || {});
  }
  const response = await fetch(path, options);
  let data = {};
  try { data = await response.json(); } catch (_) { /* no body */ }
  if (!response.ok) {
    if (response.status === 401 && path !== "/api/login") showLogin();
    throw new Error(data.error || `${response.status} ${response.statusText}`);
  }
  return data;
}

function ago(ms, now) {
  const secs = Math.max(0, Math.round((now - ms) / 1000));
  if (secs < 60) return `${secs}s ago`;
  if (secs < 3600) return `${Math.round(secs / 60)}m ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)}h ago`;
  return `${Math.round(secs / 86400)}d ago`;
}

// Dates are ISO 8601 in UTC (2026-12-02 14:36:10Z): never ambiguous, whatever the locale.
function when(ms) {
  return ms ? `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")}Z` : "";
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

// A few names, then how many more: a list that stays one line at any fleet size.
function someOf(names, shown = 8) {
  return names.length <= shown ? names.join(", ") : `${names.slice(0, shown).join(", ")} and ${names.length - shown} more`;
}

function brief(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// ---------------------------------------------------------------- session

async function start() {
  const session = await api("GET", "/api/session");
  $("collective").textContent = `collective ${session.collective}`;
  if (session.login_required && !session.logged_in) return showLogin();
  enter(session);
}

function showLogin() {
  $("app").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login-view").hidden = false;
  $("login-user").focus();
}

function enter(session) {
  state.csrf = session.csrf;
  $("login-view").hidden = true;
  $("app").hidden = false;
  $("who").textContent = session.user ? `logged in as ${session.user}` : "no login (local only)";
  $("logout").hidden = !session.user;
  loadAgents();
  refreshNodes();
  followRollouts();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("login-error", "");
  try {
    const session = await api("POST", "/api/login", { user: $("login-user").value, password: $("login-password").value });
    $("login-password").value = "";
    enter({ ...session, user: session.user });
  } catch (error) {
    showError("login-error", error.message);
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/logout"); } finally { showLogin(); }
});

// ---------------------------------------------------------------- tabs

document.querySelectorAll(".tabs button").forEach((button) => {
  button.addEventListener("click", () => {
    document.querySelectorAll(".tabs button").forEach((other) => other.classList.toggle("active", other === button));
    document.querySelectorAll(".tab").forEach((tab) => { tab.hidden = tab.id !== `tab-${button.dataset.tab}`; });
    if (button.dataset.tab === "history") loadHistory();
    if (button.dataset.tab === "puppet") renderPuppetRows();
  });
});

// ---------------------------------------------------------------- filter and nodes

function readFilter() {
  const filter = {};
  for (const key of ["identity", "class", "fact", "agent", "select"]) {
    const value = $(`filter-${key}`).value.trim();
    if (value) filter[key] = [value];
  }
  return filter;
}

$("filter-form").addEventListener("submit", (event) => {
  event.preventDefault();
  refreshNodes(readFilter());
});

$("filter-clear").addEventListener("click", () => {
  for (const key of ["identity", "class", "fact", "agent", "select"]) $(`filter-${key}`).value = "";
  refreshNodes({});
});

// Lists the nodes `candidate` selects and makes it the current filter, or, without one,
// refreshes the current filter's list. A candidate the console refuses is not kept: the last
// valid filter stays current (jobs and refreshes use it) and the list is dimmed until the
// form holds a valid one again.
async function refreshNodes(candidate) {
  let data;
  try {
    data = await api("GET", `/api/nodes?filter=${encodeURIComponent(JSON.stringify(candidate || state.filter))}`);
  } catch (error) {
    if (candidate) {
      state.filterError = error.message;
      showFilterState();
    } else {
      showError("filter-error", error.message);
    }
    return;
  }
  if (candidate) {
    state.filter = candidate;
    state.filterError = null;
  }
  state.nodes = data.nodes;
  const live = data.nodes.filter((node) => !node.quiet).length;
  const quiet = data.nodes.length - live;
  state.selection = `${data.nodes.length} node${data.nodes.length === 1 ? "" : "s"} selected` +
    (quiet ? ` (${quiet} quiet)` : "") + ` — ${data.filter}`;
  renderNodes(data.nodes, data.now_ms);
  showFilterState();
}

function showFilterState() {
  const invalid = state.filterError;
  showError("filter-error", invalid || "");
  $("node-table").classList.toggle("stale", Boolean(invalid));
  $("selection").classList.toggle("stale", Boolean(invalid));
  $("selection").textContent = invalid
    ? `filter not applied; still using the last valid one${state.selection ? ` (${state.selection})` : ""}`
    : state.selection || "";
}

const SHOWN_FACTS = ["role", "environment", "datacenter", "osfamily", "kernel", "hostname"];
// Rows per page of the node list: a page stays short and quick to draw at any fleet size.
const PAGE_SIZE = 50;
const listView = { page: 0, sort: "identity", descending: false, search: "", now: 0 };

// The facts a row shows inline: the usual ones first, plain values only.
function shownFacts(node) {
  const names = Object.keys(node.facts).sort();
  return SHOWN_FACTS.filter((name) => name in node.facts && typeof node.facts[name] !== "object")
    .concat(names.filter((name) => !SHOWN_FACTS.includes(name) && typeof node.facts[name] !== "object")).slice(0, 3);
}

const SORT_KEYS = {
  identity: (node) => node.identity,
  state: (node) => `${node.state} ${node.identity}`,
  last_seen: (node) => node.last_seen_ms,
};

// The nodes the search box keeps (identity, classes, agents or a fact value containing the
// text), sorted as chosen. The filter above selects what jobs go to; the search only narrows
// what this list shows.
function visibleNodes() {
  const text = listView.search.toLowerCase();
  const found = text
    ? state.nodes.filter((node) => node.identity.toLowerCase().includes(text) ||
      node.classes.some((name) => name.toLowerCase().includes(text)) ||
      node.agents.some((name) => name.toLowerCase().includes(text)) ||
      Object.entries(node.facts).some(([name, value]) => `${name}=${brief(value)}`.toLowerCase().includes(text)))
    : state.nodes.slice();
  const key = SORT_KEYS[listView.sort];
  found.sort((left, right) => {
    const [a, b] = [key(left), key(right)];
    const order = a < b ? -1 : a > b ? 1 : 0;
    return listView.descending ? -order : order;
  });
  return found;
}

function renderNodes(nodes, now) {
  if (now) listView.now = now;
  const shown = visibleNodes();
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  listView.page = Math.min(listView.page, pages - 1);
  const first = listView.page * PAGE_SIZE;
  const body = $("node-table").querySelector("tbody");
  body.replaceChildren(...shown.slice(first, first + PAGE_SIZE).map((node) => nodeRow(node, listView.now)));
  $("no-nodes").hidden = nodes.length > 0;
  $("node-count").textContent = shown.length
    ? `${first + 1}–${Math.min(first + PAGE_SIZE, shown.length)} of ${shown.length}` + (listView.search ? ` matching "${listView.search}" (of ${nodes.length})` : "")
    : listView.search ? `none of ${nodes.length} matches "${listView.search}"` : "";
  $("node-count").dataset.shown = String(shown.length);
  $("node-page").textContent = `page ${listView.page + 1} of ${pages}`;
  $("node-prev").disabled = listView.page === 0;
  $("node-next").disabled = listView.page >= pages - 1;
  document.querySelectorAll("#node-table th[data-sort]").forEach((th) => {
    th.dataset.order = th.dataset.sort === listView.sort ? (listView.descending ? "descending" : "ascending") : "";
  });
}

// One compact line per node: tags and facts are cut to the cell's width; all facts on demand.
function nodeRow(node, now) {
  const facts = shownFacts(node).map((name) => `${name}=${brief(node.facts[name])}`).join(" ");
  const allFacts = el("details", {}, el("summary", { text: `${Object.keys(node.facts).length} facts` }), el("pre", { text: JSON.stringify(node.facts, null, 2) }));
  return el("tr", { class: node.quiet ? "quiet" : "", dataset: { node: node.identity } },
    el("td", {}, el("strong", { text: node.identity })),
    el("td", { class: `state-${node.state}`, title: node.state === "unknown" ? "not heard from since the console started; it is still sent jobs" : "", text: node.state }),
    el("td", { title: when(node.last_seen_ms), text: ago(node.last_seen_ms, now) }),
    el("td", { class: "cut", title: node.classes.join(" "), text: node.classes.join(" ") }),
    el("td", { class: "cut", title: node.agents.join(" "), text: node.agents.join(" ") }),
    el("td", { class: "facts" }, el("span", { class: "cut", title: facts, text: facts }), allFacts));
}

$("node-search").addEventListener("input", () => {
  listView.search = $("node-search").value.trim();
  listView.page = 0;
  renderNodes(state.nodes);
});
$("node-prev").addEventListener("click", () => { listView.page -= 1; renderNodes(state.nodes); });
$("node-next").addEventListener("click", () => { listView.page += 1; renderNodes(state.nodes); });
document.querySelectorAll("#node-table th[data-sort]").forEach((th) => {
  th.addEventListener("click", () => {
    listView.descending = listView.sort === th.dataset.sort ? !listView.descending : false;
    listView.sort = th.dataset.sort;
    listView.page = 0;
    renderNodes(state.nodes);
  });
});

setInterval(() => { if (!$("app").hidden) refreshNodes(); }, 5000);

function liveNodes() {
  return state.nodes.filter((node) => !node.quiet).map((node) => node.identity);
}

// ---------------------------------------------------------------- jobs

// The definition of agent#action, when the console has the agent's.
function actionDefinition(agent, action) {
  const definition = state.agents.find((candidate) => candidate.metadata.name === agent);
  return definition && definition.actions[action];
}

// Only an action its definition declares read-only runs without a confirmation.
function isReadOnly(agent, action) {
  const definition = actionDefinition(agent, action);
  return Boolean(definition && definition.read_only);
}

// Asks the user to confirm an action that changes something, naming how many nodes it will
// touch (and which, when few). Resolves true only on the explicit button.
function confirmChange(what, nodes, extra) {
  const dialog = $("confirm");
  $("confirm-title").textContent = `${what} changes things on ${plural(nodes.length, "node")}`;
  $("confirm-nodes").textContent = someOf(nodes, 12);
  $("confirm-extra").textContent = extra || "";
  $("confirm-yes").textContent = `Run on ${plural(nodes.length, "node")}`;
  dialog.dataset.count = String(nodes.length);
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-yes").onclick = null;
      $("confirm-no").onclick = null;
      dialog.oncancel = null;
      dialog.close();
      resolve(answer);
    };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    dialog.oncancel = (event) => { event.preventDefault(); done(false); };
    dialog.showModal();
    $("confirm-no").focus();
  });
}

class NotConfirmed extends Error {}

// Starts a job and follows its events; `onEvent` sees each one. Resolves with the finished
// job. A changing action is confirmed first, for the nodes it will go to: the request's own
// nodes, or the selection's live ones (the console refuses it if that count has changed).
async function runJob(request, onEvent, extra) {
  const body = { ...request, filter: request.filter || state.filter };
  if (!isReadOnly(request.agent, request.action)) {
    const nodes = request.nodes || liveNodes();
    if (!(await confirmChange(`${request.agent}#${request.action}`, nodes, extra))) throw new NotConfirmed("not confirmed: nothing was sent");
    body.confirmed_nodes = nodes.length;
  }
  const started = await api("POST", "/api/jobs", body);
  return followJob(started.id, onEvent);
}

function followJob(id, onEvent) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(`/api/jobs/${id}/events`);
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (onEvent) onEvent(event);
      if (event.type === "finished") {
        source.close();
        resolve(event.job);
      }
    };
    source.onerror = () => {
      source.close();
      reject(new Error("lost the connection to the console while following the job"));
    };
  });
}

// A finished job's counts and total time: the outcome's `stats`, as `baton rpc --json` has them
// (history recorded by an earlier version kept them as `counts` and `total_ms`).
function outcomeStats(outcome) {
  if (!outcome) return null;
  if (outcome.stats) return outcome.stats;
  return outcome.counts ? { ...outcome.counts, total_ms: outcome.total_ms } : null;
}

// A live result view: the counts and aggregates first, then one row per node as replies
// arrive; while it runs, the nodes still awaited and a button to cancel it.
function jobView(container, title) {
  container.hidden = false;
  container.replaceChildren();
  delete container.dataset.state;
  delete container.dataset.job;
  const heading = el("h3", { text: title });
  const counter = el("span", { class: "muted", text: "sending…" });
  const cancel = el("button", { type: "button", class: "secondary cancel", text: "Cancel", hidden: true });
  const bar = el("div");
  const summary = el("div", { class: "summary" });
  const awaitingView = el("p", { class: "awaiting muted" });
  const rows = el("tbody");
  const table = el("table", { class: "grid results" },
    el("thead", {}, el("tr", {}, el("th", { text: "Node" }), el("th", { text: "Status" }), el("th", { text: "Result" }), el("th", { text: "ms" }))),
    rows);
  container.append(heading, el("div", { class: "job-head" }, counter, cancel), el("div", { class: "progress" }, bar), summary, awaitingView, el("div", { class: "scroll" }, table));
  let targets = 0;
  let answered = 0;
  let outputs = {};
  let batch = "";
  const awaiting = new Set();
  const showAwaiting = () => {
    const names = [...awaiting].sort();
    awaitingView.dataset.count = String(names.length);
    awaitingView.textContent = names.length ? `Awaiting ${names.length}${batch}: ${someOf(names, 20)}` : "";
  };
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api("POST", `/api/jobs/${encodeURIComponent(container.dataset.job)}/cancel`);
    } catch (error) {
      summary.append(el("p", { class: "error", text: error.message }));
      cancel.disabled = false;
    }
  });
  const view = {
    rows,
    onEvent(event) {
      if (event.type === "started") {
        targets = event.job.targets.length;
        heading.textContent = `${title} — ${event.job.agent}#${event.job.action} as ${event.job.caller}`;
        container.dataset.job = event.job.id;
        outputs = (actionDefinition(event.job.agent, event.job.action) || {}).outputs || {};
        for (const node of event.job.targets) awaiting.add(node);
        cancel.hidden = event.job.state !== "running";
      } else if (event.type === "reply" || event.type === "unexpected") {
        const reply = event.reply;
        answered += event.type === "reply" ? 1 : 0;
        awaiting.delete(reply.node);
        rows.append(el("tr", { dataset: { node: reply.node, status: reply.status } },
          el("td", { text: reply.node }),
          el("td", { class: reply.status === 0 ? "ok" : "failed", text: reply.status === 0 ? "OK" : `${reply.status_text}` }),
          el("td", {}, reply.message ? el("div", { class: "failed", text: reply.message }) : null, dataView(reply.data, outputs)),
          el("td", { text: reply.ms.toFixed(1) })));
      } else if (event.type === "unreachable") {
        awaiting.delete(event.node);
        rows.append(el("tr", { dataset: { node: event.node, status: "unreachable" } },
          el("td", { text: event.node }), el("td", { class: "failed", text: "unreachable" }), el("td", { text: "the broker has no queue for this node" }), el("td")));
      } else if (event.type === "batch") {
        batch = ` (batch ${event.index} of ${event.of} sent)`;
      } else if (event.type === "skipped") {
        for (const node of event.nodes) awaiting.delete(node);
        summary.append(el("p", { class: "failed skipped", text: `Stopped after ${event.failures} failures (at most ${event.max_failures} allowed): not sent to ${someOf(event.nodes)}` }));
      } else if (event.type === "cancelled") {
        cancel.hidden = true;
        summary.append(el("p", { class: "failed", text: `Cancelled by ${event.by}` }));
      } else if (event.type === "finished") {
        finish(event.job);
        return;
      }
      showAwaiting();
      counter.textContent = `${answered} of ${targets} replied`;
      bar.style.width = targets ? `${Math.round((100 * answered) / targets)}%` : "0";
    },
  };
  function finish(job) {
    container.dataset.state = job.state;
    cancel.hidden = true;
    awaiting.clear();
    showAwaiting();
    const outcome = job.outcome;
    const counts = outcomeStats(outcome);
    if (job.state !== "finished" || !counts) {
      // failed, cancelled, abandoned (the console stopped while it ran), or an old record
      counter.textContent = job.state;
      summary.append(el("p", { class: "error", text: (outcome && outcome.error) || `the job is ${job.state}` }));
      return;
    }
    counter.textContent = `${counts.ok} OK, ${counts.failed} failed, ${counts.no_response} no response` +
      (counts.skipped ? `, ${counts.skipped} skipped` : "") + `, of ${counts.targeted} in ${counts.total_ms} ms`;
    bar.style.width = "100%";
    const aggregates = Object.entries(outcome.aggregates || {});
    if (aggregates.length) {
      summary.append(el("div", { class: "aggregates" }, aggregates.map(([output, result]) =>
        el("div", { class: "box", dataset: { aggregate: output } }, el("strong", { text: result.display_as || output }), el("pre", { text: describeAggregate(result) })))));
    }
    const silent = outcome.no_response.filter((node) => !outcome.unreachable.includes(node));
    for (const node of silent) {
      rows.append(el("tr", { dataset: { node, status: "no-response" } },
        el("td", { text: node }), el("td", { class: "failed", text: "no response" }),
        el("td", { class: "muted", text: `nothing within ${Math.round(counts.total_ms / 1000)} s` }), el("td")));
    }
    summary.append(el("p", { class: silent.length ? "silent no-response" : "muted no-response" },
      silent.length ? `No response from: ${someOf(silent, 20)}` : "Every targeted node answered."));
  }
  return view;
}

// A reply's outputs, one per line; long ones (Puppet's output) are cut, the whole behind "more".
function dataView(data, outputs) {
  const full = summarizeData(data, outputs);
  const lines = full.split("\n");
  if (lines.length <= 8 && full.length <= 1200) return el("pre", { text: full });
  const short = lines.slice(0, 6).map((line) => (line.length > 200 ? `${line.slice(0, 200)}…` : line)).join("\n");
  return el("div", {}, el("pre", { text: short }),
    el("details", {}, el("summary", { text: `all ${lines.length} lines` }), el("pre", { text: full })));
}

// Each output under the label its definition gives it (`display_as`), else its key.
function summarizeData(data, outputs) {
  const entries = Object.entries(data || {});
  if (!entries.length) return "";
  const label = (key) => (outputs && outputs[key] && outputs[key].display_as) || key;
  return entries.map(([key, value]) => `${label(key)}: ${brief(value)}`).join("\n");
}

function describeAggregate(result) {
  const copy = { ...result };
  delete copy.display_as;
  delete copy.function;
  delete copy.output;
  if (copy.counts) return Object.entries(copy.counts).map(([value, count]) => `${value}: ${count}`).join("\n");
  if ("value" in copy) return String(copy.value);
  return JSON.stringify(copy, null, 1);
}

// ---------------------------------------------------------------- advanced tasks

async function loadAgents() {
  try {
    const data = await api("GET", "/api/agents");
    state.agents = data.agents;
  } catch (error) {
    showError("task-error", error.message);
    return;
  }
  const select = $("task-agent");
  select.replaceChildren(...state.agents.map((agent) => el("option", { value: agent.metadata.name, text: agent.metadata.name })));
  agentChanged();
}

function currentAgent() {
  return state.agents.find((agent) => agent.metadata.name === $("task-agent").value);
}

// The results shown belong to the form they were run from: a new agent or action clears them.
function clearTaskResults() {
  $("task-output").hidden = true;
  $("task-output").replaceChildren();
  delete $("task-output").dataset.state;
  showError("task-error", "");
}

function agentChanged() {
  const agent = currentAgent();
  if (!agent) return;
  clearTaskResults();
  $("task-action").replaceChildren(...Object.keys(agent.actions).map((name) => el("option", { value: name, text: name })));
  actionChanged();
}

function actionChanged() {
  const agent = currentAgent();
  const action = agent && agent.actions[$("task-action").value];
  if (!action) return;
  clearTaskResults();
  $("task-description").textContent = `${agent.metadata.description} — ${action.description}`;
  $("task-kind").textContent = action.read_only ? "read-only: runs at once" : "changes things: asks for confirmation first";
  $("task-kind").className = action.read_only ? "muted" : "pending";
  const inputs = $("task-inputs");
  inputs.replaceChildren();
  for (const [name, input] of Object.entries(action.inputs || {})) {
    inputs.append(inputField(name, input));
  }
  if (!Object.keys(action.inputs || {}).length) inputs.append(el("span", { class: "muted", text: "This action takes no inputs." }));
}

function inputField(name, input) {
  const label = `${input.prompt || name}${input.optional || input.default !== undefined ? "" : " *"}`;
  let field;
  const common = { name, id: `input-${name}`, title: input.description, dataset: { input: name } };
  if (input.type === "list") {
    field = el("select", common, (input.optional ? [el("option", { value: "", text: "" })] : [])
      .concat((input.list || []).map((value) => el("option", { value, text: value, selected: input.default === value }))));
  } else if (input.type === "boolean") {
    field = el("select", common, el("option", { value: "", text: "" }), el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
    if (input.default !== undefined) field.value = String(input.default);
  } else if (input.type === "object" || input.type === "array") {
    field = el("textarea", { ...common, rows: 2, placeholder: input.type === "object" ? "{ JSON }" : "a,b or [JSON]" });
    if (input.default !== undefined) field.value = JSON.stringify(input.default);
  } else {
    field = el("input", { ...common, placeholder: input.type });
    if (input.default !== undefined) field.value = String(input.default);
  }
  return el("label", { title: input.description }, label, field, el("small", { class: "muted", text: input.description }));
}

$("task-agent").addEventListener("change", agentChanged);
$("task-action").addEventListener("change", actionChanged);

$("task-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("task-error", "");
  const inputs = {};
  $("task-inputs").querySelectorAll("[data-input]").forEach((field) => {
    if (field.value !== "") inputs[field.dataset.input] = field.value;
  });
  const request = {
    agent: $("task-agent").value, action: $("task-action").value, inputs,
    batch: $("task-batch").value.trim(), max_failures: $("task-max-failures").value.trim(),
  };
  const rollout = [request.batch && `in batches of ${request.batch}`, request.max_failures && `stopping after more than ${request.max_failures} failures`].filter(Boolean).join(", ");
  $("task-run").disabled = true;
  clearTaskResults();
  try {
    let view;
    await runJob(request, (event) => {
      if (!view) view = jobView($("task-output"), "Results");
      view.onEvent(event);
    }, rollout);
  } catch (error) {
    if (!$("task-output").dataset.state) $("task-output").hidden = true;
    showError("task-error", error.message);
  } finally {
    $("task-run").disabled = false;
  }
});

// ---------------------------------------------------------------- resources

function signature(properties) {
  const sorted = {};
  for (const key of Object.keys(properties || {}).sort()) sorted[key] = properties[key];
  return JSON.stringify(sorted);
}

$("resource-browse").addEventListener("click", () => {
  $("clone-form").hidden = true;
  $("clone-output").hidden = true;
  browseResources($("resource-type").value);
});

// Searches the selected nodes' resources of `type` and draws the matrix as replies arrive.
async function browseResources(type) {
  showError("resource-error", "");
  $("resource-status").textContent = `searching ${type} resources…`;
  // The table grows as replies arrive: a node that is down keeps the job open until its
  // timeout, and the others' resources are worth seeing meanwhile.
  const nodes = [];
  const rows = new Map();
  const problems = [];
  const waiting = new Set();
  state.resourceNodes = nodes;
  state.resourceRows = rows;
  state.resourceType = type;
  const progress = () => {
    $("resource-status").textContent = `${rows.size} ${type} resources on ${nodes.length} nodes` +
      (waiting.size ? `; waiting for ${waiting.size} node${waiting.size === 1 ? "" : "s"}…` : "");
    $("resource-status").dataset.waiting = String(waiting.size);
  };
  const onEvent = (event) => {
    if (event.type === "started") {
      for (const node of event.job.targets) waiting.add(node);
    } else if (event.type === "reply") {
      const reply = event.reply;
      waiting.delete(reply.node);
      if (reply.status !== 0) {
        problems.push(`${reply.node}: ${reply.message}`);
        showError("resource-error", problems.join("\n"));
      } else {
        nodes.push(reply.node);
        nodes.sort();
        for (const resource of reply.data.resources || []) {
          if (!rows.has(resource.title)) rows.set(resource.title, new Map());
          rows.get(resource.title).set(reply.node, resource.properties);
        }
        renderResources();
      }
    } else if (event.type === "unreachable") {
      waiting.delete(event.node);
    } else {
      return;
    }
    progress();
  };
  let job;
  try {
    job = await runJob({ agent: "resource", action: "search", inputs: { type } }, onEvent);
  } catch (error) {
    $("resource-status").textContent = "";
    showError("resource-error", error.message);
    return;
  }
  if (job.state !== "finished") {
    showError("resource-error", (job.outcome && job.outcome.error) || "the search failed");
    return;
  }
  waiting.clear();
  const silent = job.outcome.no_response;
  progress();
  if (silent.length) $("resource-status").textContent += `; no response from ${someOf(silent)}`;
  renderResources();
  $("resource-status").dataset.done = job.id;
}

$("resource-differ-only").addEventListener("change", renderResources);

function renderResources() {
  const rows = state.resourceRows;
  if (!rows) return;
  const nodes = state.resourceNodes;
  const table = $("resource-table");
  table.querySelector("thead").replaceChildren(el("tr", {}, el("th", { text: "Resource" }), nodes.map((node) => el("th", { text: node })), el("th", { text: "" })));
  const body = table.querySelector("tbody");
  body.replaceChildren();
  const differOnly = $("resource-differ-only").checked;
  for (const title of [...rows.keys()].sort()) {
    const holders = rows.get(title);
    const variants = [...new Set([...holders.values()].map(signature))];
    const differs = holders.size < nodes.length || variants.length > 1;
    if (differOnly && !differs) continue;
    const cells = nodes.map((node) => {
      if (!holders.has(node)) return el("td", { class: "absent", text: "—", title: "absent" });
      const variant = variants.indexOf(signature(holders.get(node)));
      const label = variants.length > 1 ? `✓ ${String.fromCharCode(65 + variant)}` : "✓";
      return el("td", { class: variants.length > 1 ? "differs" : "has", text: label, title: JSON.stringify(holders.get(node), null, 1) });
    });
    body.append(el("tr", { class: "clickable", dataset: { resource: title, differs: differs ? "yes" : "no" }, onclick: () => chooseResource(title) },
      el("td", {}, el("strong", { text: title })), cells,
      el("td", {}, el("button", { type: "button", class: "secondary", text: "Clone…", onclick: (event) => { event.stopPropagation(); chooseResource(title); } }))));
  }
}

function chooseResource(title) {
  const holders = state.resourceRows.get(title);
  document.querySelectorAll("#resource-table tbody tr").forEach((row) => row.classList.toggle("chosen", row.dataset.resource === title));
  $("clone-form").hidden = false;
  $("clone-output").hidden = true;
  showError("clone-error", "");
  $("clone-title").textContent = `${state.resourceType} ${title}`;
  $("clone-form").dataset.title = title;
  const source = $("clone-source");
  source.replaceChildren(...[...holders.keys()].sort().map((node) => el("option", { value: node, text: node })));
  const update = () => {
    $("clone-properties").textContent = JSON.stringify(holders.get(source.value), null, 2);
    // Nothing is checked for the user: a clone changes the nodes it goes to.
    $("clone-targets").replaceChildren(...state.resourceNodes.filter((node) => node !== source.value).map((node) =>
      el("label", { class: "inline" }, el("input", { type: "checkbox", value: node, dataset: { target: node, lacks: holders.has(node) ? "no" : "yes" } }),
        node, holders.has(node) ? el("span", { class: "muted", text: "(has one)" }) : null)));
  };
  source.onchange = update;
  update();
}

$("clone-lacking").addEventListener("click", () => {
  $("clone-targets").querySelectorAll("input").forEach((box) => { box.checked = box.dataset.lacks === "yes"; });
});

$("clone-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("clone-error", "");
  const targets = [...$("clone-targets").querySelectorAll("input:checked")].map((box) => box.value);
  if (!targets.length) { showError("clone-error", "check at least one node to clone onto"); return; }
  const body = { type: state.resourceType, title: $("clone-form").dataset.title, source: $("clone-source").value, targets, filter: state.filter };
  if (!(await confirmChange(`Cloning ${body.type} ${body.title} from ${body.source}`, targets))) return;
  body.confirmed_nodes = targets.length;
  $("clone-run").disabled = true;
  try {
    const started = await api("POST", "/api/resources/clone", body);
    const view = jobView($("clone-output"), `Clone ${body.type} ${body.title} from ${body.source}`);
    await followJob(started.id, view.onEvent);
    // The matrix shows what the nodes have now, the clone included.
    await browseResources(body.type);
    if (state.resourceRows && state.resourceRows.has(body.title)) {
      document.querySelectorAll("#resource-table tbody tr").forEach((row) => row.classList.toggle("chosen", row.dataset.resource === body.title));
    }
  } catch (error) {
    showError("clone-error", error.message);
  } finally {
    $("clone-run").disabled = false;
  }
});

// ---------------------------------------------------------------- puppet

const puppetState = new Map();
// Each node's last run summary (resources, changes, failures, duration), or why there is none.
const puppetRuns = new Map();
// The nodes a puppet job still waits for: their rows say so until they answer.
const puppetWaiting = new Set();

function showPuppetWaiting() {
  const count = puppetWaiting.size;
  $("puppet-waiting").textContent = count ? `waiting for ${count} node${count === 1 ? "" : "s"}…` : "";
  $("puppet-waiting").dataset.waiting = String(count);
}

function puppetNodes() {
  return state.nodes.filter((node) => !node.quiet && node.agents.includes("puppet")).map((node) => node.identity);
}

// The last run's resources, changes, failures and duration, from its summary.
function runCells(node) {
  const run = puppetRuns.get(node);
  if (!run || run.error) {
    return [el("td", { class: "muted", colspan: 4, title: (run && run.error) || "", text: run ? "no run summary" : "", dataset: { field: "run" } })];
  }
  return [
    el("td", { text: String(run.total_resources), dataset: { field: "resources" } }),
    el("td", { class: run.changed_resources ? "pending" : "", text: String(run.changed_resources), dataset: { field: "changed" } }),
    el("td", { class: run.failed_resources ? "failed" : "", text: String(run.failed_resources), dataset: { field: "failures" } }),
    el("td", { text: `${Number(run.total_time).toFixed(1)} s`, dataset: { field: "duration" } }),
  ];
}

// Rows keep what the user checked; nothing is ever checked for them (one click must not run
// Puppet everywhere).
function renderPuppetRows() {
  const body = $("puppet-table").querySelector("tbody");
  const checked = new Set([...body.querySelectorAll("input:checked")].map((box) => box.value));
  body.replaceChildren();
  for (const node of puppetNodes()) {
    const status = puppetState.get(node);
    const cells = status
      ? status.error
        ? [el("td", { class: "failed", text: "error" }), el("td"), el("td"), el("td", { colspan: 4 }), el("td", { text: status.error, dataset: { field: "error" } })]
        : [
          el("td", { class: status.status === "disabled" ? "failed" : "ok", text: status.status, dataset: { field: "status" } }),
          el("td", { text: String(status.enabled), dataset: { field: "enabled" } }),
          el("td", { title: status.lastrun ? `${status.since_lastrun} s ago` : "", text: status.lastrun ? `${when(status.lastrun * 1000)} (${ago(status.lastrun * 1000, Date.now())})` : "never", dataset: { field: "lastrun" } }),
          ...runCells(node),
          el("td", { text: status.disable_message || status.message || "", dataset: { field: "message" } }),
        ]
      : [el("td", { class: "muted", text: puppetWaiting.has(node) ? "waiting…" : "unknown" }), el("td"), el("td"), el("td", { colspan: 4 }), el("td")];
    body.append(el("tr", { class: puppetWaiting.has(node) ? "quiet" : "", dataset: { node, waiting: puppetWaiting.has(node) ? "yes" : "no" } },
      el("td", {}, el("input", { type: "checkbox", value: node, checked: checked.has(node) })),
      el("td", {}, el("strong", { text: node })), cells));
  }
  $("puppet-all").checked = body.querySelectorAll("input").length > 0 && !body.querySelector("input:not(:checked)");
}

$("puppet-all").addEventListener("change", () => {
  $("puppet-table").querySelectorAll("tbody input").forEach((box) => { box.checked = $("puppet-all").checked; });
});

async function puppetStatus() {
  const nodes = puppetNodes();
  if (!nodes.length) { renderPuppetRows(); return; }
  // Each row is drawn as its node answers; a node that is down would otherwise hold every
  // row back until the job's timeout.
  const onEvent = (event) => {
    if (event.type === "started") {
      for (const node of event.job.targets) puppetWaiting.add(node);
    } else if (event.type === "reply") {
      const reply = event.reply;
      puppetWaiting.delete(reply.node);
      puppetState.set(reply.node, reply.status === 0 ? reply.data : { error: reply.message });
    } else if (event.type === "unreachable") {
      puppetWaiting.delete(event.node);
      puppetState.set(event.node, { error: "unreachable" });
    } else {
      return;
    }
    showPuppetWaiting();
    renderPuppetRows();
  };
  // The page asks on its own: these refreshes are kept out of the history's default view.
  const summaries = runJob({ agent: "puppet", action: "last_run_summary", inputs: {}, nodes, automatic: true }, (event) => {
    if (event.type !== "reply") return;
    const reply = event.reply;
    puppetRuns.set(reply.node, reply.status === 0 ? reply.data : { error: reply.message });
    renderPuppetRows();
  });
  let job;
  try {
    job = await runJob({ agent: "puppet", action: "status", inputs: {}, nodes, automatic: true }, onEvent);
  } finally {
    for (const node of nodes) puppetWaiting.delete(node);
    showPuppetWaiting();
  }
  await summaries.catch((error) => showError("puppet-error", error.message));
  const outcome = job.outcome || {};
  if (job.state !== "finished") { renderPuppetRows(); throw new Error(outcome.error || `the status job is ${job.state}`); }
  for (const node of outcome.no_response || []) puppetState.set(node, { error: "no response" });
  renderPuppetRows();
}

// How many refreshes have ended, on the table: a script (the browser test) waits for the next.
let puppetRefreshes = 0;
$("puppet-refresh").addEventListener("click", () => puppetStatus()
  .catch((error) => showError("puppet-error", error.message))
  .finally(() => { $("puppet-table").dataset.refreshed = String(++puppetRefreshes); }));

async function puppetAction(action, inputs) {
  showError("puppet-error", "");
  const nodes = [...$("puppet-table").querySelectorAll("tbody input:checked")].map((box) => box.value);
  if (!nodes.length) { showError("puppet-error", "check at least one node"); return; }
  const view = jobView($("puppet-output"), `Puppet ${action}`);
  // The output view shows each reply as it arrives; the table says which nodes are pending.
  const onEvent = (event) => {
    view.onEvent(event);
    if (event.type === "started") for (const node of event.job.targets) puppetWaiting.add(node);
    else if (event.type === "reply") puppetWaiting.delete(event.reply.node);
    else if (event.type === "unreachable") puppetWaiting.delete(event.node);
    else return;
    showPuppetWaiting();
    renderPuppetRows();
  };
  try {
    await runJob({ agent: "puppet", action, inputs, nodes }, onEvent);
  } catch (error) {
    showError("puppet-error", error.message);
    if (error instanceof NotConfirmed) { $("puppet-output").hidden = true; return; }
  } finally {
    for (const node of nodes) puppetWaiting.delete(node);
    showPuppetWaiting();
  }
  try {
    await puppetStatus();
  } catch (error) {
    showError("puppet-error", error.message);
  }
}

$("history-automatic").addEventListener("change", loadHistory);

$("puppet-runonce").addEventListener("click", () => puppetAction("runonce", {}));
$("puppet-enable").addEventListener("click", () => puppetAction("enable", {}));
$("puppet-disable").addEventListener("click", () => {
  const message = $("puppet-message").value.trim();
  puppetAction("disable", message ? { message } : {});
});

// ---------------------------------------------------------------- history

async function loadHistory() {
  let data;
  const automatic = $("history-automatic").checked;
  try { data = await api("GET", `/api/jobs${automatic ? "?automatic=true" : ""}`); } catch (error) { return; }
  const body = $("history-table").querySelector("tbody");
  // The detail lives in the list, under its row: keep it out of the way while redrawing.
  $("tab-history").append($("history-detail"));
  $("history-detail").hidden = true;
  body.replaceChildren();
  for (const job of data.jobs) {
    const counts = outcomeStats(job.outcome);
    const error = job.outcome && job.outcome.error;
    const outcome = job.state === "finished" && counts
      ? `${counts.ok} OK, ${counts.failed} failed, ${counts.no_response} no response`
      : error ? `${job.state}: ${error}` : job.state;
    const inputs = Object.entries(job.inputs || {}).map(([key, value]) => `${key}=${brief(value)}`).join(" ");
    body.append(el("tr", { class: job.automatic ? "clickable automatic" : "clickable", dataset: { job: job.id }, onclick: () => showJob(job) },
      el("td", { text: when(job.started_ms) }),
      el("td", { text: job.user, title: `caller ${job.caller}` }),
      el("td", {}, el("strong", { text: `${job.agent}#${job.action}` }), job.automatic ? el("span", { class: "tag", text: "automatic" }) : null, inputs ? el("div", { class: "facts", text: inputs }) : null),
      el("td", { title: job.targets.join(", "), text: someOf(job.targets, 5) }),
      el("td", { class: counts && counts.failed + counts.no_response === 0 ? "ok" : "failed", text: outcome })));
  }
}

// The history lists summaries; the whole record (every node's reply) is fetched when chosen.
async function showJob(summary) {
  document.querySelectorAll("#history-table tbody tr").forEach((row) => row.classList.toggle("chosen", row.dataset.job === summary.id));
  let job;
  try { job = (await api("GET", `/api/jobs/${encodeURIComponent(summary.id)}`)).job; } catch (error) { return; }
  // Opened right under its row, not below the whole list.
  const row = document.querySelector(`#history-table tbody tr[data-job="${CSS.escape(summary.id)}"]`);
  document.querySelectorAll("#history-table tr.detail").forEach((detail) => detail.remove());
  if (row) row.after(el("tr", { class: "detail" }, el("td", { colspan: 5 }, $("history-detail"))));
  const view = jobView($("history-detail"), `${when(job.started_ms)} by ${job.user}`);
  view.onEvent({ type: "started", job });
  for (const reply of (job.outcome && job.outcome.replies) || []) view.onEvent({ type: "reply", reply });
  for (const node of (job.outcome && job.outcome.unreachable) || []) view.onEvent({ type: "unreachable", node });
  view.onEvent({ type: "finished", job });
}

start().catch((error) => {
  document.body.append(el("p", { class: "error", text: `cannot reach the console: ${error.message}` }));
});

// ---------------------------------------------------------------- rollouts

// The rollouts, live: the console sends the whole list at every change of any rollout.
let rolloutSource = null;

function followRollouts() {
  if (rolloutSource) return;
  rolloutSource = new EventSource("/api/rollouts/events");
  rolloutSource.onmessage = (message) => {
    showError("rollouts-error", "");
    renderRollouts(JSON.parse(message.data));
  };
  rolloutSource.onerror = () => {
    // EventSource reconnects by itself; say so while it is away.
    showError("rollouts-error", "lost the connection to the console; reconnecting…");
  };
}

function countIn(nodes, ...states) {
  return states.reduce((sum, state) => sum + (nodes[state] || []).length, 0);
}

function namesIn(nodes, ...states) {
  return states.flatMap((state) => nodes[state] || []);
}

function renderRollouts(list) {
  const rows = list.rollouts.map((rollout) => {
    const nodes = rollout.nodes;
    const failed = namesIn(nodes, "failed", "check_failed", "no_response");
    const remaining = namesIn(nodes, "pending", "sent", "checking", "skipped");
    const batch = rollout.batch ? `${rollout.batch.index}/${rollout.batch.of}` : "";
    const checks = rollout.checks_passed + rollout.checks_failed > 0 ? `${rollout.checks_passed} ok, ${rollout.checks_failed} failed` : "";
    return el("tr", { dataset: { rollout: rollout.rollout_id, status: rollout.status } },
      el("td", { class: "mono", title: rollout.rollout_id, text: rollout.rollout_id.slice(0, 8) }),
      el("td", { text: `${rollout.agent}#${rollout.action}` }),
      el("td", { class: `status ${rollout.status}`, text: rollout.status }),
      el("td", { class: "run", text: rollout.run }),
      el("td", { class: "batch", text: batch }),
      el("td", { class: "done", title: someOf(nodes.ok || []), text: `${countIn(nodes, "ok")} of ${rollout.targets}` }),
      el("td", { class: "failed", title: someOf(failed), text: failed.length }),
      el("td", { class: "remaining", title: someOf(remaining), text: remaining.length }),
      el("td", { class: "checks", text: checks }),
      el("td", { text: when(rollout.updated_ms) }));
  });
  $("rollout-table").querySelector("tbody").replaceChildren(...rows);
  $("no-rollouts").hidden = rows.length > 0;
  const running = list.rollouts.filter((rollout) => rollout.status === "running").length;
  $("rollouts-running").textContent = running ? `${running} running` : "";
  $("rollouts-running").hidden = running === 0;
}
