// Test helpers for the HTTP control API: a controller with the API on and one real daemon, and small fetch
// wrappers that always consume the answer (the sanitizers want every body read or cancelled).
import type { ServerOptions } from "../mod.ts";
import { startWorker, type TestWorker } from "./_daemon.ts";

/** A worker whose controller serves the control API; `base` is `http://127.0.0.1:PORT/api/v1`. */
export interface ApiWorker extends TestWorker {
  base: string;
}

/** Start a controller with `control` (default: open on loopback) and a daemon `id`. */
export async function startApiWorker(
  id: string,
  serverOptions: ServerOptions = {},
  args: string[] = [],
): Promise<ApiWorker> {
  const worker = await startWorker(id, args, { control: true, ...serverOptions });
  return Object.assign(worker, { base: `http://127.0.0.1:${worker.server.port}/api/v1` });
}

/** An answer with its body read: JSON when it parses, else text. */
export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

/** A request whose answer is read to the end. */
export async function call(
  url: string,
  init: RequestInit & { token?: string; json?: unknown } = {},
): Promise<Answer> {
  const headers = new Headers(init.headers);
  if (init.token !== undefined) headers.set("authorization", `Bearer ${init.token}`);
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers.set("content-type", "application/json");
  }
  const response = await fetch(url, { ...init, headers, ...(body !== undefined ? { body } : {}) });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}

/** The `code` of a JSON error answer. */
export function codeOf(answer: Answer): string | undefined {
  return (answer.body as { code?: string } | null)?.code;
}

/** Read an SSE stream and resolve with the first event of `type` whose data passes `match`. */
export async function nextEvent(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  type: string,
  match: (data: Record<string, unknown>) => boolean = () => true,
  state: { buffer: string } = { buffer: "" },
): Promise<Record<string, unknown>> {
  const decoder = new TextDecoder();
  while (true) {
    let end: number;
    while ((end = state.buffer.indexOf("\n\n")) >= 0) {
      const block = state.buffer.slice(0, end);
      state.buffer = state.buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (event === type && data !== undefined) {
        const parsed = JSON.parse(data);
        if (match(parsed)) return parsed;
      }
    }
    const { done, value } = await reader.read();
    if (done) throw new Error(`Event stream ended before a '${type}' event`);
    state.buffer += decoder.decode(value, { stream: true });
  }
}
