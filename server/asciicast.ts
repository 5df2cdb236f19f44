/**
 * Recording shell sessions as asciicast v2 files, playable with `asciinema play` and the asciinema web player.
 *
 * The file is a JSON header line followed by one JSON line per event: `[seconds, "o", text]` for output,
 * `[seconds, "i", text]` for input and `[seconds, "r", "COLSxROWS"]` for a resize.
 *
 * @module
 */

/**
 * Options for {@linkcode AsciicastWriter.open}.
 *
 * @example An 80x24 recording with a title
 * ```ts
 * import type { AsciicastOptions } from "./asciicast.ts";
 * const options: AsciicastOptions = { cols: 80, rows: 24, title: "worker-1: bash" };
 * console.assert(options.cols === 80);
 * ```
 */
export interface AsciicastOptions {
  /** Terminal width in columns at the start. A positive integer. */
  cols: number;
  /** Terminal height in rows at the start. A positive integer. */
  rows: number;
  /** Title stored in the header. */
  title?: string;
  /** Environment stored in the header, usually `SHELL` and `TERM`. */
  env?: Record<string, string>;
  /**
   * Wall clock in milliseconds since the Unix epoch. Event times are differences of its readings; a reading
   * earlier than the previous one is treated as no time passing.
   *
   * @default {performance.timeOrigin + performance.now() (monotonic)}
   */
  now?: () => number;
}

const MAX_DIMENSION = 65_535;

function validateDimension(name: string, value: unknown): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_DIMENSION) {
    throw new RangeError(
      `Terminal ${name} must be an integer between 1 and ${MAX_DIMENSION}, got ${String(value)}`,
    );
  }
  return value as number;
}

function validateData(data: unknown): Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(`Recorded data must be a Uint8Array, got ${typeof data}`);
  }
  return data;
}

/**
 * Writes an asciicast v2 recording to a file. Bytes are decoded as UTF-8 with a streaming decoder per
 * direction, so a character split across chunks is recorded whole; invalid bytes become U+FFFD.
 *
 * Methods that record events return at once; lines are written in order in the background. A write error
 * stops the recording and is thrown by {@linkcode AsciicastWriter.prototype.close}. Events recorded after
 * `close()` are ignored.
 *
 * The file is created with mode `0o600`: recordings (input especially) can hold secrets.
 *
 * @example Record a short session
 * ```ts
 * import { AsciicastWriter } from "./asciicast.ts";
 * const path = await Deno.makeTempFile({ suffix: ".cast" });
 * const encoder = new TextEncoder();
 * {
 *   await using cast = await AsciicastWriter.open(path, { cols: 80, rows: 24 });
 *   cast.output(encoder.encode("$ "));
 *   cast.input(encoder.encode("ls\r"));
 *   cast.output(encoder.encode("ls\r\nREADME.md\r\n"));
 *   cast.resize(120, 40);
 * }
 * const [header, ...events] = (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
 * console.assert(header.version === 2 && header.width === 80);
 * console.assert(events.length === 4 && events[3][1] === "r" && events[3][2] === "120x40");
 * await Deno.remove(path);
 * ```
 */
export class AsciicastWriter implements AsyncDisposable {
  #file: Deno.FsFile;
  #now: () => number;
  #start: number;
  #last: number;
  #output = new TextDecoder("utf-8");
  #input = new TextDecoder("utf-8");
  #encoder = new TextEncoder();
  #queue: string[] = [];
  #writing: Promise<void> | undefined;
  #error: unknown;
  #failed = false;
  #closing: Promise<void> | undefined;

  private constructor(file: Deno.FsFile, now: () => number, start: number) {
    this.#file = file;
    this.#now = now;
    this.#start = start;
    this.#last = start;
  }

