'use strict';
// e2e target module: the in-process HTTP client of node_routes.js and
// node_express_app.js (one request on a fresh connection, body discarded).

const http = require('http');

function get(port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
}

module.exports = { get };
