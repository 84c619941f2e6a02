// Drives Baton's web console in Debian's headless Chromium (run by integration/console.rs).
//
//   node e2e.mjs main|silent|restart|signed|unsigned|fleet|rollouts
//
// Environment: BATON_CONSOLE_URL, BATON_CONSOLE_USER, BATON_CONSOLE_PASSWORD, BATON_CHROMIUM,
// BATON_E2E_EXPECT (JSON: what this phase should find), and optionally BATON_SCREENSHOTS (a
// directory for PNGs of the main views). Exits non-zero, saying which step failed, on failure.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { chromium } from "playwright-core";

const phase = process.argv[2];
const url = process.env.BATON_CONSOLE_URL;
const expect = JSON.parse(process.env.BATON_E2E_EXPECT || "{}");
const screenshots = process.env.BATON_SCREENSHOTS;
const WAIT = 60_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
  } catch (error) {
    error.message = `step "${name}": ${error.message}`;
    throw error;
  }
  console.log(`ok  ${name} (${Date.now() - started} ms)`);
}

async function shot(page, name) {
  if (!screenshots) return;
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
  console.log(`    screenshot ${name}.png`);
}

// The identities of the rows of a table body, in order.
async function rowNodes(page, selector) {
  return page.$$eval(selector, (rows) => rows.map((row) => row.dataset.node));
}

// Waits until the rows name exactly these nodes: in this order, or in any order (`sorted`:
// results are shown in the order they arrive).
async function waitForRows(page, selector, expected, { sorted = false } = {}) {
  const wanted = expected.join(",");
  try {
    await page.waitForFunction(
      ([selector, wanted, sorted]) => {
        const nodes = [...document.querySelectorAll(selector)].map((row) => row.dataset.node);
        return (sorted ? nodes.sort() : nodes).join(",") === wanted;
      },
      [selector, wanted, sorted],
      { timeout: WAIT },
    );
  } catch (error) {
    throw new Error(`expected rows ${wanted} in ${selector}, have ${(await rowNodes(page, selector)).join(",")}`);
  }
}

async function applyFilter(page, fields) {
  for (const key of ["identity", "class", "fact", "agent", "select"]) {
    await page.fill(`#filter-${key}`, fields[key] || "");
  }
  await page.click("#filter-apply");
}

async function openTab(page, name) {
  await page.click(`.tabs button[data-tab="${name}"]`);
  await page.waitForSelector(`#tab-${name}:not([hidden])`);
}

// Waits for the confirmation dialog, checks it names `count` nodes, and answers it.
async function confirmDialog(page, count, answer, screenshot) {
  await page.waitForSelector("#confirm[open]", { timeout: WAIT });
  const title = await page.textContent("#confirm-title");
  const nodes = `${count} node${count === 1 ? "" : "s"}`;
  check(title.includes(`changes things on ${nodes}`), `the confirmation says: ${title}`);
  check((await page.textContent("#confirm-yes")) === `Run on ${nodes}`, await page.textContent("#confirm-yes"));
  if (screenshot) await shot(page, screenshot);
  await page.click(answer ? "#confirm-yes" : "#confirm-no");
  await page.waitForSelector("#confirm", { state: "hidden" });
}

// Whether nothing is wider than the window (no sideways scrolling of the page).
async function fitsWidth(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
}

async function login(page) {
  await page.goto(url);
  await page.waitForSelector("#login-view:not([hidden])", { timeout: WAIT });
  await page.fill("#login-user", process.env.BATON_CONSOLE_USER);
  await page.fill("#login-password", process.env.BATON_CONSOLE_PASSWORD);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#app:not([hidden])", { timeout: WAIT });
  const who = await page.textContent("#who");
  check(who.includes(process.env.BATON_CONSOLE_USER), `the header says ${JSON.stringify(who)}`);
}

// Runs the form of the advanced tasks tab and waits for the job to finish.
async function runTask(page, agent, action, inputs, rollout) {
  await startTask(page, agent, action, inputs, rollout);
  await page.waitForSelector("#task-output[data-state]", { timeout: WAIT * 2 });
}

// Runs the form of the advanced tasks tab, without waiting.
async function startTask(page, agent, action, inputs, rollout = {}) {
  await openTab(page, "tasks");
  await page.selectOption("#task-agent", agent);
  await page.selectOption("#task-action", action);
  for (const [name, value] of Object.entries(inputs)) {
    await page.fill(`#input-${name}`, value);
  }
  await page.fill("#task-batch", rollout.batch || "");
  await page.fill("#task-max-failures", rollout.maxFailures || "");
  await page.click("#task-run");
}

