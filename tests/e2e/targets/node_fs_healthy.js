// e2e target: a healthy Node service keeping libuv's pool lightly busy.
// READERS chains of fs.readFile and a pbkdf2 every few ms run for RUN_MS:
// the pool's 4 threads take turns on libuv's own queue mutex, thousands of
// short waits that are libuv's business, not the program's. Prints
// "FS-DONE ops=N max_latency_ms=X" (per operation, start to callback).
'use strict';
const fs = require('fs');
const crypto = require('crypto');

const RUN_MS = 3000;
const READERS = 3;
const end = Date.now() + RUN_MS;
let ops = 0;
let maxLatency = 0;

function timed(start) {
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (ms > maxLatency) maxLatency = ms;
  ops++;
}

function readChain() {
  if (Date.now() > end) return;
  const start = process.hrtime.bigint();
  fs.readFile(__filename, () => { timed(start); readChain(); });
}

function hashChain() {
  if (Date.now() > end) return;
  const start = process.hrtime.bigint();
  crypto.pbkdf2('secret', 'salt', 2000, 32, 'sha256', () => { timed(start); setTimeout(hashChain, 2); });
}

for (let i = 0; i < READERS; i++) readChain();
hashChain();
process.on('exit', () => console.log('FS-DONE ops=%d max_latency_ms=%s', ops, maxLatency.toFixed(1)));
