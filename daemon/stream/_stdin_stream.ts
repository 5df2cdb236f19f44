/**
 * A child's stdin as the daemon receives it: a {@linkcode CreditReceiver} (bounded by the controller's window, so a
 * child that never reads cannot make the daemon queue without limit), written to the child one chunk at a time and
 * acknowledged as written. It outlives links: a re-attaching controller resumes at
 * {@linkcode StdinStream.received}, and a resend overlapping what was queued is trimmed.
 *
 * The same shape serves any daemon-side receiving stream (an upload: replace `write` with the file write).
 *
 * @module
 */

import { CreditReceiver } from "@sandd/protocol/stream";
import type { Link, StreamRoute } from "../_link.ts";

/** Where the bytes go. */
export interface StdinSink {
  /** Write one chunk; a rejection closes the stream (later bytes are acknowledged and dropped). */
  write(bytes: Uint8Array): Promise<void>;
  /** End of input. */
  close(): Promise<void>;
}

/**
 * Receive a stream, write it in order, acknowledge as written.
 *
 * @example Bind stdin on a link
 * ```ts ignore
 * const stdin = new StdinStream({ write: (b) => child.write(b), close: () => child.closeInput() });
 * stdin.bind(link, sid, window);
 * ```
 */
export class StdinStream {
  readonly #sink: StdinSink | null;
  #credit: CreditReceiver | null = null;
  #binding: { link: Link; sid: number; route: StreamRoute } | null = null;
  #written = 0;
  #writing = false;
  /** Input ended (eof, reset, or the child closed its stdin): later bytes are acknowledged and dropped. */
  #closed: boolean;
  #closeRequested = false;

  /**
   * @param sink Where the bytes go; null when the child has no stdin.
   */
  constructor(sink: StdinSink | null) {
    this.#sink = sink;
    this.#closed = sink === null;
  }

  /** Bytes received so far (written or queued): where a resumed writer continues. */
  get received(): number {
    return this.#credit?.received ?? 0;
  }

  /** Bytes written to the child (or dropped after it closed its stdin). */
  get written(): number {
    return this.#written;
  }

  /** Route `sid` on `link` here, replacing any earlier binding; the writer resumes at `received`. */
  bind(link: Link, sid: number, window: number): void {
    this.unbind();
    if (this.#credit) this.#credit.rebind(window);
    else this.#credit = new CreditReceiver({ window, gaps: false, copy: true, name: "stdin" });
    const route: StreamRoute = {
      onData: (offset, payload) => this.#data(offset, payload),
      onEof: (offset) => this.#eof(offset),
      onReset: () => this.#end(),
      onClose: () => {
        if (this.#binding?.route === route) this.#binding = null;
      },
    };
    this.#binding = { link, sid, route };
    link.bind(sid, route);
  }

  /** Drop the binding of `link` (or any, without one). */
  unbind(link?: Link): void {
    const binding = this.#binding;
    if (!binding || (link && binding.link !== link)) return;
    binding.link.unbind(binding.sid, binding.route);
    this.#binding = null;
  }

  /** The child is gone: nothing more will be written. */
  closed(): void {
    this.#closed = true;
  }

  #data(offset: number, payload: Uint8Array): void {
    try {
      this.#credit!.data(offset, payload);
    } catch (error) {
      this.#reset((error as Error).message);
      return;
    }
    this.#pump();
  }

  #eof(offset: number): void {
    try {
      this.#credit!.eof(offset);
    } catch (error) {
      this.#reset((error as Error).message);
      return;
    }
    this.#end();
  }

  #end(): void {
    this.#closeRequested = true;
    this.#pump();
  }

  #reset(reason: string): void {
    const binding = this.#binding;
    binding?.link.send({ t: "reset", sid: binding.sid, reason: reason.slice(0, 200) });
    this.unbind();
  }

  async #pump(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (true) {
        const chunk = this.#credit?.take();
        if (!chunk) break;
        // Bytes that arrive after the child closed its stdin are dropped but still acknowledged.
        if (!this.#closed && this.#sink) {
          try {
            await this.#sink.write(chunk);
          } catch {
            this.#closed = true;
          }
        }
        this.#written += chunk.length;
        this.#credit!.ackDue(true);
        const binding = this.#binding;
        binding?.link.send({ t: "ack", sid: binding.sid, offset: this.#written });
      }
      if (this.#closeRequested && !this.#closed) {
        this.#closed = true;
        try {
          await this.#sink?.close();
        } catch {
          // the child may have exited already
        }
      }
    } finally {
      this.#writing = false;
    }
    if (this.#credit && this.#credit.queued > 0) void this.#pump();
  }
}
