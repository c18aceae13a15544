// node_pool.js - jobs through Node's libuv thread pool (crypto.pbkdf2 with one
// iteration: the job is tiny, so what is measured is the pool's hand-off),
// 16 in flight, for bench/run.py. Prints "jobs_per_s cpu_us_per_job".
'use strict';
const crypto = require('crypto');
const n = Number(process.argv[2] || 40000);
const inflight = 16;

function run(count, done) {
  let started = 0, finished = 0;
  const next = () => {
    if (started >= count) return;
    started++;
    crypto.pbkdf2('password', 'salt', 1, 32, 'sha256', (err) => {
      if (err) throw err;
      finished++;
      if (finished === count) done(); else next();
    });
  };
  for (let i = 0; i < inflight; i++) next();
}

run(1000, () => {
  const c0 = process.cpuUsage(), t0 = process.hrtime.bigint();
  run(n, () => {
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    console.log(`${(n / secs).toFixed(1)} ${((c.user + c.system) / n).toFixed(3)}`);
  });
});
