// Preloaded into Node's cluster peer for bench/run's balance runs only
// (`node -r bench/node_worker_pid.js server.js`; cluster workers inherit execArgv):
// every response names the worker process that served it in `x-worker-pid`, as
// wix-cluster's hello example does, so that one wrk script counts both.
const http = require('node:http');
const end = http.ServerResponse.prototype.end;
http.ServerResponse.prototype.end = function (...args) {
  if (!this.headersSent) this.setHeader('x-worker-pid', String(process.pid));
  return end.apply(this, args);
};
