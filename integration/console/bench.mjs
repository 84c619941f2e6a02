// Times Baton's console at fleet size in Debian's headless Chromium (run by
// `integration/bench.py --console N`, which starts the emulated nodes and the console).
//
//   node bench.mjs
//
// Environment: BATON_CONSOLE_URL (a console without login), BATON_BENCH_COUNT (the nodes it
// lists), BATON_BENCH_RUNS, BATON_CHROMIUM. Prints one JSON document: each measurement's
// samples in milliseconds. Nothing is asserted beyond the list being complete: it measures.

import { chromium } from "playwright-core";

const url = process.env.BATON_CONSOLE_URL;
const count = Number(process.env.BATON_BENCH_COUNT);
const runs = Number(process.env.BATON_BENCH_RUNS || "5");
const WAIT = 120_000;

// Runs `change` in the page and times it until the next frame is drawn: the list's handlers
// render synchronously, so this is the work a user waits for.
async function framed(page, change) {
  return page.evaluate(async (change) => {
    const started = performance.now();
    new Function(change)();
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    return performance.now() - started;
  }, change);
}

const browser = await chromium.launch({
  executablePath: process.env.BATON_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
const samples = { load: [], nodes_api: [], search: [], clear_search: [], sort: [], next_page: [], filter: [] };
try {
  for (let run = 0; run < runs; run += 1) {
    const page = await browser.newPage({ viewport: { width: 1360, height: 860 } });
    page.setDefaultTimeout(WAIT);
    // Load: from navigation until the whole list is known and its first page drawn.
    const started = Date.now();
    await page.goto(url);
    await page.waitForSelector(`#node-count[data-shown="${count}"]`, { timeout: WAIT, polling: 10 });
    samples.load.push(Date.now() - started);
    // The list's JSON alone (1,000 nodes with their facts), as the page fetches it every 5 s.
    samples.nodes_api.push(await page.evaluate(async () => {
      const started = performance.now();
      await (await fetch(`/api/nodes?filter=${encodeURIComponent("{}")}`)).json();
      return performance.now() - started;
    }));
    const search = (text) => `const box = document.getElementById("node-search"); box.value = ${JSON.stringify(text)}; box.dispatchEvent(new Event("input"));`;
    samples.search.push(await framed(page, search("emu-0099")));
    samples.clear_search.push(await framed(page, search("")));
    samples.sort.push(await framed(page, `document.querySelector('#node-table th[data-sort="last_seen"]').click();`));
    samples.next_page.push(await framed(page, `document.getElementById("node-next").click();`));
    // A filter in the CLI's language: the console evaluates it over every node, the page redraws.
    const before = await page.textContent("#selection");
    const filtered = Date.now();
    await page.fill("#filter-identity", "/^emu-00[0-4]/");
    await page.click("#filter-apply");
    await page.waitForFunction((before) => document.getElementById("selection").textContent !== before, before, { polling: 10 });
    samples.filter.push(Date.now() - filtered);
    const selection = await page.textContent("#selection");
    if (!selection.startsWith("499 nodes selected")) throw new Error(`the filter selected: ${selection}`);
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ count, runs, samples }));