// One HTTP request from outside the browser, with headers a browser would never let a page set.
function rawRequest(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const target = new URL(path, url);
    const request = httpRequest(
      { host: target.hostname, port: target.port, path: target.pathname, method, headers },
      (response) => {
        let text = "";
        response.on("data", (chunk) => { text += chunk; });
        response.on("end", () => resolve({ status: response.statusCode, text, headers: response.headers }));
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

async function main(page) {
  await step("a wrong password is refused", async () => {
    await page.goto(url);
    await page.waitForSelector("#login-view:not([hidden])", { timeout: WAIT });
    await shot(page, "login");
    await page.fill("#login-user", process.env.BATON_CONSOLE_USER);
    await page.fill("#login-password", "not the password");
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#login-error:not([hidden])");
    check((await page.textContent("#login-error")).includes("wrong user name or password"), "no refusal shown");
  });

  await step("password guessing is slowed down", async () => {
    // A client behind the proxy (named by X-Real-IP), so the browser's own logins are not held up.
    const host = new URL(expect.origin).host;
    const headers = { "Content-Type": "application/json", Host: host, Origin: expect.origin, "X-Real-IP": "192.0.2.50" };
    const guess = JSON.stringify({ user: "mallory", password: "guess" });
    const statuses = [];
    let refused;
    while (!refused && statuses.length < 10) {
      const answer = await rawRequest("POST", "/api/login", headers, guess);
      statuses.push(answer.status);
      if (answer.status === 429) refused = answer;
    }
    check(refused, `no 429 after ${statuses.length} wrong passwords: ${statuses}`);
    check(statuses.slice(0, 3).every((status) => status === 401), `the first failures are answered 401: ${statuses}`);
    check(Number(refused.headers["retry-after"]) >= 1, `Retry-After: ${refused.headers["retry-after"]}`);
    check(refused.text.includes("too many failed logins"), refused.text);
    check(refused.text.includes(`wait ${refused.headers["retry-after"]} second`), `the message says how long: ${refused.text}`);
  });

  await step("log in", () => login(page));

  await step("see the registered nodes", async () => {
    await waitForRows(page, "#node-table tbody tr", expect.nodes);
    const states = await page.$$eval("#node-table tbody tr td:nth-child(2)", (cells) => cells.map((cell) => cell.textContent));
    check(states.every((state) => state === "live"), `node states: ${states}`);
    const facts = await page.textContent('#node-table tbody tr[data-node="web01"]');
    check(facts.includes("role=web") && facts.includes("nginx") && facts.includes("puppet"), `web01 row: ${facts}`);
    await shot(page, "nodes");
  });

  await step("filter the nodes with the CLI's filter language", async () => {
    await applyFilter(page, { fact: "role=web" });
    await waitForRows(page, "#node-table tbody tr", expect.web);
    await applyFilter(page, { identity: "/^db/" });
    await waitForRows(page, "#node-table tbody tr", ["db01"]);
    await applyFilter(page, { select: "nginx and not datacenter=lhr1" });
    await waitForRows(page, "#node-table tbody tr", expect.web);
    await applyFilter(page, { select: "role=web and (" });
    await page.waitForSelector("#filter-error:not([hidden])");
    const error = await page.textContent("#filter-error");
    check(error.includes("role=web and ("), `the error quotes the filter: ${error}`);
    check(await page.$("#node-table.stale"), "the list of the last valid filter is dimmed");
    const kept = await page.textContent("#selection");
    check(kept.startsWith("filter not applied"), `selection: ${kept}`);
    await applyFilter(page, { class: "role::web" });
    await page.waitForSelector("#filter-error", { state: "hidden" });
    await waitForRows(page, "#node-table tbody tr", expect.web);
    check((await page.textContent("#selection")).startsWith("2 nodes selected"), await page.textContent("#selection"));
  });

  await step("inputs are checked as the CLI checks them", async () => {
    await openTab(page, "tasks");
    await page.selectOption("#task-agent", "rpcutil");
    await page.selectOption("#task-action", "get_fact");
    await page.fill("#input-fact", "");
    await page.click("#task-run");
    await page.waitForSelector("#task-error:not([hidden])");
    const error = await page.textContent("#task-error");
    check(error.includes('input "fact" is required by rpcutil#get_fact'), error);
  });

  await step("a forged request is refused", async () => {
    const status = await page.evaluate(async () => {
      const response = await fetch("/api/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ agent: "rpcutil", action: "ping" }),
      });
      return response.status;
    });
    check(status === 403, `a POST without the CSRF token got ${status}`);
  });

  await step("requests from other hosts and origins are refused, even with the session", async () => {
    const cookies = await page.context().cookies();
    const session = cookies.find((cookie) => cookie.name === "baton_session");
    check(session && session.httpOnly && session.sameSite === "Strict", `session cookie: ${JSON.stringify(session)}`);
    const { csrf } = await page.evaluate(async () => (await fetch("/api/session")).json());
    const port = new URL(url).port;
    const headers = {
      "Content-Type": "application/json",
      Cookie: `baton_session=${session.value}`,
      "X-CSRF-Token": csrf,
      Host: `127.0.0.1:${port}`,
      Origin: `http://127.0.0.1:${port}`,
    };
    const body = JSON.stringify({ agent: "rpcutil", action: "ping", filter: { identity: ["no-such-node"] } });
    // The same request with every check satisfied gets past them (and fails on its filter).
    const allowed = await rawRequest("POST", "/api/jobs", headers, body);
    check(allowed.status === 400 && allowed.text.includes("no registered node"), `allowed: ${allowed.status} ${allowed.text}`);
    const rebound = await rawRequest("GET", "/api/session", { ...headers, Host: `evil.example:${port}` });
    check(rebound.status === 403, `another Host: ${rebound.status} ${rebound.text}`);
    const foreign = await rawRequest("POST", "/api/jobs", { ...headers, Origin: "http://evil.example" }, body);
    check(foreign.status === 403 && foreign.text.includes("another site"), `another Origin: ${foreign.status} ${foreign.text}`);
    const crossSite = await rawRequest("POST", "/api/jobs", { ...headers, "Sec-Fetch-Site": "cross-site" }, body);
    check(crossSite.status === 403, `Sec-Fetch-Site cross-site: ${crossSite.status}`);
    const noCookie = await rawRequest("POST", "/api/jobs", { ...headers, Cookie: "" }, body);
    check(noCookie.status === 401, `no session: ${noCookie.status}`);
    // Through a TLS proxy keeping the public Host (--origin): accepted, and the login's cookie is Secure.
    const publicHost = new URL(expect.origin).host;
    const proxied = await rawRequest("POST", "/api/jobs", { ...headers, Host: publicHost, Origin: expect.origin }, body);
    check(proxied.status === 400 && proxied.text.includes("no registered node"), `via the proxy: ${proxied.status} ${proxied.text}`);
    const plain = await rawRequest("POST", "/api/jobs", { ...headers, Host: publicHost, Origin: `http://${publicHost}` }, body);
    check(plain.status === 403, `the public host over http: ${plain.status} ${plain.text}`);
    const credentials = JSON.stringify({ user: process.env.BATON_CONSOLE_USER, password: process.env.BATON_CONSOLE_PASSWORD });
    const login = await rawRequest("POST", "/api/login", { "Content-Type": "application/json", Host: publicHost, Origin: expect.origin }, credentials);
    const cookie = String(login.headers["set-cookie"] || "");
    check(login.status === 200 && cookie.includes("HttpOnly") && cookie.includes("; Secure"), `login via the proxy: ${login.status} ${cookie}`);
  });

  await step("run a read-only action from its form at once and watch the results arrive", async () => {
    await runTask(page, "rpcutil", "get_fact", { fact: "role" });
    check(!(await page.$("#confirm[open]")), "a read-only action asks no confirmation");
    await waitForRows(page, "#task-output tbody tr", expect.web, { sorted: true });
    for (const node of expect.web) {
      const row = await page.textContent(`#task-output tbody tr[data-node="${node}"]`);
      // The definition's labels, not the output keys.
      check(row.includes("OK") && row.includes("Value: web") && !row.includes("value: web"), `${node}: ${row}`);
    }
    check((await page.getAttribute("#task-output", "data-state")) === "finished", "job not finished");
    const aggregate = await page.textContent("#task-output .aggregates");
    check(aggregate.includes("web: 2"), `aggregate: ${aggregate}`);
    const above = await page.evaluate(() => {
      const aggregates = document.querySelector("#task-output .aggregates");
      const table = document.querySelector("#task-output table.results");
      return Boolean(aggregates.compareDocumentPosition(table) & Node.DOCUMENT_POSITION_FOLLOWING);
    });
    check(above, "the aggregates are above the nodes' rows");
    const silent = await page.textContent("#task-output .no-response");
    check(silent.includes("Every targeted node answered"), silent);
    await shot(page, "task-results");
  });

  await step("a new action's form does not show the previous job's results", async () => {
    await page.selectOption("#task-action", "ping");
    check(await page.$("#task-output[hidden]"), "the get_fact results are gone under ping's form");
    await page.selectOption("#task-action", "get_fact");
    check(await page.$("#task-output[hidden]"), "and they do not come back");
  });

  await step("a changing action asks first, naming the node count; declining sends nothing", async () => {
    await openTab(page, "tasks");
    await page.selectOption("#task-agent", "service");
    await page.selectOption("#task-action", "restart");
    check((await page.textContent("#task-kind")).includes("asks for confirmation"), await page.textContent("#task-kind"));
    await page.fill("#input-service", "baton-e2e-no-such-service");
    await page.click("#task-run");
    await confirmDialog(page, expect.web.length, false, "confirm");
    await page.waitForSelector("#task-error:not([hidden])");
    check((await page.textContent("#task-error")).includes("not confirmed: nothing was sent"), await page.textContent("#task-error"));
    check(await page.$("#task-output[hidden]"), "no job was started");
    // The console itself refuses a changing action without a confirmation for its node count.
    const refused = await page.evaluate(async (count) => {
      const { csrf } = await (await fetch("/api/session")).json();
      const send = (extra) => fetch("/api/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ agent: "service", action: "restart", inputs: { service: "baton-e2e-no-such-service" }, filter: { class: ["role::web"] }, ...extra }),
      }).then(async (response) => `${response.status} ${(await response.json()).error}`);
      return [await send({}), await send({ confirmed_nodes: count + 1 })];
    }, expect.web.length);
    check(refused[0].startsWith(`400 service#restart changes things on ${expect.web.length} nodes`), refused[0]);
    check(refused[1].includes("the selection changed"), refused[1]);
    // A change cannot hide from the history by calling itself automatic (a status refresh):
    // only read-only actions may be kept out of the default list.
    const hidden = await page.evaluate(async (count) => {
      const { csrf } = await (await fetch("/api/session")).json();
      const response = await fetch("/api/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ agent: "service", action: "status", inputs: { service: "baton-e2e-no-such-service" }, filter: { class: ["role::web"] }, automatic: true }),
      });
      const statusId = (await response.json()).id;
      const changing = await fetch("/api/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ agent: "service", action: "restart", inputs: { service: "baton-e2e-no-such-service" }, filter: { class: ["role::web"] }, confirmed_nodes: count, automatic: true }),
      });
      const restartId = (await changing.json()).id;
      const listed = (await (await fetch("/api/jobs")).json()).jobs.map((job) => job.id);
      return { statusId, restartId, status: listed.includes(statusId), restart: listed.includes(restartId) };
    }, expect.web.length);
    check(hidden.statusId && hidden.restartId, JSON.stringify(hidden));
    check(!hidden.status, `an automatic read-only job is left out of the default history: ${JSON.stringify(hidden)}`);
    check(hidden.restart, `an automatic changing job is still listed: ${JSON.stringify(hidden)}`);
  });

  await step("the task form sends in batches, like baton rpc --batch", async () => {
    await runTask(page, "rpcutil", "ping", {}, { batch: "1", maxFailures: "0" });
    await waitForRows(page, "#task-output tbody tr", expect.web, { sorted: true });
    const id = await page.getAttribute("#task-output", "data-job");
    const job = await page.evaluate(async (id) => (await (await fetch(`/api/jobs/${id}`)).json()).job, id);
    check(job.outcome.stats.batches === expect.web.length, `batches: ${JSON.stringify(job.outcome.stats)}`);
    check(job.outcome.batches.every((batch) => batch.nodes.length === 1), JSON.stringify(job.outcome.batches));
    await page.fill("#task-batch", "");
    await page.fill("#task-max-failures", "");
  });

  await step("find a user on one node and clone it onto two others", async () => {
    const clone = expect.clone;
    await applyFilter(page, {});
    await waitForRows(page, "#node-table tbody tr", expect.nodes);
    await openTab(page, "resources");
    await page.selectOption("#resource-type", clone.type);
    await page.click("#resource-browse");
    const row = `#resource-table tbody tr[data-resource="${clone.title}"]`;
    await page.waitForSelector(row, { timeout: WAIT });
    check((await page.getAttribute(row, "data-differs")) === "yes", "the nodes differ before the clone");
    await page.click(`${row} button`);
    await page.waitForSelector("#clone-form:not([hidden])");
    check((await page.inputValue("#clone-source")) === clone.source, "the source is the node that has it");
    check((await page.$$("#clone-targets input:checked")).length === 0, "no target is checked for the user");
    await page.click("#clone-lacking");
    const targets = await page.$$eval("#clone-targets input:checked", (boxes) => boxes.map((box) => box.value).sort());
    check(targets.join(",") === clone.targets.join(","), `the nodes that lack it: ${targets}`);
    if (expect.differs) {
      // A resource every node has, with other properties on one of them.
      const differs = `#resource-table tbody tr[data-resource="${expect.differs}"]`;
      check((await page.getAttribute(differs, "data-differs")) === "yes", `${expect.differs} differs`);
      check((await page.$$(`${differs} td.differs`)).length === 3, `${expect.differs}: every node's cell shows its variant`);
    }
    await shot(page, "resources");
    await page.click("#clone-run");
    await confirmDialog(page, clone.targets.length, true);
    await page.waitForSelector("#clone-output[data-state=finished]", { timeout: WAIT });
    await waitForRows(page, "#clone-output tbody tr", clone.targets, { sorted: true });
    for (const node of clone.targets) {
      const status = await page.getAttribute(`#clone-output tbody tr[data-node="${node}"]`, "data-status");
      check(status === "0", `${node}: status ${status}`);
    }
    await shot(page, "resource-clone");
    // The matrix is searched again after the clone, without asking: the user is on every node now.
    await page.waitForFunction(
      (row) => document.querySelector(row)?.dataset.differs === "no",
      row,
      { timeout: WAIT },
    );
  });

  await step("disable Puppet on one node and see its status change", async () => {
    const { node, message } = expect.disable;
    await openTab(page, "puppet");
    // Each refresh ends (`data-refreshed`) with every row showing Puppet's status or an
    // error. When a `puppet` command failed on a node (Ruby starting under the other tests'
    // load), or the job itself did, that is said and asked again: what this step is about is
    // the console drawing and changing Puppet's state, not Puppet itself.
    for (let attempt = 1; ; attempt += 1) {
      const before = Number((await page.getAttribute("#puppet-table", "data-refreshed")) || 0);
      await page.click("#puppet-refresh");
      await page.waitForFunction(
        (before) => Number(document.querySelector("#puppet-table").dataset.refreshed || 0) > before,
        before,
        { timeout: WAIT * 2 },
      );
      const answered = await page.$$eval('#puppet-table [data-field="status"]', (cells) => cells.length);
      if (answered === 3) break;
      const errors = await page.$$eval('#puppet-table tbody tr', (rows) => rows
        .filter((row) => row.querySelector('[data-field="error"]'))
        .map((row) => `${row.dataset.node}: ${row.querySelector('[data-field="error"]').textContent}`));
      const why = `${answered} of 3 nodes gave their status; errors: ${errors.join("; ") || "none"}; ` +
        `page error: ${(await page.textContent("#puppet-error")) || "none"}`;
      check(attempt < 3, `puppet status incomplete ${attempt} times: ${why}`);
      console.log(`    puppet status incomplete, asking again: ${why}`);
    }
    // Rows are drawn as replies arrive; once every node answered nothing is left waiting.
    await page.waitForFunction(() => document.querySelector("#puppet-waiting").dataset.waiting === "0", null, { timeout: WAIT });
    check(!(await page.$('#puppet-table tr[data-waiting="yes"]')), "no puppet row is left waiting");
    check((await page.textContent(`#puppet-table tr[data-node="${node}"] [data-field="status"]`)) === "idling", "idling first");
    check(!(await page.isChecked("#puppet-all")), "'all' is not pre-checked");
    check((await page.$$("#puppet-table tbody input:checked")).length === 0, "no node is pre-checked");
    await page.click("#puppet-runonce");
    await page.waitForSelector("#puppet-error:not([hidden])");
    check((await page.textContent("#puppet-error")).includes("check at least one node"), await page.textContent("#puppet-error"));
    await page.check(`#puppet-table tr[data-node="${node}"] input[type=checkbox]`);
    await page.fill("#puppet-message", message);
    await page.click("#puppet-disable");
    await confirmDialog(page, 1, true);
    await page.waitForFunction(
      (node) => document.querySelector(`#puppet-table tr[data-node="${node}"] [data-field="status"]`)?.textContent === "disabled",
      node,
      { timeout: WAIT * 2 },
    );
    const shown = await page.textContent(`#puppet-table tr[data-node="${node}"] [data-field="message"]`);
    check(shown === message, `message shown: ${shown}`);
    const others = await page.$$eval(`#puppet-table tbody tr:not([data-node="${node}"]) [data-field="status"]`, (cells) => cells.map((cell) => cell.textContent));
    check(others.every((status) => status === "idling"), `the other nodes: ${others}`);
  });

  await step("run Puppet once where it is enabled; the disabled node refuses", async () => {
    const { node } = expect.disable;
    const other = expect.runonce;
    await page.check(`#puppet-table tr[data-node="${other}"] input[type=checkbox]`);
    await page.click("#puppet-runonce");
    await confirmDialog(page, 2, true);
    await page.waitForSelector("#puppet-output[data-state=finished]", { timeout: WAIT * 3 });
    await waitForRows(page, "#puppet-output tbody tr", [node, other].sort(), { sorted: true });
    const ran = await page.textContent(`#puppet-output tbody tr[data-node="${other}"]`);
    check(ran.includes("OK") && ran.includes("Changed: true"), `${other}: ${ran}`);
    const refused = await page.textContent(`#puppet-output tbody tr[data-node="${node}"]`);
    check(refused.includes("Puppet is disabled, not running it"), `${node}: ${refused}`);
    await page.waitForFunction(
      (other) => !document.querySelector(`#puppet-table tr[data-node="${other}"]`)?.textContent.includes("never"),
      other,
      { timeout: WAIT },
    );
    // The run's counts and duration, from its summary; the date in ISO 8601 (UTC).
    await page.waitForSelector(`#puppet-table tr[data-node="${other}"] [data-field="resources"]`, { timeout: WAIT });
    const cell = async (field) => page.textContent(`#puppet-table tr[data-node="${other}"] [data-field="${field}"]`);
    check(Number(await cell("resources")) >= 1, `resources: ${await cell("resources")}`);
    check(/^\d+$/.test(await cell("changed")) && (await cell("failures")) === "0", `changed ${await cell("changed")}, failures ${await cell("failures")}`);
    check(/^\d+\.\d s$/.test(await cell("duration")), `duration: ${await cell("duration")}`);
    check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(\d+s ago\)$/.test(await cell("lastrun")), `last run: ${await cell("lastrun")}`);
    await shot(page, "puppet");
  });

  await step("the history lists who asked what of whom", async () => {
    await openTab(page, "history");
    await page.waitForSelector("#history-table tbody tr");
    const text = await page.textContent("#history-table tbody");
    for (const what of ["puppet#runonce", "puppet#disable", "resource#create", "resource#find", "rpcutil#get_fact"]) {
      check(text.includes(what), `history lacks ${what}: ${text}`);
    }
    check(text.includes(process.env.BATON_CONSOLE_USER), "history names the user");
    // The Puppet view's own status refreshes do not flood it; they are there when asked for.
    check(!text.includes("puppet#status") && !text.includes("puppet#last_run_summary"), `automatic refreshes listed: ${text}`);
    check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/.test(await page.textContent("#history-table tbody tr td")), "ISO 8601 dates");
    await page.check("#history-automatic");
    await page.waitForFunction(() => document.querySelector("#history-table tbody").textContent.includes("puppet#status"));
    await page.uncheck("#history-automatic");
    await page.waitForFunction(() => !document.querySelector("#history-table tbody").textContent.includes("puppet#status"));
    await page.click("#history-table tbody tr >> text=resource#create");
    await page.waitForSelector("#history-detail tbody tr");
    const placed = await page.evaluate(() => {
      const detail = document.querySelector("#history-detail").closest("tr");
      return detail && detail.previousElementSibling.classList.contains("chosen") && detail.previousElementSibling.textContent.includes("resource#create");
    });
    check(placed, "the detail opens right under its row");
    await shot(page, "history");
  });

  await step("at 400 px wide nothing overflows the window", async () => {
    await page.setViewportSize({ width: 400, height: 800 });
    for (const tab of ["nodes", "tasks", "resources", "puppet", "history"]) {
      await openTab(page, tab);
      check(await fitsWidth(page), `the ${tab} tab is wider than 400 px: ${await page.evaluate(() => document.documentElement.scrollWidth)}`);
    }
    await openTab(page, "nodes");
    await shot(page, "narrow");
    await page.setViewportSize({ width: 1360, height: 860 });
  });
}

