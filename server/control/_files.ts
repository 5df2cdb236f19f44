// File resources: download (streamed, Content-Length, integrity checked against the daemon's SHA-256), upload
// (streamed, atomic, an expected SHA-256 ahead of the body or after it), stat/list/mkdir/remove/move, and directories as tar streams.
import type { HttpRequest } from "../_http1_request.ts";
import {
  downloadTarStream,
  type FileEntry,
  type FileStat,
  openFileDownload,
  uploadTarStream,
} from "../files.ts";
import { SHA256_HEX } from "../_file_checks.ts";
import type { ControlContext, RouteParams } from "./_context.ts";
import {
  type BodySchema,
  boolParam,
  intParam,
  onlyParams,
  queryParam,
  readJson,
  requiredParam,
} from "./_body.ts";
import { json, noContent } from "./_daemons.ts";
import { badRequest } from "./_errors.ts";
import { DIGEST_LENGTH, trailingDigest } from "./_trailing_digest.ts";

const MKDIR: BodySchema = {
  required: { path: { type: "string", nonEmpty: true } },
  optional: { recursive: { type: "boolean" }, mode: { type: "int", min: 0, max: 0o7777 } },
};
const REMOVE: BodySchema = {
  required: { path: { type: "string", nonEmpty: true } },
  optional: { recursive: { type: "boolean" } },
};
const MOVE: BodySchema = {
  required: { from: { type: "string", nonEmpty: true }, to: { type: "string", nonEmpty: true } },
};

function modeParam(ctx: ControlContext): number | undefined {
  const text = queryParam(ctx.url, "mode");
  if (text === undefined) return undefined;
  if (!/^0?[0-7]{1,4}$/.test(text)) {
    throw badRequest(
      `Query parameter 'mode' must be octal 0000 to 7777, got '${text.slice(0, 100)}'`,
    );
  }
  return parseInt(text, 8);
}

function dateJson(value: Date | null): string | null {
  return value === null ? null : value.toISOString();
}

function statJson(stat: FileStat): Record<string, unknown> {
  return { ...stat, mtime: dateJson(stat.mtime) };
}

function entryJson(entry: FileEntry): Record<string, unknown> {
  const out: Record<string, unknown> = { ...entry };
  if ("mtime" in entry) out.mtime = dateJson(entry.mtime as Date | null);
  return out;
}

/** `GET /daemons/{id}/files?path=&from=`: the file's bytes, streamed, with `Content-Length` and `Sandd-Size`. */
export async function downloadFile(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, ["path", "from"]);
  const path = requiredParam(ctx.url, "path");
  const from = intParam(ctx.url, "from") ?? 0;
  const id = params.id!;
  const abort = new AbortController();
  const { readable, size } = await ctx.host.auditor.run(
    "download",
    id,
    { path },
    () => openFileDownload(ctx.host.files, id, path, { from, signal: abort.signal }),
    (r) => (r.size !== null ? { bytes: Math.max(0, r.size - from) } : {}),
  );
  request.signal.addEventListener("abort", () => abort.abort(), { once: true });
  const headers: Record<string, string> = {
    "content-type": "application/octet-stream",
    "cache-control": "no-store",
  };
  if (size !== null) {
    headers["content-length"] = String(Math.max(0, size - from));
    headers["sandd-size"] = String(size);
  }
  // The stream errors (and the answer is cut short of its Content-Length) when what arrived does not match the
  // daemon's SHA-256: a client never sees a short or corrupt body as complete.
  return new Response(readable, { headers });
}

/** `PUT /daemons/{id}/files?path=&mode=&mkdirs=`: the body, streamed into the file atomically. */
export async function uploadFile(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, ["path", "mode", "mkdirs"]);
  const path = requiredParam(ctx.url, "path");
  const mode = modeParam(ctx);
  const mkdirs = boolParam(ctx.url, "mkdirs", false);
  const id = params.id!;
  // A digest sent ahead, or after the body (`trailing`: the body's last 64 bytes), goes to the daemon, which
  // checks the bytes against it before the file is put in place; the controller does not hash them again.
  const expected = request.headers.get("sandd-sha256");
  const trailing = expected === "trailing";
  if (expected !== null && !trailing && !SHA256_HEX.test(expected)) {
    throw badRequest(
      `Header 'Sandd-Sha256' must be 64 lowercase hex digits or 'trailing', got '${
        expected.slice(0, 100)
      }'`,
    );
  }
  const length = request.headers.get("content-length");
  let size = length !== null && /^\d{1,16}$/.test(length) ? Number(length) : undefined;
  if (trailing && size !== undefined) {
    if (size < DIGEST_LENGTH) {
      throw badRequest(
        `With 'Sandd-Sha256: trailing' the body must end with 64 hex digits of SHA-256; Content-Length is ${size}`,
      );
    }
    size -= DIGEST_LENGTH;
  }
  const abort = new AbortController();
  const onAbort = () => abort.abort(new Error("Client went away"));
  request.signal.addEventListener("abort", onAbort, { once: true });
  let data: Uint8Array | ReadableStream<Uint8Array> = request.body ?? new Uint8Array(0);
  let sha256: string | (() => string) | undefined = expected ?? undefined;
  if (trailing) {
    const split = trailingDigest(request.body);
    data = split.data;
    sha256 = split.digest;
  }
  try {
    const result = await ctx.server.upload(id, path, data, {
      ...(mode !== undefined ? { mode } : {}),
      ...(mkdirs ? { mkdirs } : {}),
      ...(size !== undefined ? { size } : {}),
      ...(sha256 !== undefined ? { sha256 } : {}),
      signal: abort.signal,
    });
    return json({ bytes: result.bytes, sha256: result.sha256 });
  } finally {
    request.signal.removeEventListener("abort", onAbort);
  }
}

