// Drives Baton's web console in Debian's headless Chromium (run by integration/console.rs).
//
//   node e2e.mjs main|silent|restart
//
// Environment: BATON_CONSOLE_URL, BATON_CONSOLE_USER, BATON_CONSOLE_PASSWORD, BATON_CHROMIUM,
// BATON_E2E_EXPECT (JSON: what this phase should find), and optionally BATON_SCREENSHOTS (a
// directory for PNGs of the main views). Exits non-zero, saying which step failed, on failure.

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
async function runTask(page, agent, action, inputs) {
  await startTask(page, agent, action, inputs);
  await page.waitForSelector("#task-output[data-state]", { timeout: WAIT * 2 });
}

// Runs the form of the advanced tasks tab, without waiting.
async function startTask(page, agent, action, inputs) {
  await openTab(page, "tasks");
  await page.selectOption("#task-agent", agent);
  await page.selectOption("#task-action", action);
  for (const [name, value] of Object.entries(inputs)) {
    await page.fill(`#input-${name}`, value);
  }
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

  await step("run an action from its form and watch the results arrive", async () => {
    await runTask(page, "rpcutil", "get_fact", { fact: "role" });
    await waitForRows(page, "#task-output tbody tr", expect.web, { sorted: true });
    for (const node of expect.web) {
      const row = await page.textContent(`#task-output tbody tr[data-node="${node}"]`);
      check(row.includes("OK") && row.includes("value: web"), `${node}: ${row}`);
    }
    check((await page.getAttribute("#task-output", "data-state")) === "finished", "job not finished");
    const aggregate = await page.textContent("#task-output .aggregates");
    check(aggregate.includes("web: 2"), `aggregate: ${aggregate}`);
    const silent = await page.textContent("#task-output .no-response");
    check(silent.includes("Every targeted node answered"), silent);
    await shot(page, "task-results");
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
    const targets = await page.$$eval("#clone-targets input:checked", (boxes) => boxes.map((box) => box.value).sort());
    check(targets.join(",") === clone.targets.join(","), `targets offered: ${targets}`);
    if (expect.differs) {
      // A resource every node has, with other properties on one of them.
      const differs = `#resource-table tbody tr[data-resource="${expect.differs}"]`;
      check((await page.getAttribute(differs, "data-differs")) === "yes", `${expect.differs} differs`);
      check((await page.$$(`${differs} td.differs`)).length === 3, `${expect.differs}: every node's cell shows its variant`);
    }
    await shot(page, "resources");
    await page.click("#clone-run");
    await page.waitForSelector("#clone-output[data-state=finished]", { timeout: WAIT });
    await waitForRows(page, "#clone-output tbody tr", clone.targets, { sorted: true });
    for (const node of clone.targets) {
      const status = await page.getAttribute(`#clone-output tbody tr[data-node="${node}"]`, "data-status");
      check(status === "0", `${node}: status ${status}`);
    }
    await shot(page, "resource-clone");
    await page.click("#resource-browse");
    await page.waitForFunction(
      (row) => document.querySelector(row)?.dataset.differs === "no",
      row,
      { timeout: WAIT },
    );
  });

  await step("disable Puppet on one node and see its status change", async () => {
    const { node, message } = expect.disable;
    await openTab(page, "puppet");
    await page.click("#puppet-refresh");
    await page.waitForFunction(
      () => [...document.querySelectorAll('#puppet-table [data-field="status"]')].length === 3,
      null,
      { timeout: WAIT * 2 },
    );
    // Rows are drawn as replies arrive; once every node answered nothing is left waiting.
    await page.waitForFunction(() => document.querySelector("#puppet-waiting").dataset.waiting === "0", null, { timeout: WAIT });
    check(!(await page.$('#puppet-table tr[data-waiting="yes"]')), "no puppet row is left waiting");
    check((await page.textContent(`#puppet-table tr[data-node="${node}"] [data-field="status"]`)) === "idling", "idling first");
    await page.uncheck("#puppet-all");
    await page.check(`#puppet-table tr[data-node="${node}"] input[type=checkbox]`);
    await page.fill("#puppet-message", message);
    await page.click("#puppet-disable");
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
    await page.waitForSelector("#puppet-output[data-state=finished]", { timeout: WAIT * 3 });
    await waitForRows(page, "#puppet-output tbody tr", [node, other].sort(), { sorted: true });
    const ran = await page.textContent(`#puppet-output tbody tr[data-node="${other}"]`);
    check(ran.includes("OK") && ran.includes("changed: true"), `${other}: ${ran}`);
    const refused = await page.textContent(`#puppet-output tbody tr[data-node="${node}"]`);
    check(refused.includes("Puppet is disabled, not running it"), `${node}: ${refused}`);
    await page.waitForFunction(
      (other) => !document.querySelector(`#puppet-table tr[data-node="${other}"]`)?.textContent.includes("never"),
      other,
      { timeout: WAIT },
    );
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
    await page.click("#history-table tbody tr >> text=resource#create");
    await page.waitForSelector("#history-detail tbody tr");
    await shot(page, "history");
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

const phases = { main, silent, restart, signed, unsigned };
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
