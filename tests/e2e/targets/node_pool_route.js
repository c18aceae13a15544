'use strict';
// e2e target: an HTTP route (handleUpload) whose requests each derive keys
// with crypto.pbkdf2 on libuv's pool (UV_THREADPOOL_SIZE=4, the test sets it).
//
//   node node_pool_route.js saturated   4 clients at once, 4 pbkdf2 each:
//                                       16 jobs on 4 workers, 12 of them queue
//   node node_pool_route.js healthy     2 clients, one short pbkdf2 per request,
//                                       back to back: the pool is loaded, never full
//
// The server listens on 127.0.0.1 port 0 and its own in-process clients call
// it. Job sizes are calibrated so the saturated phase lasts about
// PHASE_TARGET_S whatever the machine. Prints
//   ROUTE-DONE mode=M requests=R jobs=J queued=Q phase_s=S
// (Q: jobs beyond the pool's size while all were submitted at once) and exits 0.

const crypto = require('crypto');
const http = require('http');
const os = require('os');

const { get } = require('./node_get');

const MODE = process.argv[2] === 'healthy' ? 'healthy' : 'saturated';
const POOL_SIZE = Number(process.env.UV_THREADPOOL_SIZE || 4);
const CLIENTS = MODE === 'saturated' ? 4 : 2;
const KEYS_PER_REQUEST = MODE === 'saturated' ? 4 : 1;
const HEALTHY_REQUESTS = 100;    // per client
const PHASE_TARGET_S = 2.0;

let iterations = 20000;
let jobs = 0;
const latencies = [];                 // submission to callback, ms, per job

function deriveKey(secret, i) {
  return new Promise((resolve, reject) => {
    jobs++;
    const submitted = performance.now();
    crypto.pbkdf2(secret + i, 'salt', iterations, 64, 'sha512', (err, key) => {
      latencies.push(performance.now() - submitted);
      if (err) reject(err);
      else resolve(key);
    });
  });
}

async function handleUpload(req, res) {
  const keys = [];
  for (let i = 0; i < KEYS_PER_REQUEST; i++)
    keys.push(deriveKey(req.url, i));
  await Promise.all(keys);
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('stored\n');
}

const server = http.createServer((req, res) => {
  handleUpload(req, res).catch((e) => { res.writeHead(500); res.end(String(e)); });
});

server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  // One job alone on the pool, to size the others.
  const t0 = performance.now();
  await new Promise((resolve) => crypto.pbkdf2('x', 'salt', 50000, 64, 'sha512', resolve));
  const perIterationS = (performance.now() - t0) / 1000 / 50000;
  const cores = Math.max(1, Math.min(POOL_SIZE, os.availableParallelism ? os.availableParallelism() : os.cpus().length));
  if (MODE === 'saturated')
    iterations = Math.max(20000, Math.min(5000000, Math.round(PHASE_TARGET_S * cores / (CLIENTS * KEYS_PER_REQUEST) / perIterationS)));
  else
    iterations = Math.max(1000, Math.round(0.002 / perIterationS));  // ~2 ms a job

  let requests = 0;
  const started = performance.now();
  if (MODE === 'saturated') {
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => get(port, '/upload/' + c).then(() => requests++)));
  } else {
    await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
      for (let r = 0; r < HEALTHY_REQUESTS; r++) {
        await get(port, '/upload/' + c + '/' + r);
        requests++;
      }
    }));
  }
  const phaseS = (performance.now() - started) / 1000;
  const queued = MODE === 'saturated' ? Math.max(0, CLIENTS * KEYS_PER_REQUEST - POOL_SIZE) : 0;
  // The truth of the queue waits: every job runs about as long as the
  // quickest one (no job waited for it); the rest of its latency it queued.
  const sorted = latencies.slice().sort((a, b) => a - b);
  const waits = sorted.map((l) => l - sorted[0]).slice(Math.min(POOL_SIZE, sorted.length));
  const mean = waits.length ? waits.reduce((a, b) => a + b, 0) / waits.length : 0;
  console.log(`ROUTE-WAITS queued=${waits.length} mean_ms=${mean.toFixed(1)} max_ms=${(waits.length ? waits[waits.length - 1] : 0).toFixed(1)}`);
  console.log(`ROUTE-DONE mode=${MODE} requests=${requests} jobs=${jobs} queued=${queued} phase_s=${phaseS.toFixed(3)}`);
  server.close();
});
