'use strict';
// e2e target: an express app on 127.0.0.1 (port 0).
//   node node_express_app.js block    its own clients call /login 10 times, whose
//                                     handler calls hashPassword (crypto.pbkdf2Sync,
//                                     ~88 ms), then /routes twice (rebuildRoutes,
//                                     ~200 ms of RegExp building), while others poll
//                                     /health; prints each call's own timing
//                                     (CLOCK_MONOTONIC ns, as the dump's) and ends.
//   node node_express_app.js serve    only /health and /item; prints the port and
//                                     serves until killed (a healthy run under load).
// express comes from tests/e2e/node/node_modules (NODE_PATH).

const crypto = require('crypto');
const express = require('express');
const { rebuildRoutes } = require('./route_table');
const { get } = require('./node_get');

const mode = process.argv[2] || 'block';
const HASH_MS = 88;
const LOGINS = 10;
const REBUILD_MS = 200;
const REBUILDS = 2;

// Iterations for one ~88 ms pbkdf2, measured before the loop starts (so the
// calibration is no stall of its own, and hashPassword stays cold).
function calibrate() {
  const t0 = performance.now();
  crypto.pbkdf2Sync('calibration', 'salt', 20000, 64, 'sha512');
  const perIteration = (performance.now() - t0) / 20000;
  return Math.max(1000, Math.round(HASH_MS / perIteration));
}
const iterations = mode === 'block' ? calibrate() : 0;

function hashPassword(password, salt) {
  return crypto.pbkdf2Sync(password, salt, iterations, 64, 'sha512').toString('hex');
}

const app = express();
app.get('/health', (req, res) => res.send('ok'));
app.get('/item/:id', (req, res) => res.json({ id: req.params.id, at: Date.now() }));
app.get('/login', function login(req, res) {
  const t0 = process.hrtime.bigint();
  const digest = hashPassword('hunter2-' + req.query.n, 'salt');
  const t1 = process.hrtime.bigint();
  console.log(`express_app: hashPassword ${(Number(t1 - t0) / 1e6).toFixed(1)} ms, monotonic ${t0}..${t1}`);
  res.send(digest.slice(0, 16));
});
app.get('/routes', function routes(req, res) {
  const t0 = process.hrtime.bigint();
  const n = rebuildRoutes(REBUILD_MS);
  const t1 = process.hrtime.bigint();
  console.log(`express_app: rebuildRoutes ${(Number(t1 - t0) / 1e6).toFixed(1)} ms, monotonic ${t0}..${t1}`);
  res.send(String(n));
});

const server = app.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  console.log(`express_app: listening on ${port} pid ${process.pid}`);
  if (mode !== 'block') {
    process.on('SIGTERM', () => server.close(() => process.exit(0)));
    return;
  }
  let done = false;
  const pollers = [];
  for (let c = 0; c < 3; c++) {
    pollers.push((async () => {
      while (!done) {
        await get(port, c ? '/health' : '/item/' + c);
        await new Promise((r) => setTimeout(r, 10));
      }
    })());
  }
  await new Promise((r) => setTimeout(r, 200));
  for (let i = 0; i < LOGINS; i++) {
    await get(port, '/login?n=' + i);
    await new Promise((r) => setTimeout(r, 60));
  }
  for (let i = 0; i < REBUILDS; i++) {
    await get(port, '/routes');
    await new Promise((r) => setTimeout(r, 100));
  }
  done = true;
  await Promise.all(pollers);
  server.close(() => console.log('express_app: done'));
});
