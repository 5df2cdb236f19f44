// `forward`'s local side: a TCP listener on the controller's machine; each accepted connection gets its own tunnel
// connection to the worker's port, and bytes are pumped both ways with backpressure (a read from one side waits for
// the write to the other) and half-close carried across (end-of-file on one side shuts the other's write side).
import type { TunnelSocket } from "./_forward_tunnel.ts";

const READ_BYTES = 256 * 1024;

/** Write all of `bytes` to a socket. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/**
 * Pump bytes between a local client and a tunnel connection until both directions have ended or one side fails.
 * Closes the local socket and releases the tunnel before it resolves; never rejects.
 */
export async function relayTcp(local: Deno.TcpConn, tunnel: TunnelSocket): Promise<void> {
  let failed = false;
  const fail = (error: unknown) => {
    if (failed) return;
    failed = true;
    tunnel.abort(String((error as Error)?.message ?? error));
    try {
      local.close();
    } catch {
      // closed already
    }
  };
  const up = (async () => {
    const buffer = new Uint8Array(READ_BYTES);
    while (true) {
      const n = await local.read(buffer);
      if (n === null) {
        tunnel.closeWrite();
        return;
      }
      await tunnel.write(buffer.subarray(0, n));
    }
  })().catch(fail);
  const down = (async () => {
    while (true) {
      const chunk = await tunnel.read();
      if (chunk === null) {
        await local.closeWrite();
        return;
      }
      await writeAll(local, chunk);
    }
  })().catch(fail);
  await Promise.all([up, down]);
  if (!failed) {
    try {
      local.close();
    } catch {
      // closed already
    }
  }
}
