// sse/sse-s3-keys: a node's SSE-S3 master keys. The keyring file (sse/keyring.ts) holds them sealed to the
// operators' OpenPGP keys; the node holds them in memory once unlocked — at start with an unlock key file, or
// when an operator hands them over (`coffre sse-s3 unlock`) — and never writes them in clear. Until then,
// SSE-S3 requests are refused with 503 and a message saying what to run.
//
// Once unlocked, the node describes the keyring it holds in memory, not the file: the file may have been
// changed since, and what matters to an operator is which master key new objects are written with.
//
// A gateway in front of a backend keeps the sealed keyring in the backend instead of a file (a KeyringSource,
// backend/keyring.ts), so that every gateway on that backend has it; `refresh` picks up what another gateway
// wrote there, keeping the master keys it holds when the new keyring is made of them (reseal, drop), and
// re-opening it with the unlock key file when it has one (rotate). Master keys reach a gateway only from an
// operator (`unlock`), its unlock key file, or a peer gateway's push over Secret Handshake (backend/keyring.ts).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { SseS3Config } from '../config/config.js';
import { S3Error, S3Errors } from '../util/s3-error.js';
import { UserError, errorMessage } from '../util/errors.js';
import { fileMode, requirePrivateFile } from '../util/private-file.js';
import { Keyring, parseKeyringFile, recipientUserIds, summarize } from './keyring.js';
import type { StoredEncryption } from './object-crypto.js';
import type { EncryptionParams } from './params.js';

/** Where a gateway keeps its sealed keyring: in its backend (backend/keyring.ts). */
export interface KeyringSource {
  /** How to name the place in status and messages. */
  readonly where: string;
  /** The sealed keyring and a version of it (the backend's ETag), if there is one. */
  load(): Promise<{ text: string; version?: string } | undefined>;
  /**
   * Stores `text` if the stored keyring is still `version` (undefined: none may exist yet); throws a UserError
   * if another gateway changed it meanwhile. Returns the new version.
   */
  save(text: string, version: string | undefined): Promise<string | undefined>;
}

