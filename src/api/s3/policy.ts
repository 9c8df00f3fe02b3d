// api/s3/policy: bucket policies in AWS's JSON access policy language — parsed into a checked value (or
// refused with MalformedPolicy, worded as S3 words it) when PutBucketPolicy stores one, and evaluated for
// every request on the bucket. Pure: no HTTP and no I/O; what a request is (who, which action on which
// resource, its condition keys) comes in as a PolicyRequest built by authorize.ts.
import { BlockList, isIP } from 'node:net';
import { MAX_BUCKET_POLICY_BYTES as MAX_POLICY_BYTES } from '../../model/types.js';
import { S3Error } from '../../util/s3-error.js';

// The grammar nests five deep at most ({Statement: [{Condition: {op: {key: [value]}}}]}); anything deeper is
// refused before JSON.parse walks it.
const MAX_JSON_DEPTH = 6;
const MAX_STATEMENTS = 1000;

export const POLICY_VERSIONS = ['2012-10-17', '2008-10-17'];

export function malformedPolicy(message: string): S3Error {
  return new S3Error('MalformedPolicy', 400, message);
}

// ------------------------------------------------------------------ S3 actions and condition keys

type ResourceKind = 'bucket' | 'object' | 'account';

/**
 * The S3 actions a policy may name, by the kind of resource each applies to. coffre answers some of them
 * with NotImplemented today (versioning, object lock, lifecycle …): a policy may still name them, so that it
 * need not change when they land.
 */
const BUCKET_ACTIONS = [
  'ListBucket',
  'ListBucketVersions',
  'ListBucketMultipartUploads',
  'CreateBucket',
  'DeleteBucket',
  'GetBucketLocation',
  'GetBucketVersioning',
  'PutBucketVersioning',
  'GetBucketAcl',
  'PutBucketAcl',
  'GetBucketCORS',
  'PutBucketCORS',
  'GetBucketPolicy',
  'PutBucketPolicy',
  'DeleteBucketPolicy',
  'GetBucketPolicyStatus',
  'GetEncryptionConfiguration',
  'PutEncryptionConfiguration',
  'GetBucketTagging',
  'PutBucketTagging',
  'GetLifecycleConfiguration',
  'PutLifecycleConfiguration',
  'GetBucketObjectLockConfiguration',
  'PutBucketObjectLockConfiguration',
  'GetBucketWebsite',
  'PutBucketWebsite',
  'DeleteBucketWebsite',
  'GetReplicationConfiguration',
  'PutReplicationConfiguration',
  'GetBucketLogging',
  'PutBucketLogging',
  'GetBucketNotification',
  'PutBucketNotification',
  'GetAccelerateConfiguration',
  'PutAccelerateConfiguration',
  'GetBucketRequestPayment',
  'PutBucketRequestPayment',
  'GetBucketOwnershipControls',
  'PutBucketOwnershipControls',
  'GetBucketPublicAccessBlock',
  'PutBucketPublicAccessBlock',
  'GetAnalyticsConfiguration',
  'PutAnalyticsConfiguration',
  'GetInventoryConfiguration',
  'PutInventoryConfiguration',
  'GetMetricsConfiguration',
  'PutMetricsConfiguration',
  'GetIntelligentTieringConfiguration',
  'PutIntelligentTieringConfiguration',
];
const OBJECT_ACTIONS = [
  'GetObject',
  'GetObjectVersion',
  'PutObject',
  'DeleteObject',
  'DeleteObjectVersion',
  'GetObjectAcl',
  'GetObjectVersionAcl',
  'PutObjectAcl',
  'PutObjectVersionAcl',
  'GetObjectTagging',
  'GetObjectVersionTagging',
  'PutObjectTagging',
  'PutObjectVersionTagging',
  'DeleteObjectTagging',
  'DeleteObjectVersionTagging',
  'GetObjectAttributes',
  'GetObjectVersionAttributes',
  'AbortMultipartUpload',
  'ListMultipartUploadParts',
  'GetObjectRetention',
  'PutObjectRetention',
  'GetObjectLegalHold',
  'PutObjectLegalHold',
  'BypassGovernanceRetention',
  'RestoreObject',
  'GetObjectTorrent',
  'GetObjectVersionTorrent',
  'ReplicateObject',
  'ReplicateDelete',
  'ReplicateTags',
  'GetObjectVersionForReplication',
  'ObjectOwnerOverrideToBucketOwner',
];
const ACCOUNT_ACTIONS = ['ListAllMyBuckets'];

