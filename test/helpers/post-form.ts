// Test helper: a browser form upload (S3 PostObject), built and signed as a form generator does it: a policy
// document with the SigV4 form fields among its conditions, signed with the key's signing key for the day.
import { createHmac } from 'node:crypto';

export interface PostFormSpec {
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  key: string;
  file: Buffer;
  region?: string;
  /** Further form fields, each also a condition of the policy. */
  fields?: [string, string][];
  /** Further policy conditions (content-length-range, starts-with …). */
  conditions?: unknown[];
  /** When the policy expires (in an hour unless told). */
  expiration?: Date;
  /** Signs with this secret in place of the key's own (an attacker's form). */
  signWith?: string;
}

/** The multipart/form-data body of a signed PostObject form. */
export function signedPostForm(spec: PostFormSpec): FormData {
  const region = spec.region ?? 'us-east-1';
  const now = new Date();
  const day = now.toISOString().slice(0, 10).replace(/-/g, '');
  const amzDate = `${day}T000000Z`;
  const credential = `${spec.accessKeyId}/${day}/${region}/s3/aws4_request`;
  const fields = spec.fields ?? [];
  const policy = Buffer.from(
    JSON.stringify({
      expiration: (spec.expiration ?? new Date(now.getTime() + 3600_000)).toISOString(),
      conditions: [
        { bucket: spec.bucket },
        { key: spec.key },
        ...fields.map(([k, v]) => ({ [k]: v })),
        ...(spec.conditions ?? []),
        { 'x-amz-algorithm': 'AWS4-HMAC-SHA256' },
        { 'x-amz-credential': credential },
        { 'x-amz-date': amzDate },
      ],
    }),
  ).toString('base64');
  let signing: Buffer = Buffer.from(`AWS4${spec.signWith ?? spec.secretAccessKey}`);
  for (const part of [day, region, 's3', 'aws4_request'])
    signing = createHmac('sha256', signing).update(part).digest();
  const fd = new FormData();
  fd.append('key', spec.key);
  for (const [k, v] of fields) fd.append(k, v);
  fd.append('X-Amz-Algorithm', 'AWS4-HMAC-SHA256');
  fd.append('X-Amz-Credential', credential);
  fd.append('X-Amz-Date', amzDate);
  fd.append('Policy', policy);
  fd.append('X-Amz-Signature', createHmac('sha256', signing).update(policy).digest('hex'));
  fd.append('file', new Blob([spec.file]), 'upload.bin');
  return fd;
}
