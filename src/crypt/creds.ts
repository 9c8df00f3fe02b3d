// crypt/creds: S3 credentials embedded in the remote config like git-annex's `s3creds=` field. With a cipher the
// text "login\npassword\n" is encrypted like an object, and the binary result is taken as Latin-1 characters,
// UTF-8 encoded, then base64'd (git-annex's quirk, kept for compatibility). Without a cipher: base64 of the text.
import { UserError } from '../util/errors.js';
import type { RemoteCipher } from './cipher.js';
import { collect, decryptMessage, encryptMessage } from './openpgp.js';

/** Longest embedded credentials text read back ("login\npassword\n"). */
const MAX_CREDS = 64 * 1024;

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export async function encodeCreds(creds: S3Credentials, cipher: RemoteCipher | null): Promise<string> {
  const text = Buffer.from(`${creds.accessKeyId}\n${creds.secretAccessKey}\n`, 'utf8');
  const sealing = cipher ? await cipher.sealing() : null;
  if (!sealing) return text.toString('base64');
  const sealed = await collect(encryptMessage([text], text.length, sealing));
  text.fill(0);
  return Buffer.from(sealed.toString('latin1'), 'utf8').toString('base64');
}

export async function decodeCreds(field: string, cipher: RemoteCipher | null): Promise<S3Credentials> {
  const raw = Buffer.from(field, 'base64');
  let text: string;
  if (cipher && cipher.mode !== 'none') {
    const sealed = Buffer.from(raw.toString('utf8'), 'latin1');
    text = (await collect(decryptMessage([sealed], cipher.opening(), { maxLength: MAX_CREDS }))).toString(
      'utf8',
    );
  } else text = raw.toString('utf8');
  const [accessKeyId, secretAccessKey] = text.split('\n');
  if (!accessKeyId || !secretAccessKey) throw new UserError('embedded S3 credentials are malformed');
  return { accessKeyId, secretAccessKey };
}

/** Credentials from the environment (the AWS SDK also reads ~/.aws/credentials when these are unset). */
export function envCreds(): S3Credentials | null {
  const id = process.env.AWS_ACCESS_KEY_ID;
  const secret = process.env.AWS_SECRET_ACCESS_KEY;
  return id && secret ? { accessKeyId: id, secretAccessKey: secret } : null;
}