/** Every S3 action, lowercased ('s3:getobject'), with the kind of resource it applies to. */
const ACTIONS: ReadonlyMap<string, ResourceKind> = new Map([
  ...BUCKET_ACTIONS.map((a) => [`s3:${a.toLowerCase()}`, 'bucket'] as const),
  ...OBJECT_ACTIONS.map((a) => [`s3:${a.toLowerCase()}`, 'object'] as const),
  ...ACCOUNT_ACTIONS.map((a) => [`s3:${a.toLowerCase()}`, 'account'] as const),
]);

/** S3's own condition keys (lowercased); `…/` entries are families (s3:ExistingObjectTag/<tag key>). */
const S3_CONDITION_KEYS = new Set([
  's3:x-amz-server-side-encryption',
  's3:x-amz-server-side-encryption-customer-algorithm',
  's3:x-amz-server-side-encryption-aws-kms-key-id',
  's3:x-amz-acl',
  's3:x-amz-copy-source',
  's3:x-amz-metadata-directive',
  's3:x-amz-storage-class',
  's3:x-amz-content-sha256',
  's3:x-amz-object-ownership',
  's3:x-amz-grant-read',
  's3:x-amz-grant-write',
  's3:x-amz-grant-read-acp',
  's3:x-amz-grant-write-acp',
  's3:x-amz-grant-full-control',
  's3:prefix',
  's3:delimiter',
  's3:max-keys',
  's3:versionid',
  's3:signatureversion',
  's3:authtype',
  's3:signatureage',
  's3:tlsversion',
  's3:locationconstraint',
  's3:resourceaccount',
  's3:object-lock-mode',
  's3:object-lock-retain-until-date',
  's3:object-lock-remaining-retention-days',
  's3:object-lock-legal-hold',
  's3:requestobjecttagkeys',
  's3:accesspointnetworkorigin',
  's3:dataaccesspointarn',
  's3:dataaccesspointaccount',
]);
const S3_CONDITION_KEY_FAMILIES = ['s3:existingobjecttag/', 's3:requestobjecttag/'];

function knownConditionKey(key: string): boolean {
  // Global keys (aws:…) are many and AWS adds more; one coffre never sets is simply absent from requests.
  if (/^aws:[a-z0-9]+(?:\/.+)?$/.test(key)) return true;
  return S3_CONDITION_KEYS.has(key) || S3_CONDITION_KEY_FAMILIES.some((f) => key.startsWith(f));
}

// ------------------------------------------------------------------ the parsed policy

export type Effect = 'Allow' | 'Deny';

/** Who a Principal (or NotPrincipal) names: everyone, or these access key ids. */
export interface PrincipalSet {
  anyone: boolean;
  keyIds: ReadonlySet<string>;
}

type StringOperator = 'equals' | 'equalsignorecase' | 'like';
type BaseOperator =
  | { family: 'string'; op: StringOperator }
  | { family: 'numeric'; op: 'equals' | 'lessthan' | 'lessthanequals' | 'greaterthan' | 'greaterthanequals' }
  | { family: 'date'; op: 'equals' | 'lessthan' | 'lessthanequals' | 'greaterthan' | 'greaterthanequals' }
  | { family: 'bool' }
  | { family: 'binary' }
  | { family: 'ip' }
  | { family: 'arn'; op: 'equals' | 'like' };

interface ConditionTest {
  operator: string; // as written, for messages
  base: BaseOperator;
  negated: boolean;
  ifExists: boolean;
  set?: 'any' | 'all';
  key: string; // lowercased
  values: string[];
  ips?: BlockList;
}

interface NullTest {
  operator: 'Null';
  key: string;
  // "true": the key must be absent; "false": present. Both listed: either holds.
  absent: boolean[];
}

