// Test helper: expecting an S3 refusal from the AWS SDK, by its code and HTTP status.
import assert from 'node:assert/strict';
import { S3ServiceException } from '@aws-sdk/client-s3';

/** Runs `fn`, expecting an S3 error with this code (any, when '') and HTTP status; returns the error. */
export async function rejects(
  fn: () => Promise<unknown>,
  code: string,
  status: number,
): Promise<S3ServiceException> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof S3ServiceException, `expected an S3 error, got ${String(err)}`);
    assert.equal(err.$metadata.httpStatusCode, status, `status of ${err.name}: ${err.message}`);
    if (code) assert.equal(err.name, code, err.message);
    return err;
  }
  assert.fail(`expected ${code || status}, but the request succeeded`);
}
