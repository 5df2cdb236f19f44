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
import { json, out } from "./_format.ts";
import { CliError, EXIT, usageError } from "./exit_codes.ts";

/** Help of `sandd forward`. */
export const FORWARD_USAGE = `Usage: sandd forward WORKER REMOTE [LOCAL]

Forward connections to 127.0.0.1:LOCAL on this machine to 127.0.0.1:REMOTE on the worker, through the
controller (each connection is one tunnel of the control API), until SIGINT/SIGTERM. LOCAL defaults to
REMOTE; 0 picks a free port. Prints "forwarding 127.0.0.1:LOCAL -> WORKER:REMOTE" once listening
(with --json: { hostname, port, daemonId, remotePort }). Needs the exec scope. The worker's policy decides
which of its ports may be reached (sandd daemon --forward).

Options:
      --json          print the listening address as JSON
  -h, --help          print this and exit

${CONNECTION_HELP}`;

function port(value: string, what: string, min: number): number {
  const n = Number(value);
  if (value.trim() === "" || !/^\d+$/.test(value) || !Number.isInteger(n) || n < min || n > 65535) {
    throw usageError(`${what} must be a port from ${min} to 65535, got '${value}'`);
  }
  return n;
}

/**
 * Run `sandd forward`.
 *
 * @param args The arguments after `forward`.
 * @returns The exit code.
 */
export async function forward(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...COMMON_OPTIONS,
    ...CONNECTION_OPTIONS,
    json: { type: "boolean" },
  });
  if (values.help) {
    await out(FORWARD_USAGE);
    return EXIT.OK;
  }
  const worker = workerId(positionals[0]);
  const remote = positionals[1];
  if (remote === undefined) throw usageError("Missing REMOTE (a port on the worker)");
  const colon = remote.lastIndexOf(":");
  if (colon >= 0 && !["127.0.0.1", "localhost"].includes(remote.slice(0, colon))) {
    throw usageError(`REMOTE must be a port on the worker's loopback, got '${remote}'`);
  }
  const remotePort = port(colon >= 0 ? remote.slice(colon + 1) : remote, "REMOTE", 1);
  const local = positionals[2] !== undefined ? port(positionals[2], "LOCAL", 0) : remotePort;
  noMore(positionals, 3);
  return await withController(values, async (controller: Controller) => {
    if (!controller.forward) {
      throw new CliError(EXIT.INTERNAL, "This controller offers no port forwarding");
    }
    // Fails early (unknown worker) rather than on the first connection.
    if (!(await controller.daemon(worker))) {
      throw new CliError(EXIT.UNKNOWN_WORKER, `No worker '${worker}' is connected`);
    }
    const stop = new AbortController();
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const onSignal = () => stop.abort();
    for (const signal of signals) Deno.addSignalListener(signal, onSignal);
    try {
      await using forwarding = await controller.forward(worker, remotePort, { port: local });
      if (values.json) {
        await json({
          hostname: forwarding.hostname,
          port: forwarding.port,
          daemonId: worker,
          remotePort,
        });
      } else {
        await out(
          `forwarding ${forwarding.hostname}:${forwarding.port} -> ${worker}:${remotePort}`,
        );
      }
      await new Promise<void>((resolve) => stop.signal.addEventListener("abort", () => resolve()));
    } finally {
      for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
    }
    return EXIT.OK;
  });
}