async function silent(page) {
  await step("log in", () => login(page));
  await step("replies stream in while a stopped node keeps the job waiting", async () => {
    await startTask(page, "rpcutil", "ping", {});
    // The stopped node's queue outlives it, so the job waits its whole timeout for it: the
    // other nodes' replies must be on the page before the job finishes, not with it.
    const seen = await page.waitForFunction(
      (nodes) => {
        const output = document.querySelector("#task-output");
        if (output.dataset.state) return `finished (${output.dataset.state}) before every live reply showed`;
        const shown = nodes.every((node) => output.querySelector(`tbody tr[data-node="${node}"][data-status="0"]`));
        return shown ? "streamed" : false;
      },
      expect.live,
      { timeout: WAIT },
    );
    const result = await seen.jsonValue();
    check(result === "streamed", result);
  });
  await step("a stopped node is listed as not responding", async () => {
    await page.waitForSelector("#task-output[data-state=finished]", { timeout: WAIT });
    const silentText = await page.textContent("#task-output .no-response");
    check(silentText.includes(expect.silent), `no-response: ${silentText}`);
    const row = await page.getAttribute(`#task-output tbody tr[data-node="${expect.silent}"]`, "data-status");
    check(row === "no-response", `${expect.silent}: ${row}`);
    await shot(page, "no-response");
  });
  await step("while waiting, the nodes still awaited are listed; a job can be cancelled", async () => {
    await startTask(page, "rpcutil", "ping", {});
    await page.waitForFunction(
      (silent) => {
        const awaiting = document.querySelector("#task-output .awaiting");
        return awaiting && awaiting.dataset.count === "1" && awaiting.textContent.includes(silent);
      },
      expect.silent,
      { timeout: WAIT },
    );
    await shot(page, "awaiting");
    await page.click("#task-output button.cancel");
    await page.waitForSelector("#task-output[data-state=cancelled]", { timeout: WAIT });
    const text = await page.textContent("#task-output");
    check(text.includes(`Cancelled by ${process.env.BATON_CONSOLE_USER}`), text);
    check(text.includes(`cancelled by ${process.env.BATON_CONSOLE_USER} with ${expect.live.length} of ${expect.live.length + 1} nodes answered; 1 still awaited`), text);
    const id = await page.getAttribute("#task-output", "data-job");
    const job = await page.evaluate(async (id) => (await (await fetch(`/api/jobs/${id}`)).json()).job, id);
    check(job.state === "cancelled" && job.outcome.awaited.join() === expect.silent, JSON.stringify(job.outcome));
  });
  await step("a batched job stops at its max failures and skips the rest", async () => {
    // Sorted, the stopped node is the first batch: it fails by silence, and nothing more is sent.
    await runTask(page, "rpcutil", "ping", {}, { batch: "1", maxFailures: "0" });
    const skipped = await page.textContent("#task-output .skipped");
    for (const node of expect.live) check(skipped.includes(node), `skipped: ${skipped}`);
    check((await page.textContent("#task-output")).includes(`${expect.live.length} skipped`), await page.textContent("#task-output"));
  });
}

