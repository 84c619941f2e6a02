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

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
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

function renderNodes(nodes, now) {
  const body = $("node-table").querySelector("tbody");
  body.replaceChildren();
  $("no-nodes").hidden = nodes.length > 0;
  for (const node of nodes) {
    const factNames = Object.keys(node.facts).sort();
    const first = SHOWN_FACTS.filter((name) => name in node.facts && typeof node.facts[name] !== "object")
      .concat(factNames.filter((name) => !SHOWN_FACTS.includes(name) && typeof node.facts[name] !== "object")).slice(0, 4);
    const allFacts = el("details", {}, el("summary", { text: `${factNames.length} facts` }), el("pre", { text: JSON.stringify(node.facts, null, 2) }));
    body.append(el("tr", { class: node.quiet ? "quiet" : "", dataset: { node: node.identity } },
      el("td", {}, el("strong", { text: node.identity })),
      el("td", { class: `state-${node.state}`, title: node.state === "unknown" ? "not heard from since the console started; it is still sent jobs" : "", text: node.state }),
      el("td", { title: when(node.last_seen_ms), text: ago(node.last_seen_ms, now) }),
      el("td", {}, node.classes.map((name) => el("span", { class: "tag", text: name }))),
      el("td", {}, node.agents.map((name) => el("span", { class: "tag", text: name }))),
      el("td", { class: "facts" }, first.map((name) => el("div", { text: `${name}=${brief(node.facts[name])}` })), allFacts),
    ));
  }
}

setInterval(() => { if (!$("app").hidden) refreshNodes(); }, 5000);

function liveNodes() {
  return state.nodes.filter((node) => !node.quiet).map((node) => node.identity);
}

// ---------------------------------------------------------------- jobs