export interface SseS3Status {
  configured: boolean;
  unlocked: boolean;
  keyringFile: string;
  /** SHA-256 of the sealed keyring as stored (what `unlock` and a peer's push name). */
  sealedDigest?: string;
  /** Unlocked, but with an older keyring than the one stored: waits for its keys (unlock, or a peer). */
  stale?: boolean;
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
  // Digest of the sealed text the keyring in memory came from.
  private keyringDigest?: string;
  // With a source: the sealed keyring as last read from it.
  private stored?: { text: string; version?: string };
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly config: SseS3Config,
    private source?: KeyringSource,
  ) {}

  /** Keeps the keyring in `source` from now on (a gateway's backend), before start. */
  useSource(source: KeyringSource): void {
    this.source = source;
  }

  /** Calls `listener` whenever an operator's act gives this node master keys (to hand them on). */
  onUnlocked(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Unlocks the keyring with the configured unlock key file, if both exist. */
  async start(): Promise<void> {
    if (this.source) this.stored = await this.source.load();
    if (!this.configured) return;
    await this.unlockWithKeyFile();
  }

  /**
   * Reads the keyring from its source again (another gateway may have changed it). Keys held in memory are
   * kept when the new keyring is made of them; else the unlock key file opens it, if there is one; else the
   * keys held stay in use (stale) until an operator or a peer hands over the new ones.
   */
  async refresh(): Promise<void> {
    if (!this.source) return;
    const loaded = await this.source.load();
    if (loaded?.text === this.stored?.text) {
      this.stored = loaded;
      return;
    }
    this.stored = loaded;
    if (!loaded) return;
    const digest = sealedDigest(loaded.text);
    if (this.keyring) {
      const held = this.keyring.masterKeys();
      try {
        this.adopt(Keyring.fromUnlockedKeys(loaded.text, held), digest, false);
        return;
      } catch {
        // Not made of the keys held (a rotation): the unlock key file, or a peer, brings the new one.
      } finally {
        for (const k of held.values()) k.fill(0);
      }
    }
    await this.unlockWithKeyFile().catch(() => undefined);
  }

  private async unlockWithKeyFile(): Promise<void> {
    const keyFile = this.config.unlockKeyFile;
    if (!keyFile) return;
    let armored: string;
    let mode: number;
    try {
      mode = fileMode(keyFile);
      armored = readFileSync(keyFile, 'utf8');
    } catch (err) {
      throw new UserError(`[sse_s3] unlock_key_file: cannot read ${keyFile}: ${errorMessage(err)}`);
    }
    requirePrivateFile(`[sse_s3] unlock_key_file ${keyFile}`, keyFile, { mode });
    const text = this.sealedText();
    this.adopt(await Keyring.unlock(text, armored, process.env.COFFRE_SSE_S3_PASSPHRASE), sealedDigest(text));
  }

  // Takes `keyring` (opened from the sealed text of digest `digest`) in place of the one held. `byOperator`:
  // an operator's act here (init, unlock, rotate, reseal, drop, the unlock key file), which listeners hand on.
  private adopt(keyring: Keyring, digest: string, byOperator = true): void {
    this.keyring?.lock();
    this.keyring = keyring;
    this.keyringDigest = digest;
    if (byOperator) for (const listener of this.listeners) listener();
  }

  get configured(): boolean {
    return this.source ? this.stored !== undefined : existsSync(this.config.keyringFile);
  }

  /** Where the sealed keyring is kept. */
  get where(): string {
    return this.source?.where ?? this.config.keyringFile;
  }

  status(): SseS3Status {
    const digest = this.configured ? this.currentDigest() : undefined;
    const base = {
      configured: this.configured,
      unlocked: this.keyring !== undefined,
      keyringFile: this.where,
      ...(digest ? { sealedDigest: digest } : {}),
    };
    if (this.keyring)
      return {
        ...base,
        ...this.keyring.summary(),
        ...(digest && digest !== this.keyringDigest ? { stale: true } : {}),
      };
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
    if (this.source) {
      if (!this.stored) throw new UserError('no SSE-S3 keyring (create one with `coffre sse-s3 init`)');
      return this.stored.text;
    }
    return readFileSync(this.config.keyringFile, 'utf8');
  }

  private currentDigest(): string | undefined {
    try {
      return sealedDigest(this.sealedText());
    } catch {
      return undefined;
    }
  }

  /**
   * The master keys held, with the digest of the stored keyring they open — only when they open the keyring
   * as stored now (what a gateway hands its peers). The caller zeroes the keys.
   */
  handOver(): { digest: string; keys: Map<string, Buffer> } | undefined {
    const digest = this.currentDigest();
    if (!this.keyring || !digest || digest !== this.keyringDigest) return undefined;
    return { digest, keys: this.keyring.masterKeys() };
  }

  /** Whether the keyring in memory is the stored one with digest `digest`. */
  holds(digest: string): boolean {
    return this.keyring !== undefined && this.keyringDigest === digest;
  }

  /** Creates the keyring with a first master key sealed to `operatorPublicKeys`, unlocked here. */
  async init(operatorPublicKeys: string[]): Promise<void> {
    await this.refresh();
    if (this.configured)
      throw new UserError(`an SSE-S3 keyring exists already (${this.where}); use rotate or reseal`);
    const keyring = await Keyring.create(operatorPublicKeys);
    const digest = await this.save(keyring);
    this.adopt(keyring, digest);
  }

  /**
   * Takes master keys an operator unlocked from the sealed file whose digest is `digest` (sealedDigest): the
   * file must still be that one, and the keys must match its check values and MAC.
   */
  unlockWith(keys: ReadonlyMap<string, Buffer>, digest: string, fromPeer = false): void {
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
    this.adopt(keyring, sealedDigest(text), !fromPeer);
  }

  /**
   * Changes the keyring (rotate, reseal, drop) on a copy opened from the stored text, so that a failure or a
   * conflict with another gateway leaves the keyring in memory as it was.
   */
  private async change(apply: (keyring: Keyring) => Promise<void>): Promise<Keyring> {
    await this.refresh();
    const held = this.unlocked();
    const text = this.sealedText();
    if (this.keyringDigest !== sealedDigest(text))
      throw new UserError(
        'the SSE-S3 keyring was changed by another gateway and this one lacks its new keys: run `coffre sse-s3 unlock` here first',
      );
    const keys = held.masterKeys();
    let copy: Keyring;
    try {
      copy = Keyring.fromUnlockedKeys(text, keys);
    } finally {
      for (const k of keys.values()) k.fill(0);
    }
    try {
      await apply(copy);
      this.adopt(copy, await this.save(copy));
    } catch (err) {
      copy.lock();
      throw err;
    }
    return copy;
  }

  /** Adds a fresh master key for new objects, sealed to `operatorPublicKeys`. */
  async rotate(operatorPublicKeys: string[]): Promise<string> {
    return (await this.change((keyring) => keyring.rotate(operatorPublicKeys).then(() => undefined)))
      .currentKeyId;
  }

  /** Re-seals every master key to exactly `operatorPublicKeys`. */
  async reseal(operatorPublicKeys: string[]): Promise<void> {
    await this.change((keyring) => keyring.reseal(operatorPublicKeys));
  }

  /** Removes master key `id` (no object may need it any more: see backend/rewrap.ts), resealing the rest. */
  async drop(id: string, operatorPublicKeys: string[]): Promise<void> {
    await this.change((keyring) => keyring.drop(id, operatorPublicKeys));
  }

  /** The keyring in memory (for re-wrapping objects' keys), or a UserError saying what to run. */
  unlockedKeyring(): Keyring {
    return this.unlocked();
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
    this.keyringDigest = undefined;
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

  // Stores the keyring; returns the digest of the sealed text stored.
  private async save(keyring: Keyring): Promise<string> {
    const text = keyring.serialize();
    if (this.source) {
      const version = await this.source.save(text, this.stored?.version);
      this.stored = { text, version };
    } else {
      const path = this.config.keyringFile;
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, path);
    }
    return sealedDigest(text);
  }
}
