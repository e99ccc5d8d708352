'use strict';
// Sends events to a Fluentd-compatible server with the npm `fluent-logger` library.
//
//   node send.js --port 24224 [--host 127.0.0.1] [--mode Message|PackedForward|CompressedPackedForward]
//                [--ca ca.pem]
//
// Reads one JSON object per line on stdin: {"tag": "...", "sec": N, "nsec": N, "record": {...}}
// and emits each with an EventTime (nanosecond precision) and requireAckResponse: true, so
// every callback fires only after the server acknowledged the chunk. Exits 0 once all events
// are acknowledged, non-zero on the first error or if acks do not arrive in time. With --ca it
// speaks TLS (`tls: true`), trusting the CA certificates of that PEM file, to the name localhost.

const fs = require('fs');
const readline = require('readline');
const logger = require('fluent-logger');

function parseArgs(argv) {
  const args = { host: '127.0.0.1', port: 24224, mode: 'Message', timeoutMs: 60000 };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (key === 'port') args.port = Number(value);
    else if (key === 'host') args.host = value;
    else if (key === 'mode') args.mode = value;
    else if (key === 'timeout-ms') args.timeoutMs = Number(value);
    else if (key === 'ca') args.ca = value;
    else throw new Error(`unknown argument --${key}`);
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv);
  const events = [];
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.trim()) events.push(JSON.parse(line));
  }

  const sender = logger.createFluentSender(null, {
    host: args.host,
    port: args.port,
    timeout: 10.0,
    eventMode: args.mode,
    flushInterval: 20,
    requireAckResponse: true,
    ackResponseTimeout: args.timeoutMs,
    enableReconnect: false,
    internalLogger: { info() {}, error: (...a) => console.error(...a) },
    tls: args.ca !== undefined,
    tlsOptions: args.ca === undefined ? {} : { ca: fs.readFileSync(args.ca), servername: 'localhost' },
  });

  const fail = (msg) => {
    console.error(`node client: ${msg}`);
    process.exit(1);
  };
  const watchdog = setTimeout(() => fail(`timed out after ${args.timeoutMs} ms waiting for acks`), args.timeoutMs);
  sender.on('error', (err) => fail(`sender error: ${err && err.stack ? err.stack : err}`));

  let acked = 0;
  const done = new Promise((resolve) => {
    if (events.length === 0) resolve();
    for (const ev of events) {
      const time = new logger.EventTime(ev.sec, ev.nsec);
      sender.emit(ev.tag, ev.record, time, (err) => {
        if (err) fail(`emit callback error: ${err}`);
        acked += 1;
        if (acked === events.length) resolve();
      });
    }
  });
  await done;
  clearTimeout(watchdog);
  sender.end(null, null, () => {
    console.log(JSON.stringify({ sent: events.length, acked }));
    process.exit(0);
  });
}

main().catch((err) => {
  console.error(`node client: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
