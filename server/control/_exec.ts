// exec (one request, one JSON result) and broadcast.
import type { HttpRequest } from "../_http1_request.ts";
import { decodeBase64, encodeBase64 } from "./_base64.ts";
import type { ExecResult } from "../options.ts";
import type { ControlContext, RouteParams } from "./_context.ts";
import { type BodySchema, onlyParams, readJson } from "./_body.ts";
import { badRequest, statusOf } from "./_errors.ts";
import { json } from "./_daemons.ts";
import { requestSignalReportsDisconnect } from "../_http_listener.ts";

const REPORTS_DISCONNECT = requestSignalReportsDisconnect();

const LAUNCH = {
  cwd: { type: "string", nonEmpty: true },
  env: { type: "strings" },
  timeout: { type: "int", min: 1, max: 2 ** 31 },
} as const;

const EXEC: BodySchema = {
  required: { command: { type: "command" } },
  optional: {
    ...LAUNCH,
    stdin: { type: "string" },
    stdinBase64: { type: "string" },
    maxOutputBytes: { type: "int", min: 0, max: 2 ** 31 },
    encoding: { type: "enum", values: ["utf8", "base64"] },
  },
};

const BROADCAST: BodySchema = {
  required: { command: { type: "command" } },
  optional: { ...LAUNCH, labels: { type: "strings" }, platform: { type: "string" } },
};

function launchOptions(body: Record<string, unknown>) {
  return {
    ...(body.cwd !== undefined ? { cwd: body.cwd as string } : {}),
    ...(body.env !== undefined ? { env: body.env as Record<string, string> } : {}),
    ...(body.timeout !== undefined ? { timeout: body.timeout as number } : {}),
  };
}

function resultJson(result: ExecResult, encoding: "utf8" | "base64"): Record<string, unknown> {
  return {
    stdout: encoding === "base64" ? encodeBase64(result.stdoutBytes) : result.stdout,
    stderr: encoding === "base64" ? encodeBase64(result.stderrBytes) : result.stderr,
    encoding,
    exitCode: result.exitCode,
    signal: result.signal,
    durationMs: result.durationMs,
    truncated: result.truncated,
  };
}

/** `POST /daemons/{id}/exec`. */
export async function exec(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  if (ctx.hasQuery) onlyParams(ctx.url, []);
  const body = await readJson(request, EXEC, ctx.state.maxJsonBytes);
  if (body.stdin !== undefined && body.stdinBase64 !== undefined) {
    throw badRequest("Fields 'stdin' and 'stdinBase64' are exclusive");
  }
  let stdin: string | Uint8Array | undefined = body.stdin as string | undefined;
  if (body.stdinBase64 !== undefined) {
    stdin = decodeBase64(body.stdinBase64 as string, "stdinBase64");
  }
  const encoding = (body.encoding ?? "utf8") as "utf8" | "base64";
  const result = await ctx.server.exec(params.id!, body.command as string | string[], {
    ...launchOptions(body),
    ...(stdin !== undefined ? { stdin } : {}),
    ...(body.maxOutputBytes !== undefined ? { maxOutputBytes: body.maxOutputBytes as number } : {}),
    // Where the HTTP server reports a client gone before the answer, its command goes with it. (The hardened
    // listener's per-connection server does not: there the command runs to its end or its timeout, and the signal
    // is not even read, as reading it costs.)
    ...(REPORTS_DISCONNECT ? { signal: request.signal } : {}),
  });
  return json(resultJson(result, encoding));
}

/** `POST /broadcast`. */
export async function broadcast(ctx: ControlContext, request: HttpRequest): Promise<Response> {
  if (ctx.hasQuery) onlyParams(ctx.url, []);
  const body = await readJson(request, BROADCAST, ctx.state.maxJsonBytes);
  const results = await ctx.server.broadcast(
    {
      ...(body.labels !== undefined ? { labels: body.labels as Record<string, string> } : {}),
      ...(body.platform !== undefined ? { platform: body.platform as string } : {}),
    },
    body.command as string | string[],
    launchOptions(body),
  );
  const out: Record<string, unknown> = {};
  for (const [id, result] of results) {
    out[id] = result instanceof Error
      ? { error: { code: statusOf(result).code, message: result.message } }
      : resultJson(result, "utf8");
  }
  return json({ results: out });
}
