// The first-start banner's "Try:" line is a command that works exactly as printed with aws CLI 2 on a machine
// with no AWS configuration at all (no ~/.aws, no AWS_* variables): it names the region, which `aws s3 mb`
// needs, and, for a self-signed certificate, the bundle to trust. It is run here through sh as a user pastes it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startServer, type TestServer } from '../helpers/server.js';
import { startTlsServer } from '../security/ssec-helpers.js';

const AWS_V2 = '/usr/bin/aws';

function awsV2Present(t: TestContext): boolean {
  if (
    existsSync(AWS_V2) &&
    /^aws-cli\/2\./.test(spawnSync(AWS_V2, ['--version'], { encoding: 'utf8' }).stdout)
  )
    return true;
  if (process.env.CI) throw new Error('aws CLI 2 (/usr/bin/aws) is missing');
  t.skip('aws CLI 2 not installed');
  return false;
}

/** Runs a pasted command line in a clean environment: a fresh HOME, a PATH where `aws` is aws CLI 2. */
function paste(line: string, home: string): { code: number; out: string } {
  const r = spawnSync('sh', ['-c', line], {
    env: { HOME: home, PATH: '/usr/bin:/bin', AWS_PAGER: '' },
    encoding: 'utf8',
  });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function tryLine(server: TestServer): string {
  const line = /^Try: (.*)$/m.exec(server.stdout())?.[1];
  assert.ok(line, server.stdout());
  return line;
}

async function checkBanner(t: TestContext, server: TestServer): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'coffre-clean-home-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const line = tryLine(server);
  assert.match(line, /AWS_DEFAULT_REGION=us-east-1 aws --endpoint-url /);
  const listed = paste(line, home);
  assert.equal(listed.code, 0, `${line}\n${listed.out}`);
  // The same words make a bucket and list it: the region is what `s3 mb` needs.
  const made = paste(line.replace(/ s3 ls$/, ' s3 mb s3://first-bucket'), home);
  assert.equal(made.code, 0, made.out);
  const again = paste(line, home);
  assert.match(again.out, /first-bucket/);
  assert.ok(!existsSync(join(home, '.aws')), 'the aws CLI found or wrote a configuration');
}

test('the printed command works as printed with aws CLI 2 and no AWS configuration', async (t) => {
  if (!awsV2Present(t)) return;
  const server = await startServer();
  t.after(() => server.cleanup());
  t.after(() => server.stop());
  await checkBanner(t, server);
});

test('over TLS with a self-signed certificate, the printed command names it for --ca-bundle', async (t) => {
  if (!awsV2Present(t)) return;
  const { server, files } = await startTlsServer();
  t.after(() => server.cleanup());
  t.after(() => server.stop());
  assert.ok(tryLine(server).includes(`--ca-bundle ${files.certPath}`), tryLine(server));
  await checkBanner(t, server);
});
