// Follows a flumen live stream over WebSocket (GET /api/v1/tail) with the npm `ws` client, as
// an application would: each text frame is an event (or, with a `type`, a control message);
// when the stream closes with a reason that says `reconnect: true` (1012 when flumen restarts,
// 1011, 4429), or the connection drops, it connects again with `after=` the last position it
// printed, retrying every 250 ms while flumen is down.
//
//   node tail_ws.js URL COUNT
//
// Prints one JSON line per event, {"position": P, "n": record.n, "line": line}, and exits 0
// after COUNT events. Each close goes to stderr as `close: CODE REASON`, each connection
// error as `error: MESSAGE`; a close that says `reconnect: false` exits 2.
'use strict';
const WebSocket = require('ws');

const [base, count] = [process.argv[2], Number(process.argv[3])];
const RETRY_MS = 250;
let seen = 0;
let last = null;

function connect() {
  const url = new URL(base);
  if (last !== null) url.searchParams.set('after', last);
  const socket = new WebSocket(url);
  socket.on('message', (data, isBinary) => {
    if (isBinary) return;
    const frame = JSON.parse(data.toString('utf8'));
    if (frame.type !== undefined) {
      process.stderr.write(`control: ${JSON.stringify(frame)}\n`);
      return;
    }
    last = frame.position;
    const line = { position: frame.position, n: frame.record.n, line: frame.line };
    process.stdout.write(JSON.stringify(line) + '\n');
    seen += 1;
    if (seen >= count) {
      socket.close(1000);
      process.exit(0);
    }
  });
  socket.on('error', (error) => process.stderr.write(`error: ${error.message}\n`));
  socket.on('close', (code, reasonBytes) => {
    const reason = reasonBytes.toString('utf8');
    process.stderr.write(`close: ${code} ${reason}\n`);
    let reconnect = true; // a dropped connection (1006) has no reason: try again
    try {
      reconnect = JSON.parse(reason).reconnect !== false;
    } catch (_) {
      // not JSON: not flumen's close frame
    }
    if (!reconnect) process.exit(2);
    setTimeout(connect, RETRY_MS);
  });
}

connect();
