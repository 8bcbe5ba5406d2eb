// The connections of one listener, bounded: a connection that sends no request within its idle
// time is closed (Node's own timeouts start at the first byte), and at the listener's limit a
// newcomer makes room by closing the oldest idle connection (one before or between requests);
// only when every connection is busy is the newcomer refused. So a crowd of idle connections
// never holds the port or the process's file descriptors, and /ping stays answerable.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

interface ConnectionLimits {
  /** Open connections at most (0: from the process's file-descriptor limit). */
  max: number;
  /** A connection that has sent no request for this long (before its first one) is closed. */
  idleMs: number;
}

/** The process's soft limit on open files (Linux), or undefined where it cannot be read. */
function openFileLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    return Number.isInteger(soft) && soft > 0 ? soft : undefined;
  } catch {
    return undefined;
  }
}

/** The inference port's default: a share of the descriptors (models, logs and the other ports need the rest), at most 8192. */
function defaultMaxConnections(): number {
  const limit = openFileLimit();
  return limit === undefined ? 1024 : Math.max(16, Math.min(8192, Math.floor(limit * 0.6)));
}

export function boundConnections(server: Server, limits: ConnectionLimits): void {
  const max = limits.max > 0 ? limits.max : defaultMaxConnections();
  // Oldest first (a Set keeps insertion order).
  const idle = new Set<Socket>();
  let open = 0;
  const rest = (socket: Socket): void => {
    idle.add(socket);
    socket.setTimeout(limits.idleMs);
  };
  const busy = (socket: Socket): void => {
    idle.delete(socket);
    socket.setTimeout(0);
  };
  server.on('connection', (socket: Socket) => {
    open += 1;
    socket.once('close', () => {
      open -= 1;
      idle.delete(socket);
    });
    if (open > max) {
      const oldest = idle.values().next().value;
      if (!oldest) return socket.destroy();
      oldest.destroy();
    }
    // Node destroys a socket whose timeout nobody handles.
    rest(socket);
  });
  server.on('request', (req, res) => {
    busy(req.socket);
    // Between requests a keep-alive connection is idle again (Node's keepAliveTimeout ends it).
    res.once('finish', () => {
      if (!req.socket.destroyed) idle.add(req.socket);
    });
  });
  server.on('upgrade', (req: { socket: Socket }) => busy(req.socket));
}
