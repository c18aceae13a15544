'use strict';
// e2e target: a Node.js timer callback that runs a ~200 ms synchronous busy
// loop (busyWork) while the event loop is otherwise active: an HTTP server on
// 127.0.0.1 (port 0) answering requests from clients in the same process.
// It ends by itself once the requests are done.

const http = require('http');

const BUSY_MS = 200;

function busyWork(ms) {
  // Pure CPU, no system call worth the name: a checksum until the deadline.
  const deadline = performance.now() + ms;
  let acc = 0;
  let n = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 5000; i++) {
      n++;
      acc = (acc * 31 + n * n) % 1000003;
    }
  }
  return acc;
}

function get(port, path) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(performance.now() - started));
    }).on('error', reject);
  });
}

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('ok ' + req.url + '\n');
});

server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  let busyResult = 0;
  let busyElapsed = 0;
  // The culprit: a timer callback that blocks the loop.
  setTimeout(function onTimer() {
    const t0 = performance.now();
    busyResult = busyWork(BUSY_MS);
    busyElapsed = performance.now() - t0;
  }, 100);
  let requests = 0;
  const clients = [];
  for (let c = 0; c < 5; c++) {
    clients.push((async () => {
      for (let i = 0; i < 10; i++) {
        await get(port, '/item/' + c + '/' + i);
        requests++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })());
  }
  await Promise.all(clients);
  server.close(() => {
    console.log(`node_busy: ${requests} requests, busyWork ${busyElapsed.toFixed(0)} ms ` +
                `(checksum ${busyResult})`);
  });
});
