// coffre runs on Node.js 20, and the AWS SDK it ships never tells its users to upgrade Node.js: the SDK versions
// are pinned below the one (@aws-sdk/core 3.974.8, with @aws-sdk/client-s3 3.1041.0) that prints a
// "NodeVersionSupportWarning … will require node >=22" on every run under Node.js 20. A CLI command that talks
// S3 through the SDK (crypt init and put on an S3 remote) prints nothing of it.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { startServer } from '../helpers/server.js';
import { coffre, tempDir } from '../crypt/helpers.js';

test('a CLI command that uses the AWS SDK prints no Node.js version warning', async (t) => {
  const server = await startServer();
  t.after(() => server.cleanup());
  t.after(() => server.stop());
  const s3 = server.client();
  await s3.send(new CreateBucketCommand({ Bucket: 'warned' }));
  s3.destroy();
  const base = tempDir('sdk-warning');
  const env = {
    COFFRE_CRYPT_HOME: join(base, 'crypt'),
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    // The SDK's own switch for this warning must not be what hides it.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: '',
  };
  const file = join(base, 'hello.txt');
  writeFileSync(file, 'hello\n');
  const runs = [
    coffre(
      [
        'init',
        'w',
        '--type',
        's3',
        '--endpoint',
        server.endpoint,
        '--bucket',
        'warned',
        '--encryption',
        'none',
      ],
      env,
    ),
    coffre(['put', 'w', file], env),
  ];
  for (const r of runs) {
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /NodeVersionSupportWarning|require node|Warning:/, r.stderr);
  }
});