export interface Statement {
  sid?: string;
  effect: Effect;
  principal?: PrincipalSet;
  notPrincipal?: PrincipalSet;
  actions?: string[]; // lowercased patterns
  notActions?: string[];
  resources?: string[];
  notResources?: string[];
  conditions: ConditionTest[];
  nulls: NullTest[];
}

export interface BucketPolicy {
  version: string;
  id?: string;
  statements: Statement[];
}

// ------------------------------------------------------------------ parsing

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The deepest nesting of arrays and objects in a JSON text, read without parsing it (strings skipped). */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') max = Math.max(max, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return max;
}

/** A field's value as a list of strings (S3 accepts a single string where a list is allowed). */
function stringList(v: Json, what: string): string[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw malformedPolicy(`${what} must not be empty`);
  return list.map((x) => {
    if (typeof x !== 'string') throw malformedPolicy(`${what} must be a string or a list of strings`);
    return x;
  });
}

function parsePrincipal(v: Json, field: string): PrincipalSet {
  if (v === '*') return { anyone: true, keyIds: new Set() };
  if (!isObject(v)) throw malformedPolicy('Invalid principal in policy');
  const keyIds = new Set<string>();
  let anyone = false;
  for (const [type, ids] of Object.entries(v)) {
    // coffre's principals are its access keys: "AWS" (and "CanonicalUser", whose ID S3 shows as the key's
    // id in ACLs and listings) name them; services and federated identities do not exist here.
    if (type !== 'AWS' && type !== 'CanonicalUser') throw malformedPolicy('Invalid principal in policy');
    for (const id of stringList(ids, field)) {
      if (id === '*') anyone = true;
      else if (/^[A-Za-z0-9._-]{1,128}$/.test(id)) keyIds.add(id);
      else throw malformedPolicy('Invalid principal in policy');
    }
  }
  if (!anyone && keyIds.size === 0) throw malformedPolicy('Invalid principal in policy');
  return { anyone, keyIds };
}

function parseActions(v: Json): string[] {
  return stringList(v, 'Action').map((a) => {
    const lower = a.toLowerCase();
    if (lower === '*') return 's3:*';
    if (!lower.startsWith('s3:')) throw malformedPolicy('Policy has invalid action');
    if (!/[*?]/.test(lower) && !ACTIONS.has(lower)) throw malformedPolicy('Policy has invalid action');
    if (![...ACTIONS.keys()].some((known) => globMatch(lower, known)))
      throw malformedPolicy('Policy has invalid action');
    return lower;
  });
}

function bucketArn(bucket: string): string {
  return `arn:aws:s3:::${bucket}`;
}

/** The ARN a request names: the bucket's, or one of its objects'. */
export function resourceArn(bucket: string, key?: string): string {
  return key === undefined ? bucketArn(bucket) : `${bucketArn(bucket)}/${key}`;
}

// A bucket's policy can only speak of the bucket and its objects: a resource pattern must be able to match
// the bucket's ARN, or its part before the first '/' must (an object ARN of this bucket).
function parseResources(v: Json, bucket: string): string[] {
  return stringList(v, 'Resource').map((r) => {
    const slash = r.indexOf('/');
    const head = slash < 0 ? r : r.slice(0, slash);
    if (!r.startsWith('arn:aws:s3:::') || !globMatch(head, bucketArn(bucket)))
      throw malformedPolicy('Policy has invalid resource');
    return r;
  });
}

function resourceKinds(resources: string[], bucket: string): Set<ResourceKind> {
  const kinds = new Set<ResourceKind>();
  for (const r of resources) {
    if (globMatch(r, bucketArn(bucket))) kinds.add('bucket');
    if (r.includes('/') || r.includes('*')) kinds.add('object');
  }
  return kinds;
}

const NUMERIC_OPS = ['equals', 'lessthan', 'lessthanequals', 'greaterthan', 'greaterthanequals'] as const;

