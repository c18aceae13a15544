'use strict';
// e2e target module: the culprit of node_routes.js and node_express_app.js.
// rebuildRoutes spends a given time building a RegExp per route pattern in
// compileRoute; V8 compiles and re-compiles both as they get hot.

let routeSerial = 0;
// The global `performance` loads its module on first use: not in a stall.
performance.now();

function compileRoute(pattern) {
  // A fresh source every time, so V8's RegExp cache cannot answer.
  const source = '^' + pattern.replace(/:(\w+)/g, '(?<$1>[^/]+)') + '/v' + (routeSerial++) + '$';
  const re = new RegExp(source);
  return re.test(pattern.replace(/:\w+/g, 'x') + '/v' + (routeSerial - 1)) ? re : null;
}

function rebuildRoutes(ms) {
  const patterns = ['/users/:id', '/users/:id/posts/:post', '/shops/:shop/items/:item/:variant',
                    '/search/:term', '/a/:b/c/:d/e/:f'];
  const deadline = performance.now() + ms;
  const table = [];
  while (performance.now() < deadline) {
    for (const p of patterns)
      table.push(compileRoute(p));
    if (table.length > 5000)
      table.length = 0;
  }
  return table.length;
}

module.exports = { compileRoute, rebuildRoutes };
