// browser_check.js - opens an HTML report in Debian's chromium (playwright-core)
// and prints one JSON line: console errors, stalls shown, flame-graph zoom.
// usage: node browser_check.js REPORT.html SCREENSHOT.png
"use strict";

const {chromium} = require("playwright-core");

async function main() {
  const [page_path, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run"],
  });
  const result = {errors: [], requests: []};
  try {
    const page = await browser.newPage({viewport: {width: 1400, height: 1000}});
    page.on("console", (m) => { if (m.type() === "error") result.errors.push(m.text()); });
    page.on("pageerror", (e) => result.errors.push(String(e)));
    page.on("request", (r) => { if (!r.url().startsWith("file:")) result.requests.push(r.url()); });
    await page.goto("file://" + page_path);
    await page.waitForSelector("body[data-rendered=yes]", {timeout: 10000});
    result.stall_rows = await page.locator("tr.stall-row").count();
    result.timeline_stalls = await page.locator(".timeline rect.ev.stall").count();
    result.diagnosis = await page.locator("#diagnosis").innerText();
    // Click the narrowest frame drawn: it must become the focus and then
    // span the whole width.
    const flame = page.locator(".flame").first();
    const frames = flame.locator(".fg-frame:not(.root)");
    result.frames_before = await frames.count();
    const widths = await frames.evaluateAll((els) => els.map((e) => e.getBoundingClientRect().width));
    if (widths.length) {           // a recording without stalls has no flame graph
      const narrowest = widths.indexOf(Math.min(...widths));
      const target = frames.nth(narrowest);
      result.clicked = await target.getAttribute("data-name");
      result.clicked_width_ratio = widths[narrowest] / (await flame.boundingBox()).width;
      await target.click();
      result.focus = await flame.getAttribute("data-focus");
      result.zoomed_width_ratio = await flame.evaluate((box, name) => {
        const f = [...box.querySelectorAll(".fg-frame:not(.dim)")].find((e) => e.dataset.name === name);
        return f ? f.getBoundingClientRect().width / box.getBoundingClientRect().width : 0;
      }, result.clicked);
    }
    // Zoom the timeline in with its button: the first axis label changes.
    const axisBefore = await page.locator(".timeline text.axis").allInnerTexts();
    await page.locator(".toolbar button", {hasText: "events"}).first().click();
    const axisAfter = await page.locator(".timeline text.axis").allInnerTexts();
    result.timeline_zoomed = axisBefore.join() !== axisAfter.join();
    await page.screenshot({path: shot, fullPage: true});
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
