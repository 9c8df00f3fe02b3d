// sse/sse-s3-keys: a node's SSE-S3 master keys. The keyring file (sse/keyring.ts) holds them sealed to the
// operators' OpenPGP keys; the node holds them in memory once unlocked — at start with an unlock key file, or
// when an operator hands them over (`coffre sse-s3 unlock`) — and never writes them in clear. Until then,
// SSE-S3 requests are refused with 503 and a message saying what to run.
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import type { SseS3Config } from '../config/config.js';
import { S3Error, S3Errors } from '../util/s3-error.js';
import { UserError, errorMessage } from '../util/errors.js';
import { Keyring, parseKeyringFile } from './keyring.js';
import type { StoredEncryption } from './object-crypto.js';
import type { EncryptionParams } from './params.js';

export interface SseS3Status {
  configured: boolean;
  unlocked: boolean;
  keyringFile: string;
  current?: string;
  keys?: { id: string; created: string; recipients: string[] }[];
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
      mode = statSync(keyFile).mode & 0o777;
      armored = readFileSync(keyFile, 'utf8');
    } catch (err) {
      throw new UserError(`[sse_s3] unlock_key_file: cannot read ${keyFile}: ${errorMessage(err)}`);
    }
    if (mode & 0o077) {
      throw new UserError(
        `[sse_s3] unlock_key_file ${keyFile} is readable by other users (mode ${mode.toString(8)}): chmod 600 it`,
      );
    }
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
    if (!base.configured) return base;
    const file = parseKeyringFile(this.sealedText());
    return {
      ...base,
      current: file.current,
      keys: file.keys.map((k) => ({ id: k.id, created: k.created, recipients: k.recipients })),
    };
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

  /** Takes master keys an operator unlocked (checked against the keyring's check values). */
  unlockWith(keys: ReadonlyMap<string, Buffer>): void {
    if (!this.configured)
      throw new UserError('no SSE-S3 keyring on this node (create one with `coffre sse-s3 init`)');
    const keyring = Keyring.fromUnlockedKeys(this.sealedText(), keys);
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
