/**
 * `sandd forward`: a local port forwarded to a port on a worker.
 *
 * @module
 */

import type { Controller } from "@sandd/server";
import {
  COMMON_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  noMore,
  parse,
  workerId,
} from "./_args.ts";
import { withController } from "./_connect.ts";
import { out } from "./_format.ts";
import { CliError, EXIT, usageError } from "./exit_codes.ts";

/** Help of `sandd forward`. */
export const FORWARD_USAGE = `Usage: sandd forward WORKER REMOTE [LOCAL]

Forward connections to 127.0.0.1:LOCAL on this machine to REMOTE on the worker (a port, or HOST:PORT as
the worker sees it) until SIGINT/SIGTERM. LOCAL defaults to REMOTE's port; 0 picks a free one (printed).

Options:
  -h, --help          print this and exit

${CONNECTION_HELP}`;

function port(value: string, what: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw usageError(`${what} must be a port from 0 to 65535, got '${value}'`);
  }
  return n;
}

/** What the forward feature looks like once merged: `server.worker(id).forward(...)` (its shape may vary). */
interface Forwarding {
  worker?: (id: string) => { forward?: (...args: unknown[]) => Promise<unknown> };
}

/**
 * Run `sandd forward`.
 *
 * @param args The arguments after `forward`.
 * @returns The exit code.
 */
export async function forward(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { ...COMMON_OPTIONS, ...CONNECTION_OPTIONS });
  if (values.help) {
    await out(FORWARD_USAGE);
    return EXIT.OK;
  }
  const worker = workerId(positionals[0]);
  const remote = positionals[1];
  if (remote === undefined) throw usageError("Missing REMOTE (a port, or HOST:PORT)");
  const colon = remote.lastIndexOf(":");
  const remotePort = port(colon >= 0 ? remote.slice(colon + 1) : remote, "REMOTE");
  const local = positionals[2] !== undefined ? port(positionals[2], "LOCAL") : remotePort;
  noMore(positionals, 3);
  return await withController(values, (controller: Controller) => {
    const forwarding = controller as unknown as Forwarding;
    if (typeof forwarding.worker !== "function") {
      throw new CliError(
        EXIT.INTERNAL,
        `Port forwarding is not available yet in this build (worker '${worker}', ${remote} to local port ${local})`,
      );
    }
    throw new CliError(
      EXIT.INTERNAL,
      "Port forwarding is not available yet through the control API",
    );
  });
}
