// bench/run's Node peer for the `websocket` section: the chat of examples/websocket.rs
// (same protocol, same design) on Node's `cluster` with the `ws` package, and a rolling
// restart on SIGHUP, which Node's cluster does not have: for each worker in turn, fork
// its successor, wait for it to listen, then tell the old one to drain (close every
// socket with 1012 Service Restart, stop listening, exit once the last socket is gone,
// or after 30 s).
//
//   NODE_PATH=<dir with ws> node bench/ws_node.js --workers 2 --port P
//
// The primary numbers the posted lines, keeps the last 10,000 and broadcasts them to
// every worker; a worker answers `ack <epoch> <seq>` to the poster, sends `line <epoch>
// <seq> <text>` to every socket, and `hello <pid> <epoch>` first on each socket, then
// the lines after `since` (`/chat?epoch=E&since=N`). The epoch is the primary's pid.
// Prints `ready workers=N port=P` once all listen, `rolling restart done ms=..` after a
// roll (every successor listening), `drained pid=.. ms=..` as each old worker exits.
const cluster = require('node:cluster');
const http = require('node:http');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const WORKERS = arg('--workers', 2);
const PORT = arg('--port', 3000);
const HISTORY = 10000;
const DRAIN_TIMEOUT_MS = 30000;

if (cluster.isPrimary) {
  const epoch = process.pid;
  let seq = 0;
  const history = [];
  let stopping = false;
  let started = 0;
  const fork = () => cluster.fork({ EPOCH: String(epoch) });
  for (let i = 0; i < WORKERS; i++) fork();
  cluster.on('listening', () => {
    if (++started === WORKERS) console.log(`ready workers=${WORKERS} port=${PORT}`);
  });
  cluster.on('message', (w, msg) => {
    if (msg.t === 'post') {
      seq += 1;
      history.push([seq, msg.text]);
      if (history.length > HISTORY) history.shift();
      for (const id in cluster.workers) {
        const other = cluster.workers[id];
        if (other.isConnected()) other.send({ t: 'line', seq, text: msg.text });
      }
      w.send({ t: 'posted', id: msg.id, seq });
    } else if (msg.t === 'since') {
      w.send({ t: 'history', id: msg.id, lines: history.filter(([s]) => s > msg.since) });
    }
  });
  cluster.on('exit', (w) => {
    if (w.drainingSince !== undefined) {
      console.log(`drained pid=${w.process.pid} ms=${(Number(process.hrtime.bigint() - w.drainingSince) / 1e6).toFixed(1)}`);
    } else if (!stopping) {
      fork();
    }
  });
  let rolling = false;
  process.on('SIGHUP', async () => {
    if (rolling) return;
    rolling = true;
    const began = process.hrtime.bigint();
    const old = Object.values(cluster.workers).filter((w) => w.drainingSince === undefined);
    for (const w of old) {
      const successor = fork();
      await new Promise((resolve) => successor.once('listening', resolve));
      w.drainingSince = process.hrtime.bigint();
      w.send({ t: 'drain' });
    }
    console.log(`rolling restart done ms=${(Number(process.hrtime.bigint() - began) / 1e6).toFixed(1)}`);
    rolling = false;
  });
  const stop = () => {
    stopping = true;
    for (const id in cluster.workers) cluster.workers[id].kill();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const { WebSocketServer } = require('ws');
  const EPOCH = Number(process.env.EPOCH);
  const sockets = new Set();
  const waiting = new Map();
  let nextId = 0;
  let draining = false;
  const ask = (msg) => new Promise((resolve) => {
    const id = ++nextId;
    waiting.set(id, resolve);
    process.send({ ...msg, id });
  });
  const server = http.createServer((req, res) => { res.statusCode = 404; res.end(); });
  const wss = new WebSocketServer({ server, path: '/chat' });
  wss.on('connection', async (ws, req) => {
    const query = new URL(req.url, 'http://x').searchParams;
    const client = { ws, last: 0, queue: [], ready: false };
    if (Number(query.get('epoch')) === EPOCH) client.last = Number(query.get('since') || 0);
    // Subscribed before the history is asked for: nothing falls in between.
    sockets.add(client);
    ws.on('close', () => {
      sockets.delete(client);
      if (draining && sockets.size === 0) process.exit(0);
    });
    ws.on('error', () => {});
    ws.on('message', async (data) => {
      const posted = await ask({ t: 'post', text: data.toString() });
      if (ws.readyState === ws.OPEN) ws.send(`ack ${EPOCH} ${posted.seq}`);
    });
    const missed = await ask({ t: 'since', since: client.last });
    if (ws.readyState !== ws.OPEN) return;
    ws.send(`hello ${process.pid} ${EPOCH}`);
    for (const [seq, text] of missed.lines.concat(client.queue)) {
      if (seq > client.last) {
        ws.send(`line ${EPOCH} ${seq} ${text}`);
        client.last = seq;
      }
    }
    client.queue = null;
    client.ready = true;
    if (draining) ws.close(1012, 'Service Restart');
  });
  process.on('message', (msg) => {
    if (msg.t === 'line') {
      for (const client of sockets) {
        if (!client.ready) {
          client.queue.push([msg.seq, msg.text]);
        } else if (msg.seq > client.last && client.ws.readyState === client.ws.OPEN) {
          client.last = msg.seq;
          client.ws.send(`line ${EPOCH} ${msg.seq} ${msg.text}`);
        }
      }
    } else if (msg.t === 'posted' || msg.t === 'history') {
      const resolve = waiting.get(msg.id);
      waiting.delete(msg.id);
      if (resolve) resolve(msg);
    } else if (msg.t === 'drain') {
      draining = true;
      server.close();
      for (const client of sockets) if (client.ready) client.ws.close(1012, 'Service Restart');
      if (sockets.size === 0) process.exit(0);
      setTimeout(() => process.exit(0), DRAIN_TIMEOUT_MS).unref();
    }
  });
  server.listen(PORT);
}