// `StringNotLikeIfExists`, `ForAnyValue:StringEquals` … into its parts; undefined for an unknown operator.
function parseOperator(written: string): Omit<ConditionTest, 'key' | 'values' | 'ips'> | 'null' | undefined {
  let name = written.toLowerCase();
  let set: 'any' | 'all' | undefined;
  if (name.startsWith('foranyvalue:')) set = 'any';
  else if (name.startsWith('forallvalues:')) set = 'all';
  if (set) name = name.slice(name.indexOf(':') + 1);
  if (name === 'null') return set ? undefined : 'null';
  const ifExists = name.endsWith('ifexists');
  if (ifExists) name = name.slice(0, -'ifexists'.length);
  const negate = (rest: string) =>
    rest.startsWith('not') ? { negated: true, op: rest.slice(3) } : { negated: false, op: rest };
  const common = { operator: written, ifExists, ...(set ? { set } : {}) };
  for (const family of ['string', 'numeric', 'date', 'arn'] as const) {
    if (!name.startsWith(family)) continue;
    const { negated, op } = negate(name.slice(family.length));
    if (family === 'string' && (op === 'equals' || op === 'equalsignorecase' || op === 'like'))
      return { ...common, negated, base: { family, op } };
    if ((family === 'numeric' || family === 'date') && (NUMERIC_OPS as readonly string[]).includes(op))
      return { ...common, negated, base: { family, op: op as (typeof NUMERIC_OPS)[number] } };
    if (family === 'arn' && (op === 'equals' || op === 'like'))
      return { ...common, negated, base: { family, op } };
    return undefined;
  }
  if (name === 'bool') return { ...common, negated: false, base: { family: 'bool' } };
  if (name === 'binaryequals') return { ...common, negated: false, base: { family: 'binary' } };
  if (name === 'ipaddress') return { ...common, negated: false, base: { family: 'ip' } };
  if (name === 'notipaddress') return { ...common, negated: true, base: { family: 'ip' } };
  return undefined;
}

function conditionValues(v: Json, operator: string): string[] {
  const list = Array.isArray(v) ? v : [v];
  return list.map((x) => {
    if (typeof x === 'string') return x;
    if (typeof x === 'boolean' || (typeof x === 'number' && Number.isFinite(x))) return String(x);
    throw malformedPolicy(`Invalid Condition value for ${operator}`);
  });
}

function parseIpRanges(values: string[]): BlockList {
  const list = new BlockList();
  for (const value of values) {
    const [address = '', bits, extra] = value.split('/');
    const family = isIP(address);
    const max = family === 6 ? 128 : 32;
    const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
    if (family === 0 || extra !== undefined || !(prefix <= max))
      throw malformedPolicy(`Invalid IpAddress in condition: ${value}`);
    list.addSubnet(address, prefix, family === 6 ? 'ipv6' : 'ipv4');
  }
  return list;
}

function checkValue(base: BaseOperator, value: string, operator: string): void {
  const bad = () => malformedPolicy(`Invalid Condition value for ${operator}: ${value}`);
  if (base.family === 'numeric' && !Number.isFinite(Number(value))) throw bad();
  if (base.family === 'date' && parseDate(value) === undefined) throw bad();
  if (base.family === 'bool' && !/^(true|false)$/i.test(value)) throw bad();
}

function parseConditions(v: Json, into: Statement): void {
  if (!isObject(v)) throw malformedPolicy('Condition must be an object');
  for (const [written, block] of Object.entries(v)) {
    const operator = parseOperator(written);
    if (operator === undefined) throw malformedPolicy(`Invalid Condition type : ${written}`);
    if (!isObject(block)) throw malformedPolicy(`Condition ${written} must be an object of keys`);
    for (const [writtenKey, raw] of Object.entries(block)) {
      const key = writtenKey.toLowerCase();
      if (!knownConditionKey(key)) throw malformedPolicy('Policy has an invalid condition key');
      const values = conditionValues(raw, written);
      if (operator === 'null') {
        const absent = values.map((x) => {
          if (!/^(true|false)$/i.test(x)) throw malformedPolicy(`Invalid Condition value for Null: ${x}`);
          return x.toLowerCase() === 'true';
        });
        into.nulls.push({ operator: 'Null', key, absent });
        continue;
      }
      for (const value of values) checkValue(operator.base, value, written);
      const test: ConditionTest = { ...operator, key, values };
      if (operator.base.family === 'ip') test.ips = parseIpRanges(values);
      into.conditions.push(test);
    }
  }
}