async function restart(page) {
  await step("log in again", () => login(page));
  await step("the nodes are remembered and the stopped one goes quiet", async () => {
    await waitForRows(page, "#node-table tbody tr", expect.nodes);
    await page.waitForSelector(`#node-table tbody tr.quiet[data-node="${expect.quiet}"]`, { timeout: WAIT });
  });
  await step("the history is remembered", async () => {
    await openTab(page, "history");
    await page.waitForSelector("#history-table tbody tr");
    const text = await page.textContent("#history-table tbody");
    for (const what of expect.history) check(text.includes(what), `history lacks ${what}: ${text}`);
  });
}

async function signed(page) {
  await step("log in", () => login(page));
  await step("requests are signed as the logged-in user", async () => {
    await waitForRows(page, "#node-table tbody tr", expect.nodes);
    await runTask(page, "rpcutil", "ping", {});
    await page.waitForSelector("#task-output[data-state=finished]", { timeout: WAIT });
    await waitForRows(page, "#task-output tbody tr", expect.nodes, { sorted: true });
    const statuses = await page.$$eval("#task-output tbody tr", (rows) => rows.map((row) => row.dataset.status));
    check(statuses.every((status) => status === "0"), `statuses: ${statuses}`);
    const heading = await page.textContent("#task-output h3");
    check(heading.includes(`as ${expect.caller}`), heading);
  });
}

