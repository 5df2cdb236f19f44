// Process resources: spawn, list, get, output streamed by byte offset, stdin as a streamed body, signal, status.
import type { HttpRequest } from "../_http1_request.ts";
import { SIGNALS } from "@sandd/protocol/messages";
import { DaemonNotFoundError, UnknownProcessError } from "../errors.ts";
import type { Gap, ProcessInfo, ProcessStatus, RemoteProcess } from "../process.ts";
import { sessionOf } from "../_process_session.ts";
import type { ControlContext, RouteParams } from "./_context.ts";
import { type BodySchema, boolParam, intParam, onlyParams, queryParam, readJson } from "./_body.ts";
import { json, noContent } from "./_daemons.ts";
import { badRequest, HttpError } from "./_errors.ts";
import { type ControlState, processKey } from "./_state.ts";

const SPAWN: BodySchema = {
  required: { command: { type: "command" } },
  optional: {
    cwd: { type: "string", nonEmpty: true },
    env: { type: "strings" },
    timeout: { type: "int", min: 1, max: 2 ** 31 },
    stdin: { type: "boolean" },
    retainBytes: { type: "int", min: 0, max: 2 ** 31 },
  },
};

const SIGNAL: BodySchema = {
  required: { signal: { type: "enum", values: SIGNALS } },
};

/** With `follow=false`, the answer ends once no output has come for this long (or at the end). */
const IDLE_END_MS = 200;

function infoJson(p: ProcessInfo): Record<string, unknown> {
  return { ...p, startedAt: p.startedAt.toISOString() };
}

function statusJson(s: ProcessStatus): Record<string, unknown> {
  return {
    state: "exited",
    exitCode: s.exitCode,
    signal: s.signal,
    timedOut: s.timedOut,
    ...(s.truncated ? { truncated: s.truncated } : {}),
  };
}

function unknownProcess(id: string, proc: string): UnknownProcessError {
  return new UnknownProcessError(id, {
    code: "UNKNOWN_PROCESS",
    message: `Daemon '${id}' holds no process '${proc}'`,
  });
}

/** Stop reading a handle's outputs: the daemon then keeps them (bounded) for whoever attaches later. */
function muteOutputs(handle: RemoteProcess, keep?: "stdout" | "stderr"): void {
  if (keep !== "stdout") handle.stdout.cancel().catch(() => {});
  if (keep !== "stderr") handle.stderr.cancel().catch(() => {});
}

/**
 * Let go of a handle the API attached for one request: its output streams are reset (the daemon drops those
 * attachments; the process runs on) and the controller forgets it. Unlike `detach()`, this leaves the other
 * handles this controller holds on the same process (the one that started it, other readers) untouched.
 */
function release(handle: RemoteProcess): void {
  muteOutputs(handle);
  sessionOf(handle).fail(new Error(`Released process ${handle.id}`));
}

/** Follow a process started through the API: announce its exit, then forget it. */
function track(ctx: ControlContext, daemon: string, handle: RemoteProcess): void {
  const state: ControlState = ctx.state;
  const key = processKey(daemon, handle.id);
  state.processes.set(key, { handle, stdinClosed: false, held: { stdout: true, stderr: true } });
  const forget = () => {
    state.processes.delete(key);
    muteOutputs(handle);
  };
  handle.status.then(
    (status) => {
      forget();
      state.events.publish("exit", {
        daemon,
        process: handle.id,
        command: handle.command,
        exitCode: status.exitCode,
        signal: status.signal,
        timedOut: status.timedOut,
      });
    },
    forget,
  );
}

/** `POST /daemons/{id}/processes`: 201 `{ id, pid }`. */
export async function spawnProcess(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, SPAWN, ctx.state.maxJsonBytes);
  const id = params.id!;
  const handle = await ctx.server.spawn(id, body.command as string | string[], {
    stdin: (body.stdin as boolean | undefined) ?? false,
    ...(body.cwd !== undefined ? { cwd: body.cwd as string } : {}),
    ...(body.env !== undefined ? { env: body.env as Record<string, string> } : {}),
    ...(body.timeout !== undefined ? { timeout: body.timeout as number } : {}),
    ...(body.retainBytes !== undefined ? { retainBytes: body.retainBytes as number } : {}),
  });
  track(ctx, id, handle);
  return json({ id: handle.id, pid: handle.pid }, 201);
}

/** `GET /daemons/{id}/processes`. */
export async function listProcesses(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, []);
  const processes = await ctx.server.processes(params.id!);
  return json({ processes: processes.map(infoJson) });
}

async function findProcess(ctx: ControlContext, id: string, proc: string): Promise<ProcessInfo> {
  const found = (await ctx.server.processes(id)).find((p) => p.id === proc);
  if (!found) throw unknownProcess(id, proc);
  return found;
}

/** `GET /daemons/{id}/processes/{proc}`. */
export async function getProcess(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, []);
  return json(infoJson(await findProcess(ctx, params.id!, params.proc!)));
}

/**
 * `GET .../processes/{proc}/output?stream=&from=&follow=`: the stream's bytes from `from`, streamed. `Sandd-Offset`
 * is the offset of the first byte sent (past `from` when older output is no longer retained). A client that goes
 * away only detaches: the process runs on and its output stays fetchable.
 */
