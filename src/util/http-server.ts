// util/http-server: starting and stopping listening servers (node:http, node:https, and the RPC's node:net) as
// promises, and naming the address they are bound to.
import type { Server, Socket } from 'node:net';

// Every socket a server accepted and that is still open: closeServer ends them all, those the HTTP layer no
// longer tracks included (a CONNECT tunnel, a socket a clientError handler answered), so shutdown never waits.
const openSockets = new WeakMap<Server, Set<Socket>>();

/** Listens on host:port (port 0: one the system picks) and resolves with the address actually bound. */
export function listenOn(server: Server, host: string, port: number): Promise<string> {
  const sockets = new Set<Socket>();
  openSockets.set(server, sockets);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(boundAddress(server));
    });
  });
}

// Stops accepting, ends open connections (keep-alive ones included), resolves when closed.
export function closeServer(server: Server & { closeAllConnections?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
    for (const socket of openSockets.get(server) ?? []) socket.destroy();
  });
}

// CONNECT asks for a tunnel, which no coffre port offers. Without a listener node drops the socket unanswered;
// the client gets a clear refusal instead.
export function refuseTunnels(server: Server): void {
  server.on('connect', (_req: unknown, socket: Socket) => {
    // The socket is no longer the HTTP server's to close: whatever else the client sends is discarded (so
    // the socket can end), and a client that never closes its side is cut after a few seconds.
    socket.on('error', () => socket.destroy());
    socket.setTimeout(5000, () => socket.destroy());
    socket.resume();
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
}

/** `host:port`, IPv6 hosts in brackets. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The `host:port` a client on this machine connects to for a server bound to `hostPort`: a wildcard bind
 * (0.0.0.0, ::) is reached on loopback.
 */
export function reachableHostPort(hostPort: string): string {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(hostPort);
  if (!m) return hostPort;
  return formatHostPort(reachableHost(m[1] ?? m[2]!), Number(m[3]));
}

/** The host a client on this machine connects to for a server bound to `host`. */
export function reachableHost(host: string): string {
  return host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
}

/** `host:port` a listening server is bound to. */
function boundAddress(server: Server): string {
  const bound = server.address();
  if (bound === null || typeof bound === 'string') return String(bound);
  return formatHostPort(bound.address, bound.port);
}