// Starts a job and follows its events; `onEvent` sees each one. Resolves with the finished job.
async function runJob(request, onEvent) {
  const started = await api("POST", "/api/jobs", { ...request, filter: request.filter || state.filter });
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

// A live result view: one row per node as replies arrive, then aggregates and silent nodes.
function jobView(container, title) {
  container.hidden = false;
  container.replaceChildren();
  delete container.dataset.state;
  const heading = el("h3", { text: title });
  const counter = el("span", { class: "muted", text: "sending…" });
  const bar = el("div");
  const rows = el("tbody");
  const table = el("table", { class: "grid results" },
    el("thead", {}, el("tr", {}, el("th", { text: "Node" }), el("th", { text: "Status" }), el("th", { text: "Result" }), el("th", { text: "ms" }))),
    rows);
  const footer = el("div");
  container.append(heading, counter, el("div", { class: "progress" }, bar), table, footer);
  let targets = 0;
  let answered = 0;
  const view = {
    rows,
    onEvent(event) {
      if (event.type === "started") {
        targets = event.job.targets.length;
        heading.textContent = `${title} — ${event.job.agent}#${event.job.action} as ${event.job.caller}`;
        container.dataset.job = event.job.id;
      } else if (event.type === "reply" || event.type === "unexpected") {
        const reply = event.reply;
        answered += event.type === "reply" ? 1 : 0;
        rows.append(el("tr", { dataset: { node: reply.node, status: reply.status } },
          el("td", { text: reply.node }),
          el("td", { class: reply.status === 0 ? "ok" : "failed", text: reply.status === 0 ? "OK" : `${reply.status_text}` }),
          el("td", {}, reply.message ? el("div", { class: "failed", text: reply.message }) : null, dataView(reply.data)),
          el("td", { text: reply.ms.toFixed(1) })));
      } else if (event.type === "unreachable") {
        rows.append(el("tr", { dataset: { node: event.node, status: "unreachable" } },
          el("td", { text: event.node }), el("td", { class: "failed", text: "unreachable" }), el("td", { text: "the broker has no queue for this node" }), el("td")));
      } else if (event.type === "finished") {
        finish(event.job);
        return;
      }
      counter.textContent = `${answered} of ${targets} replied`;
      bar.style.width = targets ? `${Math.round((100 * answered) / targets)}%` : "0";
    },
  };
  function finish(job) {
    container.dataset.state = job.state;
    const outcome = job.outcome;
    const counts = outcomeStats(outcome);
    if (job.state !== "finished" || !counts) {
      // failed, abandoned (the console stopped while it ran), or still running in an old record
      counter.textContent = job.state;
      footer.append(el("p", { class: "error", text: (outcome && outcome.error) || `the job is ${job.state}` }));
      return;
    }
    counter.textContent = `${counts.ok} OK, ${counts.failed} failed, ${counts.no_response} no response, of ${counts.targeted} in ${counts.total_ms} ms`;
    bar.style.width = "100%";
    const aggregates = Object.entries(outcome.aggregates || {});
    if (aggregates.length) {
      footer.append(el("div", { class: "aggregates" }, aggregates.map(([output, result]) =>
        el("div", { class: "box", dataset: { aggregate: output } }, el("strong", { text: result.display_as || output }), el("pre", { text: describeAggregate(result) })))));
    }
    const silent = outcome.no_response.filter((node) => !outcome.unreachable.includes(node));
    for (const node of silent) {
      rows.append(el("tr", { dataset: { node, status: "no-response" } },
        el("td", { text: node }), el("td", { class: "failed", text: "no response" }),
        el("td", { class: "muted", text: `nothing within ${Math.round(counts.total_ms / 1000)} s` }), el("td")));
    }
    footer.append(el("p", { class: silent.length ? "silent no-response" : "muted no-response" },
      silent.length ? `No response from: ${silent.join(", ")}` : "Every targeted node answered."));
  }
  return view;
}

// A reply's outputs, one per line; long ones (Puppet's output) are cut, the whole behind "more".
function dataView(data) {
  const full = summarizeData(data);
  const lines = full.split("\n");
  if (lines.length <= 8 && full.length <= 1200) return el("pre", { text: full });
  const short = lines.slice(0, 6).map((line) => (line.length > 200 ? `${line.slice(0, 200)}…` : line)).join("\n");
  return el("div", {}, el("pre", { text: short }),
    el("details", {}, el("summary", { text: `all ${lines.length} lines` }), el("pre", { text: full })));
}

function summarizeData(data) {
  const entries = Object.entries(data || {});
  if (!entries.length) return "";
  return entries.map(([key, value]) => `${key}: ${brief(value)}`).join("\n");
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

function agentChanged() {
  const agent = currentAgent();
  if (!agent) return;
  $("task-action").replaceChildren(...Object.keys(agent.actions).map((name) => el("option", { value: name, text: name })));
  actionChanged();
}

function actionChanged() {
  const agent = currentAgent();
  const action = agent && agent.actions[$("task-action").value];
  if (!action) return;
  $("task-description").textContent = `${agent.metadata.description} — ${action.description}`;
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
  const request = { agent: $("task-agent").value, action: $("task-action").value, inputs };
  const view = jobView($("task-output"), "Results");
  $("task-run").disabled = true;
  try {
    await runJob(request, view.onEvent);
  } catch (error) {
    $("task-output").hidden = true;
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

$("resource-browse").addEventListener("click", async () => {
  showError("resource-error", "");
  $("clone-form").hidden = true;
  $("clone-output").hidden = true;
  const type = $("resource-type").value;
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
  if (silent.length) $("resource-status").textContent += `; no response from ${silent.join(", ")}`;
  renderResources();
});

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
    $("clone-targets").replaceChildren(...state.resourceNodes.filter((node) => node !== source.value).map((node) =>
      el("label", { class: "inline" }, el("input", { type: "checkbox", value: node, checked: !holders.has(node), dataset: { target: node } }), node)));
  };
  source.onchange = update;
  update();
}

$("clone-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("clone-error", "");
  const targets = [...$("clone-targets").querySelectorAll("input:checked")].map((box) => box.value);
  const body = { type: state.resourceType, title: $("clone-form").dataset.title, source: $("clone-source").value, targets, filter: state.filter };
  $("clone-run").disabled = true;
  try {
    const started = await api("POST", "/api/resources/clone", body);
    const view = jobView($("clone-output"), `Clone ${body.type} ${body.title} from ${body.source}`);
    await followJob(started.id, view.onEvent);
  } catch (error) {
    showError("clone-error", error.message);
  } finally {
    $("clone-run").disabled = false;
  }
});

// ---------------------------------------------------------------- puppet

const puppetState = new Map();
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

function renderPuppetRows() {
  const body = $("puppet-table").querySelector("tbody");
  const checked = new Set([...body.querySelectorAll("input:checked")].map((box) => box.value));
  const fresh = body.children.length === 0;
  body.replaceChildren();
  for (const node of puppetNodes()) {
    const status = puppetState.get(node);
    const cells = status
      ? status.error
        ? [el("td", { class: "failed", text: "error" }), el("td"), el("td"), el("td", { text: status.error })]
        : [
          el("td", { class: status.status === "disabled" ? "failed" : "ok", text: status.status, dataset: { field: "status" } }),
          el("td", { text: String(status.enabled), dataset: { field: "enabled" } }),
          el("td", { text: status.lastrun ? `${when(status.lastrun * 1000)} (${status.since_lastrun}s ago)` : "never" }),
          el("td", { text: status.disable_message || status.message || "", dataset: { field: "message" } }),
        ]
      : [el("td", { class: "muted", text: puppetWaiting.has(node) ? "waiting…" : "unknown" }), el("td"), el("td"), el("td")];
    body.append(el("tr", { class: puppetWaiting.has(node) ? "quiet" : "", dataset: { node, waiting: puppetWaiting.has(node) ? "yes" : "no" } },
      el("td", {}, el("input", { type: "checkbox", value: node, checked: fresh ? $("puppet-all").checked : checked.has(node) })),
      el("td", {}, el("strong", { text: node })), cells));
  }
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
  let job;
  try {
    job = await runJob({ agent: "puppet", action: "status", inputs: {}, nodes }, onEvent);
  } finally {
    for (const node of nodes) puppetWaiting.delete(node);
    showPuppetWaiting();
  }
  const outcome = job.outcome || {};
  if (job.state !== "finished") { renderPuppetRows(); throw new Error(outcome.error || `the status job is ${job.state}`); }
  for (const node of outcome.no_response || []) puppetState.set(node, { error: "no response" });
  renderPuppetRows();
}

$("puppet-refresh").addEventListener("click", () => puppetStatus().catch((error) => showError("puppet-error", error.message)));

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

$("puppet-runonce").addEventListener("click", () => puppetAction("runonce", {}));
$("puppet-enable").addEventListener("click", () => puppetAction("enable", {}));
$("puppet-disable").addEventListener("click", () => {
  const message = $("puppet-message").value.trim();
  puppetAction("disable", message ? { message } : {});
});

// ---------------------------------------------------------------- history

async function loadHistory() {
  let data;
  try { data = await api("GET", "/api/jobs"); } catch (error) { return; }
  const body = $("history-table").querySelector("tbody");
  body.replaceChildren();
  for (const job of data.jobs) {
    const counts = outcomeStats(job.outcome);
    const error = job.outcome && job.outcome.error;
    const outcome = job.state === "finished" && counts
      ? `${counts.ok} OK, ${counts.failed} failed, ${counts.no_response} no response`
      : error ? `${job.state}: ${error}` : job.state;
    const inputs = Object.entries(job.inputs || {}).map(([key, value]) => `${key}=${brief(value)}`).join(" ");
    body.append(el("tr", { class: "clickable", dataset: { job: job.id }, onclick: () => showJob(job) },
      el("td", { text: when(job.started_ms) }),
      el("td", { text: job.user, title: `caller ${job.caller}` }),
      el("td", {}, el("strong", { text: `${job.agent}#${job.action}` }), inputs ? el("div", { class: "facts", text: inputs }) : null),
      el("td", { text: job.targets.join(", ") }),
      el("td", { class: counts && counts.failed + counts.no_response === 0 ? "ok" : "failed", text: outcome })));
  }
}

// The history lists summaries; the whole record (every node's reply) is fetched when chosen.
async function showJob(summary) {
  document.querySelectorAll("#history-table tbody tr").forEach((row) => row.classList.toggle("chosen", row.dataset.job === summary.id));
  let job;
  try { job = (await api("GET", `/api/jobs/${encodeURIComponent(summary.id)}`)).job; } catch (error) { return; }
  const view = jobView($("history-detail"), `${when(job.started_ms)} by ${job.user}`);
  view.onEvent({ type: "started", job });
  for (const reply of (job.outcome && job.outcome.replies) || []) view.onEvent({ type: "reply", reply });
  for (const node of (job.outcome && job.outcome.unreachable) || []) view.onEvent({ type: "unreachable", node });
  view.onEvent({ type: "finished", job });
}

start().catch((error) => {
  document.body.append(el("p", { class: "error", text: `cannot reach the console: ${error.message}` }));
});
