/**
 * `sandd serve`: a standalone controller. Daemons dial in on the WebSocket path; operators and scripts use the
 * HTTP control API under `/api/v1` on the same port; `/health` and `/stats` as with an embedded `Server`.
 *
 * @module
 */

import { configure, getJsonLinesFormatter, getTextFormatter } from "@logtape/logtape";
import {
  type AuditSink,
  type ClusterOptions,
  type ControlOptions,
  fileAuditSink,
  parseClientTokens,
  Server,
  type ServerOptions,
} from "@sandd/server";
import { parse, str } from "./_args.ts";
import { CliError, EXIT, usageError } from "./exit_codes.ts";
import { out } from "./_format.ts";
import { raiseListenBacklog } from "../ffi/listen_backlog.ts";

/** Help of `sandd serve`. */
export const SERVE_USAGE = `Usage: sandd serve [options]

Run a standalone controller: daemons connect to ws://HOST:PORT/ws, clients use the control API at
http://HOST:PORT/api/v1 (the sandd commands, the TypeScript Client, the Python client).

Options:
  --hostname HOST           interface to bind (default 127.0.0.1)
  --port N                  port; 0 picks a free one (default 8765)
  --path PATH               the daemons' WebSocket path (default /ws)
  --token-file FILE         shared bearer token daemons must present (first line of FILE)
  --client-token-file FILE  API client tokens: one 'TOKEN [scope,scope]' per line (scopes: read, exec,
                            files, admin; none listed = all); without it the API is open, which is only
                            allowed on a loopback address (or with --insecure)
  --insecure                allow an open API (no client tokens) on a non-loopback address
  --cert FILE, --key FILE   PEM certificate chain and key: serve https/wss
  --audit FILE              append the audit trail to FILE (JSON lines)
  --cluster URL[,URL]       join a cluster of controller nodes over NATS (JetStream on): nats:// or tls://
                            URLs; every node sees and reaches the daemons of all (server/CLUSTER.md)
  --cluster-name NAME       this node's name in the cluster (default hostname-pid-random)
  --cluster-token-file FILE NATS token (first line of FILE)
  --cluster-ca FILE         PEM CA of the NATS servers' certificates (TLS to NATS)
  --cluster-heartbeat-ms N  node heartbeat; a node silent for 3 of them is dead (default 2000)
  --backlog N               the kernel's queue of connections waiting to be accepted (Linux, macOS;
                            capped by net.core.somaxconn): thousands of daemons reconnecting at once
                            overflow Deno's 511, and each dropped connect waits 1-3 s for TCP to retry
                            it (default 65535, i.e. the system's maximum; 0 keeps Deno's)
  --log-format FORMAT       text | json (default text)
  --log-level LEVEL         debug | info | warning | error (default info)
  -h, --help                print this and exit

It prints 'listening on URL' once ready. SIGINT/SIGTERM close the daemon links and the listener (processes
on the workers keep running) and exit 0. Exit 64 for bad flags, 78 for an unreadable file.`;

/** `--backlog`: raise the listener's accept queue where the platform allows (a warning where it could not). */
function raiseBacklog(port: number, backlog: number): void {
  if (Deno.build.os === "windows") return;
  let raised = 0;
  try {
    raised = raiseListenBacklog(port, backlog);
  } catch (error) {
    console.error(`sandd: warning: --backlog: ${(error as Error).message}`);
    return;
  }
  if (raised === 0) {
    console.error(`sandd: warning: --backlog: no listening socket on port ${port} found to raise`);
  }
}

function readFile(path: string, flag: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new CliError(EXIT.CONFIG, `Cannot read --${flag} '${path}': ${(error as Error).message}`);
  }
}

/**
 * Run `sandd serve` until SIGINT or SIGTERM.
 *
 * @param args The arguments after `serve`.
 * @returns The exit code.
 */
