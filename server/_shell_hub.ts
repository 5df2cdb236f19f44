// Shared terminal sessions: one daemon attachment per shell on this controller, fanned out to any number of
// viewers (the agent's RemoteShell, browsers in the console, read-only watchers). The bytes the daemon sends are
// kept in one bounded ring (the controller-side scrollback, absolute offsets); each viewer is a cursor into it,
// so a viewer costs no memory of its own and every viewer sees the same bytes.
//
// Flow control: the hub asks the daemon for more only when a viewer has read everything the ring holds, so the
// fastest reader paces the program (with one viewer, exactly the old behaviour: a consumer that stops reading
// pauses the program). A viewer that falls further behind than the ring holds is not waited for: its next read
// skips to the oldest byte still held and reports the skipped range as a gap (it resyncs from the scrollback).
// Resize follows the owner: the interactive viewer that resized last; the others are told the new size.
import type { Gap } from "./_inbound_stream.ts";
import type { ProcessSession } from "./_process_session.ts";

/** A terminal size. */
export interface TerminalSize {
  /** Width in columns. */
  cols: number;
  /** Height in rows. */
  rows: number;
}

/** What a viewer asks for when it joins. */
export interface ViewerInit {
  /** First output offset wanted; null: the oldest byte the ring (or the daemon) still holds. */
  from: number | null;
  /** A read-only viewer cannot type or resize. */
  readOnly: boolean;
  /** Told about every skipped range before the bytes after it. */
  onGap?: ((gap: Gap) => void) | undefined;
  /** Told when another viewer changes the terminal size. */
  onResize?: ((size: TerminalSize) => void) | undefined;
}

/** One viewer of a shared session, as `sh.viewers` describes it. */
export interface ViewerInfo {
  /** Joined read-only (cannot type or resize). */
  readOnly: boolean;
  /** Whether its size is the terminal's (it resized last). */
  owner: boolean;
  /** Output bytes the hub holds that it has not read yet. */
  behind: number;
  /** Whether this entry is the handle asking. */
  self: boolean;
}

interface Chunk {
  offset: number;
  bytes: Uint8Array;
}

/** Output bytes the ring keeps when the session's scrollback is not known (an attach). */
export const DEFAULT_RING_BYTES = 1024 * 1024;

/** One viewer's cursor, input and membership. */
export class ShellViewer {
  readonly hub: ShellHub;
  readonly readOnly: boolean;
  readonly gaps: Gap[] = [];
  /** Offset of the next byte this viewer reads. */
  position: number;
  /** Set once the viewer asked for "whatever is held": its first read starts at the ring's oldest byte. */
  fromOldest: boolean;
  /** Whether its output stream is still read (false once cancelled). */
  reading = true;
  /** Why the viewer left (detach), or null while it is a member. */
  left: Error | null = null;
  readonly onGap: ((gap: Gap) => void) | undefined;
  readonly onResize: ((size: TerminalSize) => void) | undefined;
  #readable: ReadableStream<Uint8Array> | null = null;

  constructor(hub: ShellHub, init: ViewerInit) {
    this.hub = hub;
    this.readOnly = init.readOnly;
    this.position = init.from ?? 0;
    this.fromOldest = init.from === null;
    this.onGap = init.onGap;
    this.onResize = init.onResize;
  }

  /** The output as this viewer reads it. */
  get readable(): ReadableStream<Uint8Array> {
    this.#readable ??= new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const chunk = await this.hub.next(this);
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      },
      cancel: () => this.hub.stopReading(this),
    }, { highWaterMark: 0 });
    return this.#readable;
  }

  /** Record and report a skipped range. */
  gap(to: number): void {
    const gap = { stream: "output", from: this.position, to };
    this.position = to;
    this.gaps.push(gap);
    this.onGap?.(gap);
  }
}

/** The fan-out of one shell session on this controller. */
export class ShellHub {
  readonly session: ProcessSession;
  readonly #resize: (cols: number, rows: number) => Promise<void>;
  readonly #ringBytes: number;
  readonly #gapFeed: Gap[];
  readonly #onGone: (hub: ShellHub) => void;
  #chunks: Chunk[] = [];
  #first = 0;
  #held = 0;
  /** Offset after the last byte received (before pending daemon gaps are applied). */
  #head: number;
  #reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #reading = false;
  #end: { error: Error | null } | null = null;
  #changed = Promise.withResolvers<void>();
  readonly #viewers = new Set<ShellViewer>();
  #owner: ShellViewer | null = null;
  #size: TerminalSize | null;
  #writes: Promise<void> = Promise.resolve();
  #gone = false;

