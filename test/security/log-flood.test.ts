// Anyone who reaches the RPC port can fail a handshake. Each refusal used to be a warning line, so a loop of
// junk connections filled the operator's disk and drowned every other line; now a few are logged and the rest
// counted, and the node goes on serving.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { test } from 'node:test';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { startServerFor } from '../helpers/server.js';

const ATTEMPTS = 300;

// One connection that sends a junk first handshake message; resolves when the node has closed it.
function junkHandshake(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(randomBytes(64)));
    socket.on('error', () => {});
    socket.on('close', () => resolve());
  });
}

test(`${ATTEMPTS} failed RPC handshakes give a handful of log lines, not ${ATTEMPTS}`, async (t) => {
  const server = await startServerFor(t);
  for (let i = 0; i < ATTEMPTS; i += 30) {
    await Promise.all(Array.from({ length: 30 }, () => junkHandshake(server.rpcPort)));
  }
  // The node still serves, and has written what it logs about the refusals by the time it answers.
  const s3 = server.client();
  t.after(() => s3.destroy());
  await s3.send(new ListBucketsCommand({}));
  await server.stop();
  const log = server.stdout() + server.stderr();
  const lines = log.split('\n').filter((l) => l.includes('refused connection from'));
  assert.ok(lines.length >= 1, 'the first refusals are logged');
  assert.ok(lines.length <= 10, `${lines.length} lines for ${ATTEMPTS} refusals`);
  // Stopping the node writes the count of those it did not log one by one.
  assert.match(log, /\d+ more refused RPC connections in the last \d+ s/);
});
