// util/client-transport: what a request's client is and how its bytes travelled — the facts behind "SSE-C and
// master keys only over TLS or from loopback". A loopback peer is only the client itself when no proxy
// relays for it: a reverse proxy on the same host makes every request look local. So trust is explicit:
// the proxies listed in `trusted_proxies` are believed about the client (X-Forwarded-For) and the scheme it
// used (X-Forwarded-Proto); a peer not listed is never believed, and a loopback peer that sends forwarding
// headers relayed the request for someone else, so it is not treated as local.
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { UserError } from './errors.js';

export interface ClientTransport {
  // The client's bytes were encrypted on every hop that crossed a network: TLS to this node, or a trusted
  // proxy says the client used https.
  secure: boolean;
  // The client runs on this machine: its request never crossed a network.
  fromLoopback: boolean;
  // The client's address as far as it can be known (the peer's, unless a trusted proxy names the client).
  clientAddress: string;
}

// Headers a proxy adds when it relays a request; a peer that sends any is a relay, not the client.
const FORWARDING_HEADERS = [
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-real-ip',
  'via',
];

/** The parsed `trusted_proxies` list: addresses and CIDR ranges, IPv4 or IPv6. */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(readonly entries: readonly string[]) {
    for (const entry of entries) {
      const [address = '', bits, extra] = entry.split('/');
      const family = isIP(address);
      const maxBits = family === 6 ? 128 : 32;
      const prefix = bits === undefined ? undefined : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
      if (family === 0 || extra !== undefined || (prefix !== undefined && !(prefix <= maxBits))) {
        throw new UserError(
          `config: trusted_proxies entry "${entry}" is not an IP address or CIDR range ` +
            '(e.g. "127.0.0.1", "10.0.0.0/8", "::1")',
        );
      }
      const type = family === 6 ? 'ipv6' : 'ipv4';
      if (prefix === undefined) this.list.addAddress(address, type);
      else this.list.addSubnet(address, prefix, type);
    }
    this.empty = entries.length === 0;
  }

  has(address: string): boolean {
    if (this.empty) return false;
    const plain = unmapped(address);
    const family = isIP(plain);
    if (family === 0) return false;
    return this.list.check(plain, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** Whether a peer address is a loopback address (127.0.0.0/8, ::1): what it sends never crossed a network. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

export function clientTransport(req: IncomingMessage, proxies: TrustedProxies): ClientTransport {
  const peer = unmapped(req.socket.remoteAddress ?? '');
  const tls = (req.socket as { encrypted?: boolean }).encrypted === true;
  if (!proxies.has(peer)) {
    const relayed = FORWARDING_HEADERS.some((name) => req.headers[name] !== undefined);
    return { secure: tls, fromLoopback: isLoopback(peer) && !relayed, clientAddress: peer };
  }
  // A trusted proxy: the client is the nearest address in X-Forwarded-For that is not itself a trusted proxy
  // (entries further left were written by whoever sent the request and are not believed).
  const chain = headerValues(req, 'x-forwarded-for');
  let client: string | undefined;
  for (let i = chain.length - 1; i >= 0; i--) {
    const hop = unmapped(chain[i]!);
    if (isIP(hop) === 0) break;
    client = hop;
    if (!proxies.has(hop)) break;
  }
  // The scheme the client used, as the nearest proxy wrote it; absent, only a TLS connection counts as secure.
  // The hop from the proxy to this node is the operator's to protect (loopback, or a private network).
  const proto = headerValues(req, 'x-forwarded-proto').at(-1)?.toLowerCase();
  return {
    secure: proto === undefined ? tls : proto === 'https',
    fromLoopback: client !== undefined && isLoopback(client),
    clientAddress: client ?? peer,
  };
}

function headerValues(req: IncomingMessage, name: string): string[] {
  const raw = req.headers[name];
  const joined = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
  return joined
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}

function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