  /**
   * @param session The one daemon attachment (its output is read only here).
   * @param gapFeed Where the session reports the daemon's gaps (filled by its `onGap`).
   * @param from The offset the session's output starts at (null: 0, the daemon reports what it no longer held).
   */
  constructor(init: {
    session: ProcessSession;
    resize: (cols: number, rows: number) => Promise<void>;
    ringBytes: number;
    gapFeed: Gap[];
    from: number | null;
    size: TerminalSize | null;
    onGone: (hub: ShellHub) => void;
  }) {
    this.session = init.session;
    this.#resize = init.resize;
    this.#ringBytes = init.ringBytes;
    this.#gapFeed = init.gapFeed;
    this.#head = init.from ?? 0;
    this.#size = init.size;
    this.#onGone = init.onGone;
    this.session.status.then(() => {}, () => {});
  }

  /** Whether the session can take input (it was started or attached with stdin). */
  get interactive(): boolean {
    return this.session.input !== null;
  }

  /** Whether the hub still serves viewers (output not finished, members left). */
  get alive(): boolean {
    return !this.#gone;
  }

  /** The terminal size as last set through this controller (null when not known yet). */
  get size(): TerminalSize | null {
    return this.#size;
  }

  /** Offset after the newest byte held. */
  get head(): number {
    return this.#head;
  }

  /** Add a viewer. */
  join(init: ViewerInit): ShellViewer {
    const viewer = new ShellViewer(this, init);
    this.#viewers.add(viewer);
    return viewer;
  }