const STATEMENT_FIELDS = new Set([
  'Sid',
  'Effect',
  'Principal',
  'NotPrincipal',
  'Action',
  'NotAction',
  'Resource',
  'NotResource',
  'Condition',
]);

function parseStatement(v: Json, bucket: string): Statement {
  if (!isObject(v)) throw malformedPolicy('Statement must be an object or a list of objects');
  for (const field of Object.keys(v)) {
    if (!STATEMENT_FIELDS.has(field)) throw malformedPolicy(`Unknown field ${field}`);
  }
  const effect = v.Effect;
  if (effect === undefined) throw malformedPolicy('Missing required field Effect');
  if (effect !== 'Allow' && effect !== 'Deny') throw malformedPolicy(`Invalid effect: ${String(effect)}`);
  const statement: Statement = { effect, conditions: [], nulls: [] };
  if (v.Sid !== undefined) {
    if (typeof v.Sid !== 'string') throw malformedPolicy('Sid must be a string');
    statement.sid = v.Sid;
  }
  if ((v.Principal === undefined) === (v.NotPrincipal === undefined)) {
    throw malformedPolicy(
      v.Principal === undefined
        ? 'Missing required field Principal'
        : 'Statement has both Principal and NotPrincipal',
    );
  }
  if (v.Principal !== undefined) statement.principal = parsePrincipal(v.Principal, 'Principal');
  else statement.notPrincipal = parsePrincipal(v.NotPrincipal!, 'NotPrincipal');
  if ((v.Action === undefined) === (v.NotAction === undefined)) {
    throw malformedPolicy(
      v.Action === undefined ? 'Missing required field Action' : 'Statement has both Action and NotAction',
    );
  }
  if (v.Action !== undefined) statement.actions = parseActions(v.Action);
  else statement.notActions = parseActions(v.NotAction!);
  if ((v.Resource === undefined) === (v.NotResource === undefined)) {
    throw malformedPolicy(
      v.Resource === undefined
        ? 'Missing required field Resource'
        : 'Statement has both Resource and NotResource',
    );
  }
  if (v.Resource !== undefined) statement.resources = parseResources(v.Resource, bucket);
  else statement.notResources = parseResources(v.NotResource!, bucket);
  if (v.Condition !== undefined) parseConditions(v.Condition, statement);
  // As S3 checks: each action named must apply to one of the resources named (s3:PutObject on the bucket's
  // ARN alone, or s3:ListBucket on its objects alone, would never match anything).
  if (statement.actions && statement.resources) {
    const kinds = resourceKinds(statement.resources, bucket);
    for (const pattern of statement.actions) {
      const applies = [...ACTIONS].some(([action, kind]) => kinds.has(kind) && globMatch(pattern, action));
      if (!applies) throw malformedPolicy('Action does not apply to any resource(s) in statement');
    }
  }
  return statement;
}

/**
 * Parses and checks a bucket policy document for the bucket `bucket`, as PutBucketPolicy does before storing
 * it; the same parse reads a stored policy back. Throws MalformedPolicy (400) with S3's wording.
 */
