// bench/logs: what the per-request log costs and whether its lines survive the process.
//
//   npx tsc -p tsconfig.json && node dist/bench/logs.js
//
// Starts a server at log level info (JSON lines on a pipe, as under a supervisor), PUTs 4 KiB objects at
// concurrency 32 for a few seconds and prints the operations per second, with the server logging each request
// and with COFFRE_LOG_LEVEL=warn (no request lines), so the log's share of a request shows. Then it sends a
// burst of PUTs and kills the server with SIGKILL the moment the last answer arrives, and counts how many of
// the answered requests have their `s3 request` line: a line written only later, from a buffer, is lost then.
import { startServer, type TestServer } from '../test/helpers/server.js';
import { S3Http, KiB } from './lib/s3-http.js';

const BUCKET = 'logs';
const OPS_SECONDS = 4;
const CONCURRENCY = 32;
const BURST = 2000;

function clientOf(server: TestServer): S3Http {
  return new S3Http(server.s3Port, {
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    region: 'us-east-1',
  });
}

async function putsPerSecond(level: string): Promise<number> {
  const server = await startServer({ env: { COFFRE_LOG_LEVEL: level } });
  try {
    const client = clientOf(server);
    await client.createBucket(BUCKET);
    let next = 0;
    const start = process.hrtime.bigint();
    const deadline = Date.now() + OPS_SECONDS * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (Date.now() < deadline) await client.put(`/${BUCKET}/o${next++}`, 4 * KiB);
      }),
    );
    return next / (Number(process.hrtime.bigint() - start) / 1e9);
  } finally {
    await server.stop();
    server.cleanup();
  }
}

async function linesAtKill(): Promise<{ answered: number; logged: number }> {
  const server = await startServer({ env: { COFFRE_LOG_LEVEL: 'info' } });
  try {
    const client = clientOf(server);
    await client.createBucket(BUCKET);
    let next = 0;
    let answered = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < BURST) {
          await client.put(`/${BUCKET}/burst${next++}`, 4 * KiB);
          answered++;
        }
      }),
    );
    await server.kill();
    const logged = server
      .stderr()
      .split('\n')
      .filter(
        (l) => l.includes('"s3 request"') && /"key":"burst\d+"/.test(l) && /"status":200/.test(l),
      ).length;
    return { answered, logged };
  } finally {
    server.cleanup();
  }
}

const withLog = await putsPerSecond('info');
const withoutLog = await putsPerSecond('warn');
const kill = await linesAtKill();
process.stdout.write(
  [
    `4 KiB PUT, concurrency ${CONCURRENCY}: ${withLog.toFixed(0)} ops/s with a line per request (info), ` +
      `${withoutLog.toFixed(0)} ops/s without (warn)`,
    `SIGKILL right after ${kill.answered} answered PUTs: ${kill.logged} of their request lines were written ` +
      `(${kill.answered - kill.logged} lost)`,
    '',
  ].join('\n'),
);
