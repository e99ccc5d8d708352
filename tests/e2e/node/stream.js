// Follows a flumen live stream (GET /api/v1/stream) with the npm `eventsource` client, which
// does what a browser's EventSource does: it reconnects by itself after the stream ends or
// the server goes away, sending the last event's id as Last-Event-ID.
//
//   node stream.js URL COUNT
//
// Prints one JSON line per event, {"id": POSITION, "n": record.n}, and exits after COUNT; the
// stream's `close` messages and connection errors go to stderr.
'use strict';
const { EventSource } = require('eventsource');

const [url, count] = [process.argv[2], Number(process.argv[3])];
let seen = 0;
const source = new EventSource(url);
source.onmessage = (message) => {
  const event = JSON.parse(message.data);
  process.stdout.write(JSON.stringify({ id: message.lastEventId, n: event.record.n }) + '\n');
  seen += 1;
  if (seen >= count) {
    source.close();
    process.exit(0);
  }
};
source.addEventListener('close', (message) => process.stderr.write(`close: ${message.data}\n`));
source.onerror = (error) => process.stderr.write(`error: ${error.message || error.type}\n`);
