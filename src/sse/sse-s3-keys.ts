// sse/sse-s3-keys: a node's SSE-S3 master keys. The keyring file (sse/keyring.ts) holds them sealed to the
// operators' OpenPGP keys; the node holds them in memory once unlocked — at start with an unlock key file, or
// when an operator hands them over (`coffre sse-s3 unlock`) — and never writes them in clear. Until then,
// SSE-S3 requests are refused with 503 and a message saying what to run.
//
// Once unlocked, the node describes the keyring it holds in memory, not the file: the file may have been
// changed since, and what matters to an operator is which master key new objects are written with.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { SseS3Config } from '../config/config.js';
import { S3Error, S3Errors } from '../util/s3-error.js';
import { UserError, errorMessage } from '../util/errors.js';
import { fileMode, requirePrivateFile } from '../util/private-file.js';
import { Keyring, parseKeyringFile, recipientUserIds, summarize } from './keyring.js';
import type { StoredEncryption } from './object-crypto.js';
import type { EncryptionParams } from './params.js';

export interface SseS3Status {
  configured: boolean;
  unlocked: boolean;
  keyringFile: string;
  /** The keyring's format version, and its id (none in version 1). */
  v?: number;
  keyring?: string;
  current?: string;
  keys?: { id: string; created: string; recipients: string[] }[];
  /** Why the keyring file cannot be read, when it cannot. */
  damaged?: string;
  /** Recipients by OpenPGP user id, fingerprint → user id (GET /v1/sse-s3 only; see recipientUserIds). */
  userIds?: Record<string, string>;
}

/** SHA-256 (hex) of a sealed keyring file's text: how an operator names the file they checked. */
export function sealedDigest(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export class SseS3Keys {
  private keyring?: Keyring;

  constructor(private readonly config: SseS3Config) {}

  /** Unlocks the keyring with the configured unlock key file, if both exist. */
  async start(): Promise<void> {
    const keyFile = this.config.unlockKeyFile;
    if (!keyFile || !existsSync(this.config.keyringFile)) return;
    let armored: string;
    let mode: number;
    try {
      mode = fileMode(keyFile);
      armored = readFileSync(keyFile, 'utf8');
    } catch (err) {
      throw new UserError(`[sse_s3] unlock_key_file: cannot read ${keyFile}: ${errorMessage(err)}`);
    }
    requirePrivateFile(`[sse_s3] unlock_key_file ${keyFile}`, keyFile, { mode });
    this.keyring = await Keyring.unlock(this.sealedText(), armored, process.env.COFFRE_SSE_S3_PASSPHRASE);
  }

  get configured(): boolean {
    return existsSync(this.config.keyringFile);
  }

  status(): SseS3Status {
    const base = {
      configured: this.configured,
      unlocked: this.keyring !== undefined,
      keyringFile: this.config.keyringFile,
    };
    if (this.keyring) return { ...base, ...this.keyring.summary() };
    if (!base.configured) return base;
    try {
      return { ...base, ...summarize(parseKeyringFile(this.sealedText())) };
    } catch (err) {
      // Still answered, so that an operator sees what is wrong (and `unlock` can say it too).
      if (err instanceof UserError) return { ...base, damaged: err.message };
      throw err;
    }
  }

  /**
   * Who the master keys are sealed to, by OpenPGP user id (fingerprint → user id), from the public keys the
   * keyring keeps: of the keyring held in memory once unlocked, else of the file.
   */
  async recipientUserIds(): Promise<Record<string, string>> {
    if (this.keyring) return this.keyring.recipientUserIds();
    if (!this.configured) return {};
    try {
      return await recipientUserIds(parseKeyringFile(this.sealedText()));
    } catch (err) {
      if (err instanceof UserError) return {}; // status() says what is wrong with the file
      throw err;
    }
  }

  /** The sealed keyring file, as stored (safe to hand out: opening it takes an operator's private key). */
  sealedText(): string {
    return readFileSync(this.config.keyringFile, 'utf8');
  }

  /** Creates the keyring with a first master key sealed to `operatorPublicKeys`, unlocked here. */
  async init(operatorPublicKeys: string[]): Promise<void> {
    if (this.configured)
      throw new UserError(
        `an SSE-S3 keyring exists already (${this.config.keyringFile}); use rotate or reseal`,
      );
    const keyring = await Keyring.create(operatorPublicKeys);
    this.save(keyring);
    this.keyring = keyring;
  }

  /**
   * Takes master keys an operator unlocked from the sealed file whose digest is `digest` (sealedDigest): the
   * file must still be that one, and the keys must match its check values and MAC.
   */
  unlockWith(keys: ReadonlyMap<string, Buffer>, digest: string): void {
    if (!this.configured)
      throw new UserError('no SSE-S3 keyring on this node (create one with `coffre sse-s3 init`)');
    const text = this.sealedText();
    const actual = Buffer.from(sealedDigest(text), 'hex');
    const expected = Buffer.from(digest, 'hex');
    if (expected.length !== actual.length || !expected.equals(actual))
      throw new UserError(
        'the SSE-S3 keyring file changed since it was read: run `coffre sse-s3 unlock` again',
      );
    const keyring = Keyring.fromUnlockedKeys(text, keys);
    this.keyring?.lock();
    this.keyring = keyring;
  }

  /** Adds a fresh master key for new objects, sealed to `operatorPublicKeys`. */
  async rotate(operatorPublicKeys: string[]): Promise<string> {
    const keyring = this.unlocked();
    const id = await keyring.rotate(operatorPublicKeys);
    this.save(keyring);
    return id;
  }

  /** Re-seals every master key to exactly `operatorPublicKeys`. */
  async reseal(operatorPublicKeys: string[]): Promise<void> {
    const keyring = this.unlocked();
    await keyring.reseal(operatorPublicKeys);
    this.save(keyring);
  }

  /** Params for a new SSE-S3 object. */
  forWrite(): EncryptionParams {
    return this.ready().paramsForWrite();
  }

  /** Params for reading an SSE-S3 object. */
  forRead(stored: StoredEncryption): EncryptionParams {
    return this.ready().paramsForRead(stored);
  }

  lock(): void {
    this.keyring?.lock();
    this.keyring = undefined;
  }

  private unlocked(): Keyring {
    if (!this.keyring) {
      throw new UserError(
        this.configured
          ? 'the SSE-S3 keyring is locked on this node (unlock it with `coffre sse-s3 unlock`)'
          : 'no SSE-S3 keyring on this node (create one with `coffre sse-s3 init`)',
      );
    }
    return this.keyring;
  }

  // For S3 requests: not set up is the operator's choice (501), locked is a state that passes (503).
  private ready(): Keyring {
    if (this.keyring) return this.keyring;
    if (!this.configured) {
      throw S3Errors.notImplemented('SSE-S3 on this node (an operator sets it up with `coffre sse-s3 init`)');
    }
    throw new S3Error(
      'ServiceUnavailable',
      503,
      'SSE-S3 keys are locked on this node: an operator must run `coffre sse-s3 unlock`. Please retry later.',
    );
  }

  private save(keyring: Keyring): void {
    const path = this.config.keyringFile;
    const tmp = `${path}.tmp`;
    writeFileSync(tmp, keyring.serialize(), { mode: 0o600 });
    renameSync(tmp, path);
  }
}
