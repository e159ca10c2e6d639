import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Test } from 'tap';

/**
 * A TCP proxy in front of a server, for network faults that stopping the server cannot make:
 *  - `forward`: connections are piped to the upstream;
 *  - `partition`: every open connection goes silent for good (bytes in both directions are
 *    dropped, the sockets stay open: a network partition, a frozen or failed-over primary), and
 *    new connections are accepted and never answered.
 * Switching back to `forward` heals the network for NEW connections only; the silent ones stay
 * silent (their peer is gone), as on a real network until TCP gives up on them.
 */
export type TcpProxy = { port: number; setMode(mode: 'forward' | 'partition'): void };

export async function startTcpProxy(t: Test, upstreamPort: number): Promise<TcpProxy> {
  let mode: 'forward' | 'partition' = 'forward';
  const open = new Set<{ sockets: Socket[]; silent: boolean }>();

  const server = createServer((client) => {
    const connection = { sockets: [client], silent: mode === 'partition' };
    open.add(connection);
    client.on('error', () => undefined);
    client.on('close', () => {
      for (const socket of connection.sockets) socket.destroy();
      open.delete(connection);
    });
    if (connection.silent) {
      client.on('data', () => undefined);
      return;
    }
    const upstream = connect(upstreamPort, '127.0.0.1');
    connection.sockets.push(upstream);
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => {
      if (!connection.silent) client.destroy();
    });
    client.on('data', (chunk) => connection.silent || upstream.write(chunk));
    upstream.on('data', (chunk) => connection.silent || client.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const connection of open) for (const socket of connection.sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    port: (server.address() as AddressInfo).port,
    setMode(next) {
      mode = next;
      if (next === 'partition') for (const connection of open) connection.silent = true;
    },
  };
}