  /** Describe the members, from `self`'s point of view. */
  viewers(self: ShellViewer): ViewerInfo[] {
    return [...this.#viewers].map((v) => ({
      readOnly: v.readOnly,
      owner: v === this.#owner,
      behind: Math.max(0, this.#head - Math.max(v.position, this.#oldest())),
      self: v === self,
    }));
  }

  /** The next bytes for `viewer`, null at the end; throws the session's error once the ring is drained. */
  async next(viewer: ShellViewer): Promise<Uint8Array | null> {
    while (true) {
      if (viewer.left) throw viewer.left;
      const chunk = this.#at(viewer);
      if (chunk) return chunk;
      if (this.#end) {
        if (this.#end.error) throw this.#end.error;
        return null;
      }
      const changed = this.#changed.promise;
      this.#pump();
      await changed;
    }
  }

  /** The viewer's output was cancelled: it no longer paces anything; with nobody reading, the stream ends. */
  stopReading(viewer: ShellViewer): void {
    viewer.reading = false;
    this.#checkReaders();
  }

  /** Type into the terminal (in call order across viewers). */
  write(bytes: Uint8Array): Promise<void> {
    const input = this.session.input;
    if (!input) return Promise.reject(new TypeError(`Shell ${this.session.id} has no input`));
    const done = this.#writes.then(() => input.write(bytes));
    this.#writes = done.catch(() => {});
    return done;
  }

  /** Resize on behalf of `viewer`, which becomes the owner; the others are told. */
  async resize(viewer: ShellViewer, cols: number, rows: number): Promise<void> {
    this.#owner = viewer;
    await this.#resize(cols, rows);
    this.#size = { cols, rows };
    for (const other of this.#viewers) {
      if (other !== viewer) other.onResize?.({ cols, rows });
    }
  }

  /** The viewer leaves; the last member detaches the session from the daemon (it keeps running there). */
  async leave(viewer: ShellViewer, reason: Error): Promise<void> {
    if (!this.#viewers.delete(viewer)) return;
    viewer.left = reason;
    if (this.#owner === viewer) this.#owner = null;
    this.#wake();
    if (this.#viewers.size === 0) {
      this.#goneNow();
      await this.session.detach();
    } else {
      this.#checkReaders();
    }
  }

  #oldest(): number {
    return this.#chunks[this.#first]?.offset ?? this.#head;
  }

  /** The bytes at the viewer's position, reporting what it skipped; null when it has read everything held. */
  #at(viewer: ShellViewer): Uint8Array | null {
    if (viewer.fromOldest) {
      viewer.fromOldest = false;
      const oldest = this.#oldest();
      if (oldest > viewer.position) viewer.gap(oldest);
    }
    const chunks = this.#chunks;
    let lo = this.#first;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = chunks[mid]!;
      if (c.offset + c.bytes.length <= viewer.position) lo = mid + 1;
      else hi = mid;
    }
    const chunk = chunks[lo];
    if (!chunk) {
      // Everything held is read; at the end, what the daemon skipped last is a gap too.
      if (this.#end && viewer.position < this.#head) viewer.gap(this.#head);
      return null;
    }
    if (chunk.offset > viewer.position) viewer.gap(chunk.offset);
    const bytes = chunk.bytes.subarray(viewer.position - chunk.offset);
    viewer.position = chunk.offset + chunk.bytes.length;
    return bytes;
  }

  /** Ask the session for one more chunk, unless a read is under way or the output is over. */
  #pump(): void {
    if (this.#reading || this.#end) return;
    this.#reading = true;
    this.#reader ??= this.session.stdout.getReader();
    this.#reader.read().then(({ done, value }) => {
      this.#reading = false;
      if (done) this.#finish(null);
      else this.#append(value);
    }, (error: Error) => {
      this.#reading = false;
      this.#finish(error);
    });
  }

  /** Apply the daemon's gaps that start at or before the head. */
  #applyGaps(): void {
    const feed = this.#gapFeed;
    while (feed.length > 0 && feed[0]!.from <= this.#head) {
      this.#head = Math.max(this.#head, feed.shift()!.to);
    }
  }

  #append(bytes: Uint8Array): void {
    this.#applyGaps();
    this.#chunks.push({ offset: this.#head, bytes });
    this.#head += bytes.length;
    this.#held += bytes.length;
    // Keep at most the ring's bytes (always the newest chunk).
    while (this.#held > this.#ringBytes && this.#chunks.length - this.#first > 1) {
      this.#held -= this.#chunks[this.#first]!.bytes.length;
      this.#chunks[this.#first++] = undefined as unknown as Chunk;
    }
    if (this.#first > 1024 && this.#first * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#first);
      this.#first = 0;
    }
    this.#wake();
  }

  #finish(error: Error | null): void {
    if (this.#end) return;
    this.#applyGaps();
    for (const gap of this.#gapFeed.splice(0)) this.#head = Math.max(this.#head, gap.to);
    this.#end = { error };
    this.#goneNow();
    this.#wake();
  }

  /** Nobody reads the output any more: end the stream (the daemon then reads on without us). */
  #checkReaders(): void {
    for (const v of this.#viewers) if (v.reading) return;
    if (this.#end) return;
    this.#goneNow();
    const stream = this.#reader ?? this.session.stdout;
    stream.cancel().catch(() => {});
    this.#finish(null);
  }

  #wake(): void {
    const changed = this.#changed;
    this.#changed = Promise.withResolvers<void>();
    changed.resolve();
  }

  /** Stop offering this hub to new viewers. */
  #goneNow(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#onGone(this);
  }
}

/** The hubs of this controller, by daemon and session id. */
export class ShellHubs {
  readonly #hubs = new Map<string, ShellHub>();

  /** The live hub of a session, if this controller follows it. */
  get(daemonId: string, shellId: string): ShellHub | undefined {
    return this.#hubs.get(`${daemonId}\0${shellId}`);
  }

  /** Make the hub of a session just started or attached. */
  open(init: {
    session: ProcessSession;
    resize: (cols: number, rows: number) => Promise<void>;
    ringBytes: number;
    gapFeed: Gap[];
    from: number | null;
    size: TerminalSize | null;
  }): ShellHub {
    const key = `${init.session.daemonId}\0${init.session.id}`;
    const hub = new ShellHub({
      ...init,
      onGone: (gone) => {
        if (this.#hubs.get(key) === gone) this.#hubs.delete(key);
      },
    });
    this.#hubs.set(key, hub);
    return hub;
  }
}
