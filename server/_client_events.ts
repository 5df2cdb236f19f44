// The Client's `connect` / `disconnect` events: listeners kept here (with `once`, `signal` and `capture` as an
// EventTarget has them), and the controller's Server-Sent Events stream (`GET /api/v1/events`) open only while at
// least one listener is registered, re-opened after a dropped connection.
import { DaemonEvent } from "./events.ts";
import { isNetworkError, pause, type Transport } from "./_client_http.ts";
import { daemonInfo } from "./_client_wire.ts";

type Listener = ((event: Event) => unknown) | { handleEvent(event: Event): unknown };

interface Entry {
  type: string;
  listener: Listener;
  capture: boolean;
  once: boolean;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

const TYPES = new Set(["connect", "disconnect"]);
const RETRY_MAX_MS = 5_000;

/** The listeners of a Client and the event stream that feeds them. */
export class ClientEvents {
  readonly #transport: Transport;
  #entries: Entry[] = [];
  #stream: AbortController | null = null;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  add(type: string, listener: Listener | null, options?: boolean | AddEventListenerOptions): void {
    if (listener === null || listener === undefined) return;
    if (typeof listener !== "function" && typeof listener.handleEvent !== "function") {
      throw new TypeError("listener must be a function or an object with handleEvent");
    }
    const capture = typeof options === "boolean" ? options : options?.capture === true;
    const opts = typeof options === "object" ? options : {};
    if (this.#find(type, listener, capture) >= 0) return;
    if (opts.signal?.aborted) return;
    const entry: Entry = {
      type,
      listener,
      capture,
      once: opts.once === true,
      signal: opts.signal,
      onAbort: undefined,
    };
    if (opts.signal) {
      entry.onAbort = () => this.remove(type, listener, capture);
      opts.signal.addEventListener("abort", entry.onAbort, { once: true });
    }
    this.#entries.push(entry);
    this.#update();
  }

  remove(type: string, listener: Listener | null, options?: boolean | EventListenerOptions): void {
    if (!listener) return;
    const capture = typeof options === "boolean" ? options : options?.capture === true;
    const at = this.#find(type, listener, capture);
    if (at < 0) return;
    const [entry] = this.#entries.splice(at, 1);
    if (entry?.onAbort) entry.signal?.removeEventListener("abort", entry.onAbort);
    this.#update();
  }

  close(): void {
    for (const entry of this.#entries) {
      if (entry.onAbort) entry.signal?.removeEventListener("abort", entry.onAbort);
    }
    this.#entries = [];
    this.#update();
  }

  #find(type: string, listener: Listener, capture: boolean): number {
    return this.#entries.findIndex((e) =>
      e.type === type && e.listener === listener && e.capture === capture
    );
  }

  /** Open the stream when someone listens for daemon events, close it when nobody does. */
  #update(): void {
    const wanted = this.#entries.some((e) => TYPES.has(e.type)) &&
      !this.#transport.closed.aborted;
    if (wanted && !this.#stream) {
      const stream = new AbortController();
      this.#stream = stream;
      this.#run(stream.signal).catch(() => {}).finally(() => {
        if (this.#stream === stream) this.#stream = null;
      });
    } else if (!wanted && this.#stream) {
      this.#stream.abort();
      this.#stream = null;
    }
  }

  #dispatch(event: DaemonEvent): void {
    for (const entry of [...this.#entries]) {
      if (entry.type !== event.type || !this.#entries.includes(entry)) continue;
      if (entry.once) this.remove(entry.type, entry.listener, entry.capture);
      try {
        if (typeof entry.listener === "function") entry.listener(event);
        else entry.listener.handleEvent(event);
      } catch (error) {
        // As an EventTarget does: a throwing listener is reported, the others still run.
        globalThis.reportError(error);
      }
    }
  }

  async #run(stop: AbortSignal): Promise<void> {
    let delay = 100;
    while (!stop.aborted) {
      try {
        const response = await this.#transport.call("GET", "/events", {
          timeout: null,
          signal: stop,
          headers: { accept: "text/event-stream" },
        });
        delay = 100;
        await this.#read(response, stop);
      } catch (error) {
        if (stop.aborted) return;
        // A refused token or a missing route will not get better by retrying.
        if (!isNetworkError(error) && !(error instanceof TypeError)) return;
      }
      await pause(delay, stop);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  async #read(response: Response, stop: AbortSignal): Promise<void> {
    if (!response.body) return;
    const lines = response.body.pipeThrough(new TextDecoderStream(), { signal: stop });
    let buffer = "";
    let type = "message";
    let data: string[] = [];
    for await (const text of lines) {
      buffer += text;
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          if (data.length && (type === "connect" || type === "disconnect")) {
            try {
              this.#dispatch(new DaemonEvent(type, daemonInfo(JSON.parse(data.join("\n")))));
            } catch {
              // a malformed event is dropped; the stream goes on
            }
          }
          type = "message";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (name === "event") type = value;
        else if (name === "data") data.push(value);
      }
    }
  }
}