export function parsePolicy(text: string, bucket: string): BucketPolicy {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) {
    throw malformedPolicy(`Policies must be no larger than ${MAX_POLICY_BYTES} bytes`);
  }
  if (!text.trimStart().startsWith('{'))
    throw malformedPolicy("Policies must be valid JSON and the first byte must be '{'");
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw malformedPolicy('This policy contains invalid Json');
  let doc: Json;
  try {
    doc = JSON.parse(text) as Json;
  } catch {
    throw malformedPolicy('This policy contains invalid Json');
  }
  if (!isObject(doc)) throw malformedPolicy('This policy contains invalid Json');
  for (const field of Object.keys(doc)) {
    if (field !== 'Version' && field !== 'Id' && field !== 'Statement')
      throw malformedPolicy(`Unknown field ${field}`);
  }
  const version = doc.Version ?? '2008-10-17';
  if (typeof version !== 'string' || !POLICY_VERSIONS.includes(version))
    throw malformedPolicy(`Invalid policy version: ${String(version)}; expecting 2012-10-17`);
  if (doc.Id !== undefined && typeof doc.Id !== 'string') throw malformedPolicy('Id must be a string');
  if (doc.Statement === undefined) throw malformedPolicy('Missing required field Statement');
  const raw = Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement];
  if (raw.length === 0) throw malformedPolicy('Could not parse the policy: Statement is empty!');
  if (raw.length > MAX_STATEMENTS) throw malformedPolicy('Policy has too many statements');
  const statements = raw.map((s) => parseStatement(s, bucket));
  const sids = statements.map((s) => s.sid).filter((s) => s !== undefined);
  if (new Set(sids).size !== sids.length)
    throw malformedPolicy('Statement IDs (SID) in a single policy must be unique');
  return { version, ...(typeof doc.Id === 'string' ? { id: doc.Id } : {}), statements };
}

/** The access key ids a policy names as principals (PutBucketPolicy checks that they exist). */
export function principalKeyIds(policy: BucketPolicy): string[] {
  const ids = new Set<string>();
  for (const s of policy.statements) for (const id of (s.principal ?? s.notPrincipal)!.keyIds) ids.add(id);
  return [...ids];
}

// ------------------------------------------------------------------ evaluation

/** What a policy is asked about one request. */
export interface PolicyRequest {
  /** The access key that signed the request; undefined for an anonymous (unsigned) request. */
  keyId: string | undefined;
  /** The S3 action, as named in policies ('s3:GetObject'). */
  action: string;
  /** The bucket's or the object's ARN. */
  resource: string;
  /**
   * The request's values of a condition key (lowercased name); undefined when the request has none. May
   * resolve later: a value that costs a lookup (an upload's encryption) is looked up only if a policy asks.
   */
  conditionValues(key: string): string[] | undefined | Promise<string[] | undefined>;
}

export type Verdict = 'deny' | 'allow' | 'none';

/**
 * The policy's verdict on a request: 'deny' if a matching statement denies it (an explicit Deny always
 * wins), 'allow' if one allows it, 'none' if no statement matches.
 */
export async function evaluatePolicy(policy: BucketPolicy, req: PolicyRequest): Promise<Verdict> {
  let allowed = false;
  for (const statement of policy.statements) {
    if (statement.effect === 'Allow' && allowed) continue;
    if (!(await statementMatches(statement, req))) continue;
    if (statement.effect === 'Deny') return 'deny';
    allowed = true;
  }
  return allowed ? 'allow' : 'none';
}

function principalIn(set: PrincipalSet, keyId: string | undefined): boolean {
  return set.anyone || (keyId !== undefined && set.keyIds.has(keyId));
}

async function statementMatches(s: Statement, req: PolicyRequest): Promise<boolean> {
  if (s.principal && !principalIn(s.principal, req.keyId)) return false;
  if (s.notPrincipal && principalIn(s.notPrincipal, req.keyId)) return false;
  const action = req.action.toLowerCase();
  if (s.actions && !s.actions.some((p) => globMatch(p, action))) return false;
  if (s.notActions && s.notActions.some((p) => globMatch(p, action))) return false;
  if (s.resources && !s.resources.some((p) => globMatch(p, req.resource))) return false;
  if (s.notResources && s.notResources.some((p) => globMatch(p, req.resource))) return false;
  for (const test of s.nulls) {
    const present = (await req.conditionValues(test.key)) !== undefined;
    if (!test.absent.some((absent) => absent !== present)) return false;
  }
  for (const test of s.conditions) {
    if (!conditionHolds(test, await req.conditionValues(test.key))) return false;
  }
  return true;
}