  /**
   * Create (or truncate) the file and write the header.
   *
   * @param path Where to write the recording.
   * @param options Initial size, title, environment and clock.
   * @returns The open writer; close or dispose it.
   * @throws {RangeError} If `cols` or `rows` is not an integer from 1 to 65535.
   * @throws {TypeError} If `path` is empty, or `title`, `env` or `now` has the wrong type.
   */
  static async open(path: string, options: AsciicastOptions): Promise<AsciicastWriter> {
    if (typeof path !== "string" || path.length === 0) {
      throw new TypeError(`Recording path must be a non-empty string, got ${JSON.stringify(path)}`);
    }
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`Asciicast options must be an object, got ${String(options)}`);
    }
    const width = validateDimension("cols", options.cols);
    const height = validateDimension("rows", options.rows);
    if (options.title !== undefined && typeof options.title !== "string") {
      throw new TypeError(`Option 'title' must be a string, got ${typeof options.title}`);
    }
    if (options.env !== undefined) {
      if (typeof options.env !== "object" || options.env === null || Array.isArray(options.env)) {
        throw new TypeError(
          `Option 'env' must be an object of strings, got ${String(options.env)}`,
        );
      }
      for (const [name, value] of Object.entries(options.env)) {
        if (typeof value !== "string") {
          throw new TypeError(`Option 'env.${name}' must be a string, got ${typeof value}`);
        }
      }
    }
    const now = options.now ?? (() => performance.timeOrigin + performance.now());
    if (typeof now !== "function") {
      throw new TypeError(`Option 'now' must be a function, got ${typeof now}`);
    }
    const start = now();
    if (!Number.isFinite(start)) {
      throw new RangeError(`Option 'now' must return a finite number, got ${start}`);
    }
    const header: Record<string, unknown> = {
      version: 2,
      width,
      height,
      timestamp: Math.floor(start / 1000),
    };
    if (options.title !== undefined) header.title = options.title;
    if (options.env !== undefined) header.env = { ...options.env };
    const file = await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      await writeAll(file, new TextEncoder().encode(`${JSON.stringify(header)}\n`));
    } catch (error) {
      file.close();
      throw error;
    }
    return new AsciicastWriter(file, now, start);
  }

  /**
   * Record bytes the terminal printed.
   *
   * @param data Raw output bytes.
   * @throws {TypeError} If `data` is not a Uint8Array.
   */
  output(data: Uint8Array): void {
    validateData(data);
    if (this.#closing !== undefined) return;
    this.#event("o", this.#output.decode(data, { stream: true }));
  }

  /**
   * Record bytes typed into the terminal.
   *
   * @param data Raw input bytes.
   * @throws {TypeError} If `data` is not a Uint8Array.
   */
  input(data: Uint8Array): void {
    validateData(data);
    if (this.#closing !== undefined) return;
    this.#event("i", this.#input.decode(data, { stream: true }));
  }

  /**
   * Record a change of terminal size.
   *
   * @param cols New width in columns.
   * @param rows New height in rows.
   * @throws {RangeError} If `cols` or `rows` is not an integer from 1 to 65535.
   */
  resize(cols: number, rows: number): void {
    validateDimension("cols", cols);
    validateDimension("rows", rows);
    if (this.#closing !== undefined) return;
    this.#event("r", `${cols}x${rows}`);
  }

  /**
   * Flush any incomplete character, write everything pending and close the file. Calling it again waits for
   * the first call.
   *
   * @returns A promise that resolves when the file is closed.
   * @throws The first error that writing the recording met, if any (the file is closed anyway).
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as {@linkcode AsciicastWriter.prototype.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<void> {
    this.#event("o", this.#output.decode());
    this.#event("i", this.#input.decode());
    try {
      await this.#writing;
    } finally {
      this.#file.close();
    }
    if (this.#failed) throw this.#error;
  }

  #event(type: "o" | "i" | "r", text: string): void {
    if (text.length === 0 || this.#failed) return;
    let now = this.#now();
    if (!(now > this.#last)) now = this.#last;
    this.#last = now;
    const seconds = Math.round((now - this.#start) * 1000) / 1_000_000;
    this.#queue.push(`${JSON.stringify([seconds, type, text])}\n`);
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#failed) {
        const lines = this.#queue.join("");
        this.#queue = [];
        await writeAll(this.#file, this.#encoder.encode(lines));
      }
    } catch (error) {
      this.#failed = true;
      this.#error = error;
      this.#queue = [];
    } finally {
      this.#writing = undefined;
    }
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}
