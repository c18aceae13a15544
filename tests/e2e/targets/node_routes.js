'use strict';
// e2e target: a Node.js timer callback (onRebuildTimer) that spends ~200 ms
// in rebuildRoutes, which calls compileRoute to build a RegExp per route,
// while an HTTP server on 127.0.0.1 (port 0) answers clients of the same
// process. V8 compiles and re-compiles code all along, so code addresses
// are reused: the frames must be named after the function that ran then.
// Prints each rebuild's own timing (CLOCK_MONOTONIC ns, as the dump's); ends
// by itself.

const http = require('http');

const REBUILDS = Number(process.env.REBUILDS || 3);
const REBUILD_MS = 200;

const { rebuildRoutes } = require('./route_table');
const { get } = require('./node_get');

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(Buffer.from('ok ' + req.url + '\n'));
});

server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  let done = false;
  let requests = 0;
  const clients = [];
  for (let c = 0; c < 4; c++) {
    clients.push((async () => {
      while (!done) {
        await get(port, '/item/' + c + '/' + requests);
        requests++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })());
  }
  let rebuilds = 0;
  setTimeout(function onRebuildTimer() {
    const t0 = process.hrtime.bigint();
    rebuildRoutes(REBUILD_MS);
    const t1 = process.hrtime.bigint();
    console.log(`node_routes: rebuildRoutes ${(Number(t1 - t0) / 1e6).toFixed(1)} ms, monotonic ${t0}..${t1}`);
    if (++rebuilds < REBUILDS) {
      setTimeout(onRebuildTimer, 300);
      return;
    }
    setTimeout(async () => {
      done = true;
      await Promise.all(clients);
      server.close(() => console.log(`node_routes: ${requests} requests, ${rebuilds} rebuilds`));
    }, 100);
  }, 300);
});