export async function processOutput(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, ["stream", "from", "follow"]);
  const stream = queryParam(ctx.url, "stream") ?? "stdout";
  if (stream !== "stdout" && stream !== "stderr") {
    throw badRequest(
      `Query parameter 'stream' must be stdout or stderr, got '${stream.slice(0, 100)}'`,
    );
  }
  const from = intParam(ctx.url, "from") ?? 0;
  const follow = boolParam(ctx.url, "follow", true);
  const gaps: Gap[] = [];
  const handle = await ctx.server.attach(params.id!, params.proc!, {
    stdin: false,
    from: stream === "stdout" ? { stdout: from } : { stderr: from },
    onGap: (gap) => gaps.push(gap),
  });
  muteOutputs(handle, stream);
  // The handle that started the process held this stream for its first reader: this is it.
  const tracked = ctx.state.processes.get(processKey(params.id!, params.proc!));
  if (tracked?.held[stream]) {
    tracked.held[stream] = false;
    (stream === "stdout" ? tracked.handle.stdout : tracked.handle.stderr).cancel().catch(() => {});
  }
  // A gap before `from` arrives ahead of the attach's reply: where the bytes really start is known now.
  let offset = from;
  for (const gap of gaps) {
    const mine = gap.stream === stream || (stream === "stdout" && gap.stream === "output");
    if (mine && gap.from <= offset && gap.to > offset) offset = gap.to;
  }
  const reader = (stream === "stdout" ? handle.stdout : handle.stderr).getReader();
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    request.signal.removeEventListener("abort", finish);
    reader.cancel().catch(() => {});
    release(handle);
  };
  // A client that goes away while nothing is written would otherwise be noticed only at the next write.
  request.signal.addEventListener("abort", finish, { once: true });
  const body = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      try {
        const next = !follow && !handle.exited
          ? await readOrIdle(reader, IDLE_END_MS)
          : await reader.read();
        if (next === null || next.done) {
          finish();
          controller.close();
          return;
        }
        controller.enqueue(next.value);
      } catch (error) {
        finish();
        controller.error(error);
      }
    },
    cancel: () => finish(),
  }, { highWaterMark: 0 });
  return new Response(body, {
    headers: {
      "content-type": "application/octet-stream",
      "cache-control": "no-store",
      "sandd-offset": String(offset),
    },
  });
}

async function readOrIdle(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  idleMs: number,
): Promise<ReadableStreamReadResult<Uint8Array> | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), idleMs);
  });
  try {
    return await Promise.race([reader.read(), idle]);
  } finally {
    clearTimeout(timer);
  }
}

/** `POST .../processes/{proc}/stdin?eof=`: the body goes to the process's stdin; with `eof` (default) stdin closes. */
export async function processStdin(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, ["eof"]);
  const eof = boolParam(ctx.url, "eof", true);
  const id = params.id!;
  const proc = params.proc!;
  const tracked = ctx.state.processes.get(processKey(id, proc));
  if (tracked?.stdinClosed) {
    await request.body?.cancel().catch(() => {});
    throw new HttpError(409, "STDIN_CLOSED", `Stdin of process '${proc}' was closed already`);
  }
  let handle: RemoteProcess;
  if (tracked) {
    handle = tracked.handle;
  } else {
    handle = await ctx.server.attach(id, proc, { stdin: true });
    muteOutputs(handle);
  }
  let writer: WritableStreamDefaultWriter<Uint8Array>;
  try {
    writer = handle.stdin.getWriter();
  } catch (error) {
    await request.body?.cancel().catch(() => {});
    if (!tracked) release(handle);
    throw new HttpError(
      409,
      handle.exited ? "PROCESS_EXITED" : "STDIN_UNAVAILABLE",
      (error as Error).message.includes("without stdin")
        ? `Process '${proc}' was started without stdin`
        : `Stdin of process '${proc}' is being written by another request`,
    );
  }
  let bytes = 0;
  try {
    if (request.body) {
      for await (const chunk of request.body) {
        await writer.write(chunk);
        bytes += chunk.byteLength;
      }
    }
    if (eof) {
      if (tracked) tracked.stdinClosed = true;
      await writer.close();
    } else {
      writer.releaseLock();
    }
  } catch (error) {
    writer.releaseLock();
    throw error;
  } finally {
    if (!tracked) release(handle);
  }
  return json({ bytes });
}

/** `POST .../processes/{proc}/signal` `{ signal }`: 204. */
export async function processSignal(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, SIGNAL, ctx.state.maxJsonBytes);
  const id = params.id!;
  const proc = params.proc!;
  const signal = body.signal as Deno.Signal;
  const tracked = ctx.state.processes.get(processKey(id, proc));
  if (tracked) {
    await tracked.handle.kill(signal);
  } else {
    const conn = ctx.host.connection(id);
    if (!conn) throw new DaemonNotFoundError(id);
    await conn.request("signal", { proc, signal });
  }
  return noContent();
}

/** `GET .../processes/{proc}/status?wait=`: `{ state, exitCode, signal, timedOut }`; `wait` blocks until the exit. */
export async function processStatus(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, ["wait"]);
  const wait = boolParam(ctx.url, "wait", false);
  const id = params.id!;
  const proc = params.proc!;
  const tracked = ctx.state.processes.get(processKey(id, proc))?.handle;
  if (tracked?.exited) return json(statusJson(tracked.exited));
  if (!wait) {
    const info = await findProcess(ctx, id, proc);
    return json({
      state: info.state,
      exitCode: info.exitCode,
      signal: info.signal,
      timedOut: false,
    });
  }
  if (tracked) return json(statusJson(await tracked.status));
  const handle = await ctx.server.attach(id, proc, { stdin: false });
  muteOutputs(handle);
  const onAbort = () => release(handle);
  request.signal.addEventListener("abort", onAbort, { once: true });
  try {
    return json(statusJson(await handle.status));
  } finally {
    request.signal.removeEventListener("abort", onAbort);
    release(handle);
  }
}
