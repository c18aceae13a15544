// speedscope_check.js - imports a pprof profile into speedscope (npm) in Debian's
// chromium and prints one JSON line: errors, and the text of its sandwich view.
// usage: node speedscope_check.js PROFILE.pb.gz SCREENSHOT.png
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const {chromium} = require("playwright-core");

const RELEASE = path.join(__dirname, "node_modules", "speedscope", "dist", "release");
const TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm"};

// speedscope fetches #profileURL=..., which a file:// page may not: serve both.
function serve(profile) {
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent(req.url.split("?")[0].split("#")[0]);
    const file = name === "/profile.pb.gz" ? profile : path.join(RELEASE, path.normalize(name));
    if (file !== profile && !file.startsWith(RELEASE)) {
      res.writeHead(403).end();
      return;
    }
    fs.readFile(file, (err, data) => {
      if (err) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, {"Content-Type": TYPES[path.extname(file)] || "application/octet-stream"});
      res.end(data);
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

async function main() {
  const [profile, shot] = process.argv.slice(2);
  const server = await serve(path.resolve(profile));
  const base = "http://127.0.0.1:" + server.address().port;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run"],
  });
  const result = {errors: []};
  try {
    const page = await browser.newPage({viewport: {width: 1400, height: 900}});
    page.on("pageerror", (e) => result.errors.push(String(e)));
    await page.goto(base + "/index.html#profileURL=" + encodeURIComponent(base + "/profile.pb.gz"));
    await page.waitForTimeout(4000);
    await page.getByText(/Sandwich/).first().click({timeout: 20000});
    await page.waitForTimeout(1000);
    result.title = await page.title();
    result.sandwich = (await page.locator("body").innerText()).slice(0, 4000);
    await page.screenshot({path: shot});
  } finally {
    await browser.close();
    server.close();
  }
  console.log(JSON.stringify(result));
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