export async function serve(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    hostname: { type: "string" },
    port: { type: "string" },
    path: { type: "string" },
    "token-file": { type: "string" },
    "client-token-file": { type: "string" },
    insecure: { type: "boolean" },
    cert: { type: "string" },
    key: { type: "string" },
    audit: { type: "string" },
    cluster: { type: "string" },
    "cluster-name": { type: "string" },
    "cluster-token-file": { type: "string" },
    "cluster-ca": { type: "string" },
    "cluster-heartbeat-ms": { type: "string" },
    backlog: { type: "string" },
    "log-format": { type: "string" },
    "log-level": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    await out(SERVE_USAGE);
    return EXIT.OK;
  }
  if (positionals.length) throw usageError(`Unexpected argument '${positionals[0]}'`);
  const portText = str(values, "port") ?? "8765";
  const port = Number(portText);
  if (portText.trim() === "" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw usageError(`--port must be an integer from 0 to 65535, got '${portText}'`);
  }
  const logFormat = str(values, "log-format") ?? "text";
  if (logFormat !== "text" && logFormat !== "json") {
    throw usageError(`--log-format must be text or json, got '${logFormat}'`);
  }
  const logLevel = str(values, "log-level") ?? "info";
  if (!["debug", "info", "warning", "error"].includes(logLevel)) {
    throw usageError(`--log-level must be debug, info, warning or error, got '${logLevel}'`);
  }
  const backlogText = str(values, "backlog") ?? "65535";
  const backlog = Number(backlogText);
  if (backlogText.trim() === "" || !Number.isInteger(backlog) || backlog < 0 || backlog > 65535) {
    throw usageError(`--backlog must be an integer from 0 to 65535, got '${backlogText}'`);
  }
  const cert = str(values, "cert");
  const key = str(values, "key");
  if ((cert === undefined) !== (key === undefined)) {
    throw usageError("--cert and --key go together");
  }
  const options: ServerOptions = {
    hostname: str(values, "hostname") ?? "127.0.0.1",
    port,
  };
  const path = str(values, "path");
  if (path !== undefined) options.path = path;
  const tokenFile = str(values, "token-file");
  if (tokenFile !== undefined) {
    const token = readFile(tokenFile, "token-file").split(/\r?\n/)[0]!.trim();
    if (token === "") throw new CliError(EXIT.CONFIG, `--token-file '${tokenFile}' is empty`);
    options.token = token;
  }
  const clientTokenFile = str(values, "client-token-file");
  const control: ControlOptions = {};
  if (clientTokenFile !== undefined) {
    try {
      control.tokens = parseClientTokens(readFile(clientTokenFile, "client-token-file"));
    } catch (error) {
      if (error instanceof CliError) throw error;
      throw new CliError(
        EXIT.CONFIG,
        `Bad --client-token-file '${clientTokenFile}': ${(error as Error).message}`,
      );
    }
  }
  if (values.insecure) control.insecure = true;
  options.control = control;
  if (cert !== undefined && key !== undefined) {
    options.cert = readFile(cert, "cert");
    options.key = readFile(key, "key");
  }
  const clusterUrls = str(values, "cluster");
  if (clusterUrls !== undefined) {
    const cluster: ClusterOptions = { servers: clusterUrls.split(",").map((u) => u.trim()) };
    const name = str(values, "cluster-name");
    if (name !== undefined) cluster.name = name;
    const tokenFile = str(values, "cluster-token-file");
    if (tokenFile !== undefined) {
      const token = readFile(tokenFile, "cluster-token-file").split(/\r?\n/)[0]!.trim();
      if (token === "") {
        throw new CliError(EXIT.CONFIG, `--cluster-token-file '${tokenFile}' is empty`);
      }
      cluster.token = token;
    }
    const ca = str(values, "cluster-ca");
    if (ca !== undefined) {
      readFile(ca, "cluster-ca");
      cluster.tls = { caFile: ca };
    }
    const heartbeat = str(values, "cluster-heartbeat-ms");
    if (heartbeat !== undefined) {
      const ms = Number(heartbeat);
      if (heartbeat.trim() === "" || !Number.isInteger(ms)) {
        throw usageError(`--cluster-heartbeat-ms must be an integer, got '${heartbeat}'`);
      }
      cluster.heartbeatMs = ms;
    }
    options.cluster = cluster;
  } else {
    for (
      const flag of ["cluster-name", "cluster-token-file", "cluster-ca", "cluster-heartbeat-ms"]
    ) {
      if (str(values, flag) !== undefined) throw usageError(`--${flag} needs --cluster`);
    }
  }
  let audit: (AuditSink & AsyncDisposable) | undefined;
  const auditFile = str(values, "audit");
  if (auditFile !== undefined) {
    try {
      audit = fileAuditSink(auditFile);
    } catch (error) {
      throw new CliError(EXIT.CONFIG, `Bad --audit '${auditFile}': ${(error as Error).message}`);
    }
    options.audit = audit;
  }

  const encoder = new TextEncoder();
  const formatter = logFormat === "json" ? getJsonLinesFormatter() : getTextFormatter();
  await configure({
    sinks: { stderr: (record) => Deno.stderr.writeSync(encoder.encode(formatter(record))) },
    loggers: [
      {
        category: ["sandd"],
        lowestLevel: logLevel as "debug" | "info" | "warning" | "error",
        sinks: ["stderr"],
      },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });

  const stopping = Promise.withResolvers<Deno.Signal>();
  const onInt = () => stopping.resolve("SIGINT");
  const onTerm = () => stopping.resolve("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  try {
    let server: Server;
    try {
      server = await Server.listen(options);
    } catch (error) {
      if (error instanceof TypeError || error instanceof RangeError) {
        throw usageError((error as Error).message);
      }
      if (error instanceof Deno.errors.AddrInUse || error instanceof Deno.errors.PermissionDenied) {
        throw new CliError(
          EXIT.UNAVAILABLE,
          `Cannot listen on ${options.hostname}:${port}: ${(error as Error).message}`,
        );
      }
      if (options.cluster) {
        throw new CliError(
          EXIT.UNAVAILABLE,
          `Cannot join the cluster at ${[options.cluster.servers].flat().join(",")}: ${
            (error as Error).message
          }`,
        );
      }
      throw error;
    }
    const http = new URL(server.url);
    if (backlog > 0) {
      raiseBacklog(Number(http.port) || (http.protocol === "wss:" ? 443 : 80), backlog);
    }
    http.protocol = http.protocol === "wss:" ? "https:" : "http:";
    const base = http.origin;
    await out(`listening on ${base} (daemons: ${server.url}, API: ${base}/api/v1)`);
    const signal = await stopping.promise;
    console.error(`sandd: ${signal}: closing`);
    await server.close();
    return EXIT.OK;
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
  }
}
