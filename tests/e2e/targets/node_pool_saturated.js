'use strict';
// e2e target: libuv's thread pool exhausted by crypto.pbkdf2.
//
// Run with UV_THREADPOOL_SIZE=4 (the test sets it).  After a short
// calibration (one pbkdf2 job on the pool, so the loop never blocks), 16
// pbkdf2 jobs are submitted at once, sized so that the whole phase takes
// about PHASE_TARGET_S of wall time on this machine whatever its speed: the 4
// pool threads are all busy for the whole phase while 12 jobs wait in libuv's
// queue.  The event loop itself stays idle.  Prints
//   PBKDF2-DONE jobs=16 iterations=N phase_s=S
// and exits 0.

const crypto = require('crypto');
const os = require('os');

const JOBS = 16;
const POOL_SIZE = Number(process.env.UV_THREADPOOL_SIZE || 4);
const PHASE_TARGET_S = 3.0;
const CALIBRATION_ITERATIONS = 50000;

function pbkdf2(iterations, i) {
  return new Promise((resolve, reject) => {
    crypto.pbkdf2('password-' + i, 'salt', iterations, 64, 'sha512', (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

async function main() {
  const t0 = performance.now();
  await pbkdf2(CALIBRATION_ITERATIONS, -1);
  const perIterationS = (performance.now() - t0) / 1000 / CALIBRATION_ITERATIONS;
  // The phase runs JOBS jobs on min(POOL_SIZE, cores) cores at once.
  const cores = Math.max(1, Math.min(POOL_SIZE, os.availableParallelism ? os.availableParallelism() : os.cpus().length));
  let iterations = Math.round(PHASE_TARGET_S * cores / JOBS / perIterationS);
  iterations = Math.max(20000, Math.min(iterations, 5000000));

  const started = performance.now();
  const keys = await Promise.all(Array.from({ length: JOBS }, (_, i) => pbkdf2(iterations, i)));
  const phaseS = (performance.now() - started) / 1000;
  if (keys.length !== JOBS || keys.some((k) => k.length !== 64)) throw new Error('bad keys');
  console.log(`PBKDF2-DONE jobs=${JOBS} iterations=${iterations} phase_s=${phaseS.toFixed(3)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