function conditionHolds(test: ConditionTest, values: string[] | undefined): boolean {
  if (values === undefined || values.length === 0) {
    if (test.ifExists) return true;
    // A key the request lacks matches nothing: a negated test holds, ForAllValues holds vacuously.
    if (test.set === 'all') return true;
    if (test.set === 'any') return false;
    return test.negated;
  }
  const matches = (v: string) => test.values.some((p) => valueMatches(test, p, v));
  if (test.set === 'all') return values.every((v) => matches(v) !== test.negated);
  if (test.set === 'any') return values.some((v) => matches(v) !== test.negated);
  return values.some(matches) !== test.negated;
}

function valueMatches(test: ConditionTest, policyValue: string, value: string): boolean {
  const base = test.base;
  switch (base.family) {
    case 'string':
      if (base.op === 'equals') return value === policyValue;
      if (base.op === 'equalsignorecase') return value.toLowerCase() === policyValue.toLowerCase();
      return globMatch(policyValue, value);
    case 'arn':
      return base.op === 'equals' ? value === policyValue : globMatch(policyValue, value);
    case 'bool':
      return value.toLowerCase() === policyValue.toLowerCase();
    case 'binary':
      return value === policyValue;
    case 'ip': {
      const family = isIP(value);
      return family !== 0 && test.ips!.check(value, family === 6 ? 'ipv6' : 'ipv4');
    }
    case 'numeric':
      return compare(base.op, Number(value), Number(policyValue));
    case 'date': {
      const a = parseDate(value);
      const b = parseDate(policyValue);
      return a !== undefined && b !== undefined && compare(base.op, a, b);
    }
  }
}

function compare(op: (typeof NUMERIC_OPS)[number], a: number, b: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return false;
  switch (op) {
    case 'equals':
      return a === b;
    case 'lessthan':
      return a < b;
    case 'lessthanequals':
      return a <= b;
    case 'greaterthan':
      return a > b;
    case 'greaterthanequals':
      return a >= b;
  }
}

// A date as policies write them: ISO 8601, or seconds since the epoch.
function parseDate(value: string): number | undefined {
  if (/^\d{1,12}$/.test(value)) return Number(value) * 1000;
  if (!/^\d{4}-\d{2}-\d{2}/.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

/**
 * Whether `value` matches `pattern`, where '*' matches any run of characters (none included) and '?' any
 * one, as policies match actions, resources and StringLike values. Linear backtracking over the last '*':
 * no regular expression is built from a policy, so no pattern can make matching slow beyond length².
 */
export function globMatch(pattern: string, value: string): boolean {
  let p = 0;
  let v = 0;
  let star = -1;
  let mark = 0;
  while (v < value.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === value[v])) {
      p++;
      v++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = v;
    } else if (star >= 0) {
      p = star + 1;
      v = ++mark;
    } else return false;
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

// ------------------------------------------------------------------ "public", as GetBucketPolicyStatus says

// Conditions that pin a grant to fixed values S3 does not count as public: the client's address within a
// range no wider than a /8 (IPv4) or /32 (IPv6), or one fixed caller id.
function pinsAccess(test: ConditionTest): boolean {
  if (test.negated || test.ifExists || test.set) return false;
  if (test.key === 'aws:sourceip' && test.base.family === 'ip') {
    return test.values.every((v) => {
      const [address = '', bits] = v.split('/');
      const family = isIP(address);
      const prefix = bits === undefined ? (family === 6 ? 128 : 32) : Number(bits);
      return prefix >= (family === 6 ? 32 : 8);
    });
  }
  if (test.key === 'aws:userid' && test.base.family === 'string' && test.base.op === 'equals') return true;
  return false;
}

/** Whether some statement allows something to everyone, anonymous requests included (conditions aside). */
export function grantsAnyone(policy: BucketPolicy): boolean {
  return policy.statements.some(
    (s) =>
      s.effect === 'Allow' &&
      (s.principal?.anyone === true || (s.notPrincipal !== undefined && !s.notPrincipal.anyone)),
  );
}

/** Whether the policy grants anything to everyone (anonymous requests included) without pinning it down. */
export function isPublic(policy: BucketPolicy): boolean {
  return grantsAnyone({
    ...policy,
    statements: policy.statements.filter((s) => !s.conditions.some(pinsAccess)),
  });
}