async function unsigned(page) {
  await step("log in", () => login(page));
  await step("a user without a key cannot send", async () => {
    await openTab(page, "tasks");
    await page.selectOption("#task-agent", "rpcutil");
    await page.selectOption("#task-action", "ping");
    await page.click("#task-run");
    await page.waitForSelector("#task-error:not([hidden])");
    const error = await page.textContent("#task-error");
    check(error.includes(expect.error), error);
  });
}

// A console without login, started after 1,000 nodes that never register.
async function fleet(page) {
  const count = expect.count;
  await step("every node is listed at once, though none has registered", async () => {
    await page.goto(url);
    await page.waitForSelector("#app:not([hidden])", { timeout: WAIT });
    await page.waitForSelector(`#node-count[data-shown="${count}"]`, { timeout: WAIT });
    check((await page.textContent("#selection")).startsWith(`${count} nodes selected`), await page.textContent("#selection"));
  });
  await step("the list is paged, with one compact row per node", async () => {
    const rows = await page.$$eval("#node-table tbody tr", (rows) => rows.map((row) => row.getBoundingClientRect().height));
    check(rows.length === 50, `${rows.length} rows on the first page`);
    check(rows.every((height) => height < 40), `row heights: ${Math.max(...rows)} px`);
    check((await page.textContent("#node-count")).startsWith(`1–50 of ${count}`), await page.textContent("#node-count"));
    check((await rowNodes(page, "#node-table tbody tr"))[0] === expect.first, "sorted by identity");
    await shot(page, "thousand");
    await page.click("#node-next");
    check((await page.textContent("#node-page")) === `page 2 of ${count / 50}`, await page.textContent("#node-page"));
    check((await rowNodes(page, "#node-table tbody tr"))[0] === "emu-00051", "the second page starts at the 51st");
  });
  await step("sort by a column, both ways", async () => {
    await page.click('#node-table th[data-sort="identity"]');
    await page.waitForFunction((last) => document.querySelector("#node-table tbody tr")?.dataset.node === last, expect.last);
    check((await page.textContent("#node-page")).startsWith("page 1 of"), "sorting goes back to the first page");
    await page.click('#node-table th[data-sort="identity"]');
    await page.waitForFunction((first) => document.querySelector("#node-table tbody tr")?.dataset.node === first, expect.first);
  });
  await step("search the list", async () => {
    await page.fill("#node-search", "emu-0099");
    await page.waitForSelector('#node-count[data-shown="10"]');
    const shown = await rowNodes(page, "#node-table tbody tr");
    check(shown.length === 10 && shown.every((node) => node.startsWith("emu-0099")), `found: ${shown}`);
    await page.fill("#node-search", "no such node anywhere");
    await page.waitForSelector('#node-count[data-shown="0"]');
    check((await page.textContent("#node-count")).startsWith(`none of ${count} matches`), await page.textContent("#node-count"));
    await page.fill("#node-search", "");
    await page.waitForSelector(`#node-count[data-shown="${count}"]`);
  });
}

