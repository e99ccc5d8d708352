'use strict';
// Sends log lines to a Loki push API with the npm `winston-loki` or `pino-loki` library.
//
//   node loki.js --client winston|pino --url http://127.0.0.1:3100 [--labels '{"app":"x"}']
//
// Reads one JSON object per line on stdin: {"level": "info", "message": "...", "time_ms": N,
// "meta": {...}} and logs each at its time. winston-loki sends snappy-compressed protobuf
// (`json: false`, its default, with the snappy package installed); pino-loki sends JSON, with
// `meta` as structured metadata. Prints one JSON line: {"client", "contentType", "errors"}; exits
// non-zero when a push failed.

const readline = require('readline');

function parseArgs(argv) {
  const args = { labels: {} };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (key === 'client') args.client = value;
    else if (key === 'url') args.url = value;
    else if (key === 'labels') args.labels = JSON.parse(value);
    else throw new Error(`unknown argument --${key}`);
  }
  return args;
}

async function readEvents() {
  const events = [];
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.trim()) events.push(JSON.parse(line));
  }
  return events;
}

async function withWinston(args, events) {
  const winston = require('winston');
  const LokiTransport = require('winston-loki');
  const errors = [];
  const transport = new LokiTransport({
    host: args.url,
    labels: args.labels,
    json: false,
    batching: true,
    interval: 0.2,
    replaceTimestamp: false,
    gracefulShutdown: false,
    onConnectionError: (error) => errors.push(String(error)),
  });
  const logger = winston.createLogger({ level: 'silly', transports: [transport] });
  for (const event of events) {
    logger.log({ level: event.level, message: event.message, timestamp: new Date(event.time_ms).toISOString() });
  }
  await transport.flush();
  const contentType = transport.batcher.contentType;
  transport.close();
  return { contentType, errors };
}

async function withPino(args, events) {
  const pino = require('pino');
  const { pinoLoki } = require('pino-loki');
  const errors = [];
  const originalError = console.error;
  // pino-loki reports failed pushes on the console only.
  console.error = (...parts) => errors.push(parts.map(String).join(' '));
  const stream = pinoLoki({
    host: args.url,
    labels: args.labels,
    batching: { interval: 60 },
    replaceTimestamp: false,
  });
  let now = 0;
  const logger = pino({ level: 'trace', timestamp: () => `,"time":${now}` }, stream);
  for (const event of events) {
    now = event.time_ms;
    logger[event.level](event.meta ? { meta: event.meta } : {}, event.message);
  }
  await new Promise((resolve) => {
    stream.on('close', resolve);
    stream.end();
  });
  console.error = originalError;
  return { contentType: 'application/json', errors };
}

async function main() {
  const args = parseArgs(process.argv);
  const events = await readEvents();
  const send = args.client === 'winston' ? withWinston : args.client === 'pino' ? withPino : null;
  if (!send) throw new Error('--client winston or pino');
  const result = await send(args, events);
  process.stdout.write(JSON.stringify({ client: args.client, ...result }) + '\n');
  process.exit(result.errors.length ? 1 : 0);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(2);
});
