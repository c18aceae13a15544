'use strict';
// e2e target: a Node.js line server for `stalltrace attach`
// (test_attach_real.py). Serves lines on 127.0.0.1:0 and prints "PORT N":
// "fast" is answered at once; "slow" by handleSlowRequest, whose
// Atomics.wait of 200 ms blocks the event loop (a real blocking wait in V8,
// a pthread condition's timed wait); its reply "slow MS" is the program's own
// measure of it. "quit" is answered "bye" and ends the program.

const net = require('net');

const cell = new Int32Array(new SharedArrayBuffer(4));

function handleSlowRequest() {
  const started = process.hrtime.bigint();
  Atomics.wait(cell, 0, 0, 200);   // the culprit: blocks the event loop
  return 'slow ' + (Number(process.hrtime.bigint() - started) / 1e6).toFixed(1);
}

const server = net.createServer((sock) => {
  let buf = '';
  sock.on('data', (chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === 'slow') {
        sock.write(handleSlowRequest() + '\n');
      } else if (line === 'quit') {
        sock.end('bye\n');
        server.close();
      } else {
        sock.write(line + '\n');
      }
    }
  });
});
server.listen(0, '127.0.0.1', () => console.log('PORT ' + server.address().port));