// A console without login, started after a rollout stopped at its health check; the page
// then runs `baton rollout resume` (expect.resume, as another CI runner) and follows it.
async function rollouts(page) {
  const row = `#rollout-table tr[data-rollout="${expect.rollout_id}"]`;
  const cell = async (name) => (await page.textContent(`${row} td.${name}`)).trim();
  await step("a rollout that stopped before the console started is listed, read back from the broker", async () => {
    await page.goto(url);
    await page.waitForSelector("#app:not([hidden])", { timeout: WAIT });
    await openTab(page, "rollouts");
    await page.waitForSelector(`${row}[data-status="stopped"]`, { timeout: WAIT });
    check((await cell("done")) === "5 of 10", `done: ${await cell("done")}`);
    check((await cell("failed")) === "1", `failed: ${await cell("failed")}`);
    check((await cell("remaining")) === "4", `remaining: ${await cell("remaining")}`);
    check((await cell("batch")) === "3/5", `batch: ${await cell("batch")}`);
    check((await cell("checks")) === "5 ok, 1 failed", `checks: ${await cell("checks")}`);
    check((await cell("run")) === "1", `run: ${await cell("run")}`);
    check(await fitsWidth(page), "the rollouts view fits the window");
    await shot(page, "rollouts-stopped");
  });
  await step("its resume on another runner is shown live, batch by batch, until it finishes", async () => {
    // Every state the row shows, recorded by the page as it changes.
    await page.evaluate((selector) => {
      window.rolloutStates = [];
      new MutationObserver(() => {
        const shown = document.querySelector(selector);
        if (shown) window.rolloutStates.push(`${shown.dataset.status} ${shown.querySelector("td.done").textContent}`);
      }).observe(document.querySelector("#rollout-table tbody"), { childList: true, subtree: true, characterData: true });
    }, row);
    const [program, ...args] = expect.resume;
    const resume = spawn(program, args, { env: { ...process.env, XDG_STATE_HOME: expect.state }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    resume.stdout.on("data", (data) => { output += data; });
    resume.stderr.on("data", (data) => { output += data; });
    const exited = new Promise((resolve) => resume.on("exit", resolve));
    await page.waitForSelector(`${row}[data-status="finished"]`, { timeout: WAIT });
    const code = await exited;
    check(code === 0, `baton rollout resume exited ${code}:\n${output}`);
    check((await cell("done")) === "10 of 10", `done: ${await cell("done")}`);
    check((await cell("run")) === "2", `run: ${await cell("run")}`);
    const states = await page.evaluate(() => window.rolloutStates);
    check(states.some((state) => state.startsWith("running")), `states shown: ${states.join(" | ")}`);
    const counts = new Set(states.map((state) => state.split(" ")[1]));
    check(counts.size >= 3, `the done count moved batch by batch: ${states.join(" | ")}`);
    await shot(page, "rollouts-finished");
  });
}

const phases = { main, silent, restart, signed, unsigned, fleet, rollouts };
if (!phases[phase]) {
  console.error(`usage: node e2e.mjs ${Object.keys(phases).join("|")}`);
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.BATON_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
page.setDefaultTimeout(WAIT);
const messages = [];
page.on("console", (message) => messages.push(`console.${message.type()}: ${message.text()}`));
page.on("pageerror", (error) => messages.push(`page error: ${error.message}`));
let failed = false;
try {
  await phases[phase](page);
} catch (error) {
  failed = true;
  console.error(error.stack || String(error));
  console.error(messages.join("\n"));
  if (screenshots) await shot(page, `failure-${phase}`).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