/** `GET /daemons/{id}/fs/stat?path=`. */
export async function stat(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, ["path"]);
  return json(statJson(await ctx.server.fs(params.id!).stat(requiredParam(ctx.url, "path"))));
}

/** `GET /daemons/{id}/fs/list?path=`. */
export async function list(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, ["path", "recursive"]);
  const recursive = boolParam(ctx.url, "recursive", false);
  const entries = await ctx.server.fs(params.id!).list(requiredParam(ctx.url, "path"), {
    recursive,
  });
  return json({ entries: entries.map(entryJson) });
}

/**
 * `GET /daemons/{id}/fs/watch?path=&recursive=`: changes under a path as Server-Sent Events, `data: { kind,
 * paths }` per change, until the client goes away (then the daemon's watch ends). The path is checked first (a
 * missing one is 404). Events are taken from the daemon only as fast as the client reads; a reader that falls
 * behind gets an `overflow` event instead of unbounded memory. A later failure (the daemon dropped) ends the
 * stream with `event: error`.
 */
export async function watch(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, ["path", "recursive"]);
  const path = requiredParam(ctx.url, "path");
  const recursive = boolParam(ctx.url, "recursive", true);
  const fs = ctx.server.fs(params.id!);
  await fs.stat(path);
  const stop = new AbortController();
  const onClosing = () => stop.abort();
  ctx.closing.addEventListener("abort", onClosing, { once: true });
  const events = fs.watch(path, { recursive, signal: stop.signal });
  const encoder = new TextEncoder();
  const finish = () => {
    ctx.closing.removeEventListener("abort", onClosing);
    stop.abort();
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(": watching\n\n"));
    },
    async pull(controller) {
      try {
        const next = await events.next();
        if (next.done) {
          finish();
          controller.close();
          return;
        }
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(next.value)}\n\n`));
      } catch (error) {
        finish();
        const e = error as { code?: string; message?: string };
        controller.enqueue(
          encoder.encode(
            `event: error\ndata: ${
              JSON.stringify({ code: e.code ?? "ERROR", message: e.message ?? String(error) })
            }\n\n`,
          ),
        );
        controller.close();
      }
    },
    async cancel() {
      finish();
      await events.return(undefined).catch(() => {});
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    },
  });
}

/** `POST /daemons/{id}/fs/mkdir` `{ path, recursive?, mode? }`. */
export async function mkdir(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, MKDIR, ctx.state.maxJsonBytes);
  await ctx.server.fs(params.id!).mkdir(body.path as string, {
    ...(body.recursive !== undefined ? { recursive: body.recursive as boolean } : {}),
    ...(body.mode !== undefined ? { mode: body.mode as number } : {}),
  });
  return noContent();
}

/** `POST /daemons/{id}/fs/remove` `{ path, recursive? }`. */
export async function remove(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, REMOVE, ctx.state.maxJsonBytes);
  await ctx.server.fs(params.id!).remove(body.path as string, {
    ...(body.recursive !== undefined ? { recursive: body.recursive as boolean } : {}),
  });
  return noContent();
}

/** `POST /daemons/{id}/fs/move` `{ from, to }`. */
export async function move(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, MOVE, ctx.state.maxJsonBytes);
  await ctx.server.fs(params.id!).move(body.from as string, body.to as string);
  return noContent();
}

/** `GET /daemons/{id}/dirs?path=`: the tree as a tar stream. */
export async function downloadDir(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, ["path"]);
  const path = requiredParam(ctx.url, "path");
  const id = params.id!;
  const abort = new AbortController();
  const readable = await ctx.host.auditor.run(
    "downloadDir",
    id,
    { path },
    () => downloadTarStream(ctx.host.files, id, path, { signal: abort.signal }),
  );
  request.signal.addEventListener("abort", () => abort.abort(), { once: true });
  return new Response(readable, {
    headers: { "content-type": "application/x-tar", "cache-control": "no-store" },
  });
}

/** `PUT /daemons/{id}/dirs?path=&mkdirs=&mode=`: a tar body unpacked into the directory (replaced atomically). */
export async function uploadDir(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, ["path", "mkdirs", "mode"]);
  const path = requiredParam(ctx.url, "path");
  const mkdirs = boolParam(ctx.url, "mkdirs", false);
  const mode = modeParam(ctx);
  const id = params.id!;
  if (!request.body) throw badRequest("The body must be a tar archive, got none");
  const abort = new AbortController();
  const onAbort = () => abort.abort(new Error("Client went away"));
  request.signal.addEventListener("abort", onAbort, { once: true });
  const body = request.body;
  try {
    const result = await ctx.host.auditor.run(
      "uploadDir",
      id,
      { path },
      () =>
        uploadTarStream(ctx.host.files, id, path, body, {
          ...(mkdirs ? { mkdirs } : {}),
          ...(mode !== undefined ? { mode } : {}),
          signal: abort.signal,
        }),
      (r) => ({ bytes: r.bytes }),
    );
    return json({
      files: result.files,
      dirs: result.directories,
      symlinks: result.symlinks,
      bytes: result.bytes,
      sha256: result.sha256,
    });
  } finally {
    request.signal.removeEventListener("abort", onAbort);
  }
}
