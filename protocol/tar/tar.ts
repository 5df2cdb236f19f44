/**
 * Streaming tar archives (POSIX ustar with PAX extended headers), with no file system access.
 *
 * {@linkcode TarWriter} turns entries into a byte stream with backpressure; {@linkcode readTar} turns a byte
 * stream back into entries whose bodies are streams. Memory use is constant in both directions: file bodies are
 * passed through chunk by chunk and never buffered whole, and no buffer is ever sized from an untrusted header
 * field except extended headers, which are bounded by {@linkcode ReadTarOptions.maxHeaderSize}.
 *
 * What is written:
 * - ustar headers, with a PAX extended header (`x`) when a value does not fit: paths and link targets over
 *   100 bytes (`path`, `linkpath`, plus `hdrcharset=BINARY` when they are not valid UTF-8), sizes of 8 GiB and
 *   more (`size`, with the ustar field in GNU base-256 as well), and mtimes that are negative, fractional or
 *   past 2242 (`mtime`).
 * - Owner fields are always uid/gid 0 with empty names: archives carry contents and modes, not ownership.
 *
 * What is read: ustar, PAX (`x`; global `g` headers are parsed and ignored), GNU long names (`L`, `K`),
 * GNU base-256 numbers, and old v7 headers. Hard links, devices, FIFOs and sparse files are not supported
 * and raise {@linkcode TarFormatError} unless {@linkcode ReadTarOptions.skipUnsupported} is set.
 *
 * @module
 */

/** The kind of an archive entry. */
export type TarEntryType = "file" | "directory" | "symlink";

/** The metadata of one archive entry. */
export interface TarEntryHeader {
  /**
   * Path of the entry inside the archive, `/`-separated. A string is encoded as UTF-8; bytes are kept as they
   * are, which carries names that are not valid UTF-8 (a string cannot: lone surrogates encode as U+FFFD). The reader returns a string whenever the stored bytes are
   * valid UTF-8, and the raw bytes otherwise. Directory paths are written with a trailing `/` and read without.
   */
  path: string | Uint8Array;
  /** Entry kind. */
  type: TarEntryType;
  /** Body length in bytes; must be 0 for directories and symlinks. */
  size: number;
  /** Permission bits, e.g. `0o644` (at most `0o7777777`). */
  mode: number;
  /** Modification time in seconds since the Unix epoch (may be fractional or negative). */
  mtime: number;
  /** Target of a symlink (required for `"symlink"`, not allowed otherwise). Same encoding rules as `path`. */
  linkTarget?: string | Uint8Array;
}

/** One entry read from an archive. */
export interface TarEntry {
  /** The entry's metadata. */
  header: TarEntryHeader;
  /**
   * Exactly `header.size` bytes of content. Consume or cancel it before asking for the next entry; if it is left
   * unread, asking for the next entry skips the rest and errors this stream.
   */
  body: ReadableStream<Uint8Array>;
}

/** Options for {@linkcode readTar}. */
export interface ReadTarOptions {
  /**
   * Largest extended header (PAX record block or GNU long name) accepted, in bytes. These are the only parts of
   * an archive that are buffered, so this bounds the memory a hostile archive can make the reader allocate.
   *
   * @default {1048576}
   */
  maxHeaderSize?: number;
  /**
   * Skip entries of kinds this module does not represent (hard links, devices, FIFOs, sparse files) instead of
   * failing with {@linkcode TarFormatError}.
   *
   * @default {false}
   */
  skipUnsupported?: boolean;
  /** Abort reading: the source stream is cancelled and the iterator rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * The bytes are not a well-formed tar archive: a header checksum does not match, a number field is not a
 * number, a size is out of range, an extended header is malformed or too large, the archive ends before its
 * end-of-archive marker, or an entry is of a kind that is not supported.
 *
 * @example Catch a format error
 * ```ts
 * import { strict as assert } from "node:assert";
 * import { readTar, TarFormatError } from "./tar.ts";
 * const garbage = ReadableStream.from([new Uint8Array(512).fill(7)]);
 * try {
 *   for await (const entry of readTar(garbage)) await entry.body.cancel();
 *   assert(false, "not reached");
 * } catch (error) {
 *   assert(error instanceof TarFormatError && error.code === "TAR_FORMAT");
 * }
 * ```
 */
export class TarFormatError extends Error {
  /** Stable error code. */
  readonly code: "TAR_FORMAT" = "TAR_FORMAT";
  /**
   * Make a tar format error.
   *
   * @param message What was wrong, with the offending value.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TarFormatError";
  }
}

const BLOCK = 512;
const USTAR_MAX_NUMBER = 0o77777777777; // 11 octal digits: 8 GiB - 1
const MAX_MODE = 0o7777777;
/** Bodies up to this size given as bytes are written as one chunk together with their header. */
const COALESCE_LIMIT = 64 * 1024;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function isValidUtf8(bytes: Uint8Array): boolean {
  try {
    strictDecoder.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function decodeName(bytes: Uint8Array): string | Uint8Array {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return bytes.slice();
  }
}

function describe(value: string | Uint8Array): string {
  return typeof value === "string" ? JSON.stringify(value) : `<${value.length} bytes>`;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

function nameBytes(value: unknown, field: string): Uint8Array {
  let bytes: Uint8Array;
  if (typeof value === "string") bytes = encoder.encode(value);
  else if (value instanceof Uint8Array) bytes = value;
  else {
    throw new TypeError(
      `Tar header field '${field}' must be a string or Uint8Array, got ${typeof value}`,
    );
  }
  if (bytes.length === 0) throw new TypeError(`Tar header field '${field}' must not be empty`);
  if (bytes.includes(0)) {
    throw new TypeError(
      `Tar header field '${field}' must not contain NUL bytes, got ${describe(value as string)}`,
    );
  }
  return bytes;
}

function writeOctal(block: Uint8Array, offset: number, width: number, value: number): void {
  const digits = value.toString(8).padStart(width - 1, "0");
  block.set(encoder.encode(digits), offset);
  block[offset + width - 1] = 0;
}

function writeBase256(block: Uint8Array, offset: number, width: number, value: number): void {
  let rest = BigInt(value);
  for (let i = offset + width - 1; i > offset; i--) {
    block[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  block[offset] = 0x80;
}

function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const keyBytes = encoder.encode(key);
  // "<length> <key>=<value>\n", where <length> counts itself.
  const base = 1 + keyBytes.length + 1 + value.length + 1;
  let digits = 1;
  while (String(base + digits).length > digits) digits++;
  return concat([
    encoder.encode(`${base + digits} ${key}=`),
    value,
    new Uint8Array([0x0a]),
  ]);
}

function formatSeconds(value: number): string {
  if (Number.isInteger(value)) return BigInt(value).toString();
  return value.toFixed(9).replace(/0+$/, "");
}

const TYPEFLAG: Record<TarEntryType, number> = { file: 0x30, directory: 0x35, symlink: 0x32 };

/** Validates a header and encodes its header blocks (PAX extended header first when needed). */
function encodeHeader(header: TarEntryHeader): Uint8Array {
  if (typeof header !== "object" || header === null) {
    throw new TypeError(
      `Tar header must be an object, got ${header === null ? "null" : typeof header}`,
    );
  }
  const { type, size, mode, mtime } = header;
  if (type !== "file" && type !== "directory" && type !== "symlink") {
    throw new TypeError(
      `Tar entry type must be "file", "directory" or "symlink", got ${JSON.stringify(type)}`,
    );
  }
  let path = nameBytes(header.path, "path");
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`Tar entry size must be a non-negative safe integer, got ${size}`);
  }
  if (type !== "file" && size !== 0) {
    throw new RangeError(`Tar entry size must be 0 for a ${type}, got ${size}`);
  }
  if (!Number.isInteger(mode) || mode < 0 || mode > MAX_MODE) {
    throw new RangeError(`Tar entry mode must be an integer from 0 to 0o7777777, got ${mode}`);
  }
  if (!Number.isFinite(mtime)) {
    throw new RangeError(`Tar entry mtime must be a finite number of seconds, got ${mtime}`);
  }
  let link: Uint8Array | undefined;
  if (type === "symlink") {
    link = nameBytes(header.linkTarget, "linkTarget");
  } else if (header.linkTarget !== undefined) {
    throw new TypeError(
      `Tar header field 'linkTarget' is only allowed for symlinks, not a ${type}`,
    );
  }
  if (type === "directory" && path[path.length - 1] !== 0x2f) {
    path = concat([path, new Uint8Array([0x2f])]);
  }

  const records: Uint8Array[] = [];
  let binary = false;
  if (path.length > 100) {
    records.push(paxRecord("path", path));
    binary ||= !isValidUtf8(path);
  }
  if (link !== undefined && link.length > 100) {
    records.push(paxRecord("linkpath", link));
    binary ||= !isValidUtf8(link);
  }
  if (size > USTAR_MAX_NUMBER) records.push(paxRecord("size", encoder.encode(String(size))));
  const integralMtime = Number.isInteger(mtime) && mtime >= 0 && mtime <= USTAR_MAX_NUMBER;
  if (!integralMtime) records.push(paxRecord("mtime", encoder.encode(formatSeconds(mtime))));
  if (binary) records.unshift(paxRecord("hdrcharset", encoder.encode("BINARY")));

  const block = ustarBlock(
    path.subarray(0, 100),
    mode,
    size,
    integralMtime ? mtime : Math.min(Math.max(Math.trunc(mtime), 0), USTAR_MAX_NUMBER),
    TYPEFLAG[type],
    link?.subarray(0, 100),
  );
  if (records.length === 0) return block;
  const pax = concat(records);
  const paxHeader = ustarBlock(encoder.encode("PaxHeader"), 0o644, pax.length, 0, 0x78, undefined);
  return concat([paxHeader, pax, new Uint8Array(padding(pax.length)), block]);
}

function ustarBlock(
  name: Uint8Array,
  mode: number,
  size: number,
  mtime: number,
  typeflag: number,
  link: Uint8Array | undefined,
): Uint8Array {
  const block = new Uint8Array(BLOCK);
  block.set(name, 0);
  writeOctal(block, 100, 8, mode);
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  if (size > USTAR_MAX_NUMBER) writeBase256(block, 124, 12, size);
  else writeOctal(block, 124, 12, size);
  writeOctal(block, 136, 12, mtime);
  block.fill(0x20, 148, 156);
  block[156] = typeflag;
  if (link !== undefined) block.set(link, 157);
  block.set(encoder.encode("ustar\u000000"), 257);
  writeOctal(block, 329, 8, 0); // devmajor
  writeOctal(block, 337, 8, 0); // devminor
  let sum = 0;
  for (const byte of block) sum += byte;
  writeOctal(block, 148, 7, sum);
  block[155] = 0x20;
  return block;
}

/**
 * Writes a tar archive as a byte stream. Entries are written one after another in the order
 * {@linkcode TarWriter.addEntry} is called; each call resolves once its bytes have been taken by the consumer
 * of {@linkcode TarWriter.readable}, so a producer that awaits it never runs ahead of the consumer.
 *
 * Read {@linkcode TarWriter.readable} concurrently with adding entries: with nobody reading, `addEntry` waits.
 *
 * @example Write an archive with a directory and a file
 * ```ts
 * import { strict as assert } from "node:assert";
 * import { TarWriter } from "./tar.ts";
 * const writer = new TarWriter();
 * const archive = new Response(writer.readable).bytes(); // start consuming first
 * await writer.addEntry({ path: "docs", type: "directory", size: 0, mode: 0o755, mtime: 0 });
 * const text = new TextEncoder().encode("hello\n");
 * await writer.addEntry({ path: "docs/a.txt", type: "file", size: text.length, mode: 0o644, mtime: 0 }, text);
 * await writer.close();
 * assert((await archive).length === 5 * 512);
 * ```
 */
export class TarWriter {
  /** The archive bytes. */
  readonly readable: ReadableStream<Uint8Array>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #tail: Promise<void> = Promise.resolve();
  #closing: Promise<void> | undefined;
  #aborted = false;

  /** Make a writer with an empty archive. */
  constructor() {
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>(
      undefined,
      { highWaterMark: 1 },
      { highWaterMark: 0 },
    );
    this.readable = readable;
    this.#writer = writable.getWriter();
  }

  /**
   * Append one entry. The header is validated before anything is written: an invalid header rejects with a
   * `TypeError` or `RangeError` and leaves the archive usable. A body whose length turns out not to match
   * `header.size`, a body stream that errors, or a cancelled {@linkcode TarWriter.readable} rejects and aborts
   * the archive (the readable errors, later calls reject).
   *
   * @param header The entry's metadata.
   * @param body The content of a file entry, exactly `header.size` bytes; omit it for other entries and for
   * empty files. A stream body is read as it is written, and cancelled if writing fails. Body bytes are passed
   * to the consumer without copying: do not modify them until this call resolves.
   * @returns A promise that resolves when the entry has been written.
   *
   * @example Stream a file body
   * ```ts
   * import { strict as assert } from "node:assert";
   * import { TarWriter } from "./tar.ts";
   * const writer = new TarWriter();
   * const archive = new Response(writer.readable).bytes();
   * const body = ReadableStream.from([new Uint8Array(300), new Uint8Array(300)]);
   * await writer.addEntry({ path: "zeros", type: "file", size: 600, mode: 0o600, mtime: 0 }, body);
   * await writer.close();
   * assert((await archive).length === 512 + 1024 + 1024);
   * ```
   */
  addEntry(header: TarEntryHeader, body?: ReadableStream<Uint8Array> | Uint8Array): Promise<void> {
    if (this.#closing !== undefined || this.#aborted) {
      return Promise.reject(
        new TypeError("Cannot add an entry to a tar archive that is closed or aborted"),
      );
    }
    let encoded: Uint8Array;
    try {
      encoded = encodeHeader(header);
      if (
        body !== undefined && !(body instanceof Uint8Array) && !(body instanceof ReadableStream)
      ) {
        throw new TypeError(
          `Tar entry body must be a Uint8Array or ReadableStream, got ${typeof body}`,
        );
      }
      if (body !== undefined && header.type !== "file") {
        throw new TypeError(`Tar entry body is only allowed for files, not a ${header.type}`);
      }
      if (body === undefined && header.size !== 0) {
        throw new TypeError(`Tar entry body is missing for a file of ${header.size} bytes`);
      }
      if (body instanceof Uint8Array && body.length !== header.size) {
        throw new RangeError(
          `Tar entry body is ${body.length} bytes but the header size is ${header.size}`,
        );
      }
    } catch (error) {
      if (body instanceof ReadableStream) body.cancel(error).catch(() => {});
      return Promise.reject(error);
    }
    const run = this.#tail.then(() => this.#write(encoded, header.size, body));
    this.#tail = run.catch(() => {});
    return run;
  }

  /**
   * Finish the archive: after the entries already added, write the end-of-archive marker (two zero blocks) and
   * close {@linkcode TarWriter.readable}. Calling it again returns the same promise.
   *
   * @returns A promise that resolves when the archive has been closed.
   *
   * @example Close an empty archive
   * ```ts
   * import { strict as assert } from "node:assert";
   * import { TarWriter } from "./tar.ts";
   * const writer = new TarWriter();
   * const archive = new Response(writer.readable).bytes();
   * await writer.close();
   * assert((await archive).length === 1024);
   * ```
   */
  close(): Promise<void> {
    this.#closing ??= this.#tail.then(async () => {
      try {
        await this.#writer.write(new Uint8Array(2 * BLOCK));
      } catch (error) {
        throw await this.#fail(error);
      }
      // The archive is complete once the end marker has been taken; a consumer that cancels right after it
      // (having seen the end) does not make the archive a failure.
      await this.#writer.close().catch(() => {});
    });
    return this.#closing;
  }

  /**
   * Abandon the archive: {@linkcode TarWriter.readable} errors with `reason` (so a consumer never mistakes a
   * partial archive for a whole one) and pending and later calls reject. Never rejects itself.
   *
   * @param reason Why the archive was abandoned.
   * @returns A promise that resolves once the stream has been errored.
   *
   * @example Abort an archive
   * ```ts
   * import { strict as assert } from "node:assert";
   * import { TarWriter } from "./tar.ts";
   * const writer = new TarWriter();
   * const reading = new Response(writer.readable).bytes();
   * await writer.abort(new Error("source went away"));
   * await reading.then(() => assert(false), (error) => assert(error.message === "source went away"));
   * ```
   */
  async abort(reason?: unknown): Promise<void> {
    this.#aborted = true;
    await this.#writer.abort(reason).catch(() => {});
  }

  async #fail(error: unknown): Promise<unknown> {
    const reason = error ?? new TypeError("The tar archive stream was cancelled");
    await this.abort(reason);
    return reason;
  }

  async #write(
    header: Uint8Array,
    size: number,
    body: ReadableStream<Uint8Array> | Uint8Array | undefined,
  ): Promise<void> {
    const pad = padding(size);
    try {
      if (body === undefined || (body instanceof Uint8Array && size <= COALESCE_LIMIT)) {
        await this.#writer.write(concat([header, body ?? new Uint8Array(), new Uint8Array(pad)]));
        return;
      }
      await this.#writer.write(header);
      if (body instanceof Uint8Array) {
        await this.#writer.write(body);
      } else {
        await this.#pipeBody(body, size);
      }
      if (pad > 0) await this.#writer.write(new Uint8Array(pad));
    } catch (error) {
      if (body instanceof ReadableStream) await body.cancel(error).catch(() => {});
      throw await this.#fail(error);
    }
  }

  async #pipeBody(body: ReadableStream<Uint8Array>, size: number): Promise<void> {
    const reader = body.getReader();
    let written = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!(value instanceof Uint8Array)) {
          throw new TypeError(`Tar entry body chunks must be Uint8Array, got ${typeof value}`);
        }
        if (value.length === 0) continue;
        if (written + value.length > size) {
          throw new RangeError(`Tar entry body is longer than the header size of ${size} bytes`);
        }
        written += value.length;
        await this.#writer.write(value);
      }
      if (written !== size) {
        throw new RangeError(`Tar entry body is ${written} bytes but the header size is ${size}`);
      }
    } catch (error) {
      await reader.cancel(error).catch(() => {});
      throw error;
    } finally {
      reader.releaseLock();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/** Pulls bytes from a stream, handing out views of the source chunks where it can. */
class ByteSource {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #signal: AbortSignal | undefined;
  #buffer: Uint8Array = new Uint8Array();
  #ended = false;
  /** Bytes handed out so far, for error messages. */
  offset = 0;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>, signal: AbortSignal | undefined) {
    this.#reader = reader;
    this.#signal = signal;
  }

  async #fill(): Promise<boolean> {
    while (this.#buffer.length === 0) {
      if (this.#ended) return false;
      this.#signal?.throwIfAborted();
      const { done, value } = await this.#reader.read();
      this.#signal?.throwIfAborted();
      if (done) {
        this.#ended = true;
        return false;
      }
      if (!(value instanceof Uint8Array)) {
        throw new TypeError(`Tar stream chunks must be Uint8Array, got ${typeof value}`);
      }
      this.#buffer = value;
    }
    return true;
  }

  /** Up to `max` bytes (a view, not a copy), or null at the end of the stream. */
  async chunk(max: number): Promise<Uint8Array | null> {
    if (!await this.#fill()) return null;
    const out = this.#buffer.subarray(0, max);
    this.#buffer = this.#buffer.subarray(out.length);
    this.offset += out.length;
    return out;
  }

  /** Exactly `n` bytes (a copy), or null if the stream ended before the first byte. */
  async exact(n: number, what: string): Promise<Uint8Array | null> {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const part = await this.chunk(n - filled);
      if (part === null) {
        if (filled === 0) return null;
        throw truncated(what, this.offset);
      }
      out.set(part, filled);
      filled += part.length;
    }
    return out;
  }

  async skip(n: number, what: string): Promise<void> {
    while (n > 0) {
      const part = await this.chunk(n);
      if (part === null) throw truncated(what, this.offset);
      n -= part.length;
    }
  }

  /** Reads what follows the end-of-archive marker, up to a bound, so the writer can finish cleanly. */
  async drain(limit: number): Promise<void> {
    let seen = 0;
    while (seen <= limit && await this.#fill()) {
      seen += this.#buffer.length;
      this.#buffer = new Uint8Array();
    }
  }
}

function truncated(what: string, offset: number): TarFormatError {
  return new TarFormatError(`Tar archive is truncated: it ends at byte ${offset}, inside ${what}`);
}

function fieldEnd(block: Uint8Array, start: number, width: number): number {
  const nul = block.subarray(start, start + width).indexOf(0);
  return nul === -1 ? start + width : start + nul;
}

function parseNumber(block: Uint8Array, start: number, width: number, field: string): number {
  const first = block[start]!;
  if (first & 0x80) {
    if (first !== 0x80) {
      throw new TarFormatError(
        `Tar header field '${field}' is a negative or oversized base-256 number`,
      );
    }
    let value = 0;
    for (let i = start + 1; i < start + width; i++) {
      value = value * 256 + block[i]!;
      if (value > Number.MAX_SAFE_INTEGER) {
        throw new TarFormatError(
          `Tar header field '${field}' is larger than ${Number.MAX_SAFE_INTEGER}`,
        );
      }
    }
    return value;
  }
  let i = start;
  const end = start + width;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const byte = block[i]!;
    if (byte === 0 || byte === 0x20) break;
    if (byte < 0x30 || byte > 0x37) {
      const text = new TextDecoder().decode(block.subarray(start, end));
      throw new TarFormatError(
        `Tar header field '${field}' is not an octal number: ${JSON.stringify(text)}`,
      );
    }
    value = value * 8 + (byte - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    if (block[i] !== 0 && block[i] !== 0x20) {
      throw new TarFormatError(`Tar header field '${field}' has bytes after its number`);
    }
  }
  return digits === 0 ? 0 : value;
}

function verifyChecksum(block: Uint8Array, offset: number): void {
  let stored: number;
  try {
    stored = parseNumber(block, 148, 8, "chksum");
  } catch (cause) {
    throw new TarFormatError(
      `Tar header checksum field at byte ${offset} is not a number (not a tar header?)`,
      {
        cause,
      },
    );
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new TarFormatError(
      `Tar header checksum mismatch at byte ${offset}: stored ${stored}, computed ${unsigned}`,
    );
  }
}

function isZeroBlock(block: Uint8Array): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}

function parsePax(data: Uint8Array, records: Map<string, Uint8Array>): void {
  const keyDecoder = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // Some writers pad the record block with NULs.
    let i = pos;
    let length = 0;
    while (i < data.length && data[i]! >= 0x30 && data[i]! <= 0x39 && i - pos < 16) {
      length = length * 10 + (data[i]! - 0x30);
      i++;
    }
    const end = pos + length;
    if (
      i === pos || data[i] !== 0x20 || length < i - pos + 4 || end > data.length ||
      data[end - 1] !== 0x0a
    ) {
      throw new TarFormatError(`Tar PAX extended header has a malformed record at offset ${pos}`);
    }
    const equals = data.subarray(i + 1, end - 1).indexOf(0x3d);
    if (equals <= 0) {
      throw new TarFormatError(
        `Tar PAX extended header has a record without a key at offset ${pos}`,
      );
    }
    let key: string;
    try {
      key = keyDecoder.decode(data.subarray(i + 1, i + 1 + equals));
    } catch (cause) {
      throw new TarFormatError(`Tar PAX extended header has a key that is not UTF-8`, { cause });
    }
    const value = data.slice(i + 2 + equals, end - 1);
    if (value.length === 0) records.delete(key);
    else records.set(key, value);
    pos = end;
  }
}

function paxInteger(value: Uint8Array, key: string): number {
  const text = new TextDecoder().decode(value);
  if (!/^[0-9]{1,16}$/.test(text) || Number(text) > Number.MAX_SAFE_INTEGER) {
    throw new TarFormatError(
      `Tar PAX record '${key}' is not a valid size: ${JSON.stringify(text)}`,
    );
  }
  return Number(text);
}

function paxSeconds(value: Uint8Array, key: string): number {
  const text = new TextDecoder().decode(value);
  if (!/^-?[0-9]{1,16}(\.[0-9]{0,20})?$/.test(text)) {
    throw new TarFormatError(
      `Tar PAX record '${key}' is not a valid time: ${JSON.stringify(text)}`,
    );
  }
  return Number(text);
}

function stripTrailingSlashes(path: Uint8Array): Uint8Array {
  let end = path.length;
  while (end > 1 && path[end - 1] === 0x2f) end--;
  return path.subarray(0, end);
}

function trimNul(data: Uint8Array): Uint8Array {
  const nul = data.indexOf(0);
  return nul === -1 ? data : data.subarray(0, nul);
}

const UNSUPPORTED: Record<string, string> = {
  "1": "hard link",
  "3": "character device",
  "4": "block device",
  "6": "FIFO",
  "S": "GNU sparse file",
  "V": "GNU volume label",
  "M": "GNU multi-volume continuation",
  "N": "GNU old long name",
  "D": "GNU dump directory",
};

/**
 * Read a tar archive entry by entry. Each entry's body streams straight from `stream`; nothing is buffered
 * beyond one header block and, when present, one extended header. On any format problem the iterator rejects
 * with {@linkcode TarFormatError}; on an error, an early `break` or `return`, the source stream is cancelled.
 * After the end-of-archive marker, trailing data (such as GNU tar's record padding) is read until the stream
 * ends, up to 64 KiB, and anything beyond is cancelled; so the iterator finishes when the source ends, which
 * lets a writer on the other side finish cleanly.
 *
 * A bare single zero block at the very end is accepted as the end marker (some writers emit only one); an
 * archive that ends anywhere else, including right after an entry, is truncated and rejected.
 *
 * @param stream The archive bytes.
 * @param options Limits and an abort signal.
 * @returns The entries, in archive order.
 *
 * @example Read back what a TarWriter wrote
 * ```ts
 * import { strict as assert } from "node:assert";
 * import { readTar, TarWriter } from "./tar.ts";
 * const writer = new TarWriter();
 * const entries = (async () => {
 *   const names: string[] = [];
 *   for await (const entry of readTar(writer.readable)) {
 *     names.push(`${entry.header.path}: ${await new Response(entry.body).text()}`);
 *   }
 *   return names;
 * })();
 * const body = new TextEncoder().encode("hi");
 * await writer.addEntry({ path: "a.txt", type: "file", size: 2, mode: 0o644, mtime: 0 }, body);
 * await writer.close();
 * assert((await entries)[0] === "a.txt: hi");
 * ```
 */
export function readTar(
  stream: ReadableStream<Uint8Array>,
  options: ReadTarOptions = {},
): AsyncIterableIterator<TarEntry> {
  if (!(stream instanceof ReadableStream)) {
    throw new TypeError(`Tar input must be a ReadableStream, got ${typeof stream}`);
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Tar read options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  const { maxHeaderSize = 1024 * 1024, skipUnsupported = false, signal } = options;
  if (!Number.isSafeInteger(maxHeaderSize) || maxHeaderSize < BLOCK) {
    throw new RangeError(
      `Option 'maxHeaderSize' must be an integer of at least 512, got ${maxHeaderSize}`,
    );
  }
  if (typeof skipUnsupported !== "boolean") {
    throw new TypeError(
      `Option 'skipUnsupported' must be a boolean, got ${typeof skipUnsupported}`,
    );
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`Option 'signal' must be an AbortSignal, got ${typeof signal}`);
  }
  return entries(stream, maxHeaderSize, skipUnsupported, signal);
}

async function* entries(
  stream: ReadableStream<Uint8Array>,
  maxHeaderSize: number,
  skipUnsupported: boolean,
  signal: AbortSignal | undefined,
): AsyncGenerator<TarEntry, void, undefined> {
  const reader = stream.getReader();
  const source = new ByteSource(reader, signal);
  const onAbort = () => reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  let finished = false;
  let failure: unknown;
  /** The body of the entry last yielded, while it may still be open. */
  let current:
    | {
      controller: ReadableStreamDefaultController<Uint8Array>;
      remaining: number;
      open: boolean;
      pulling: Promise<void> | undefined;
      error: unknown;
    }
    | undefined;

  async function readExtended(size: number, what: string): Promise<Uint8Array> {
    if (size > maxHeaderSize) {
      throw new TarFormatError(
        `Tar ${what} is ${size} bytes, more than the limit of ${maxHeaderSize}`,
      );
    }
    const data = await source.exact(size, what) ?? (size === 0 ? new Uint8Array() : null);
    if (data === null) throw truncated(what, source.offset);
    await source.skip(padding(size), what);
    return data;
  }

  try {
    let pax = new Map<string, Uint8Array>();
    let longName: Uint8Array | undefined;
    let longLink: Uint8Array | undefined;
    for (;;) {
      const headerOffset = source.offset;
      const block = await source.exact(BLOCK, "a header");
      if (block === null) {
        throw new TarFormatError(
          `Tar archive is truncated: it ends at byte ${headerOffset} without an end-of-archive marker`,
        );
      }
      if (isZeroBlock(block)) {
        if (pax.size > 0 || longName !== undefined || longLink !== undefined) {
          throw new TarFormatError(
            `Tar extended header at byte ${headerOffset} is not followed by an entry`,
          );
        }
        const second = await source.exact(BLOCK, "the end-of-archive marker");
        if (second !== null && !isZeroBlock(second)) {
          throw new TarFormatError(
            `Tar archive has data after a zero block at byte ${headerOffset}`,
          );
        }
        await source.drain(64 * 1024);
        finished = true;
        return;
      }
      verifyChecksum(block, headerOffset);
      const typeflag = String.fromCharCode(block[156]!);
      let size = parseNumber(block, 124, 12, "size");
      const magic = block.subarray(257, 263);
      const posix = magic.every((byte, i) => byte === "ustar\0".charCodeAt(i));

      if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
        const what = typeflag === "L" || typeflag === "K"
          ? "a GNU long name"
          : "a PAX extended header";
        const data = await readExtended(size, what);
        if (typeflag === "x") parsePax(data, pax);
        else if (typeflag === "g") parsePax(data, new Map());
        else if (typeflag === "L") longName = trimNul(data);
        else longLink = trimNul(data);
        continue;
      }

      let path = longName ?? trimNul(block.subarray(0, 100));
      if (longName === undefined && posix) {
        const prefix = block.subarray(345, fieldEnd(block, 345, 155));
        if (prefix.length > 0) path = concat([prefix, new Uint8Array([0x2f]), path]);
      }
      let link = longLink ?? block.subarray(157, fieldEnd(block, 157, 100));
      let mtime = parseNumber(block, 136, 12, "mtime");
      const mode = parseNumber(block, 100, 8, "mode");
      path = pax.get("path") ?? path;
      link = pax.get("linkpath") ?? link;
      const paxSize = pax.get("size");
      if (paxSize !== undefined) size = paxInteger(paxSize, "size");
      const paxMtime = pax.get("mtime");
      if (paxMtime !== undefined) mtime = paxSeconds(paxMtime, "mtime");
      const sparse = [...pax.keys()].some((key) => key.startsWith("GNU.sparse."));
      pax = new Map();
      longName = undefined;
      longLink = undefined;

      let type: TarEntryType | undefined;
      if (typeflag === "5") type = "directory";
      else if (typeflag === "2") type = "symlink";
      else if (typeflag === "0" || typeflag === "\0" || typeflag === "7") {
        type = path[path.length - 1] === 0x2f ? "directory" : "file";
      }
      if (type === undefined || sparse) {
        if (!skipUnsupported) {
          const kind = sparse ? "GNU sparse file" : UNSUPPORTED[typeflag] ?? "unknown entry type";
          throw new TarFormatError(
            `Tar entry at byte ${headerOffset} is a ${kind} (type '${typeflag}'), which is not supported`,
          );
        }
        await source.skip(size + padding(size), "a skipped entry");
        continue;
      }
      if (path.length === 0) {
        throw new TarFormatError(`Tar entry at byte ${headerOffset} has an empty path`);
      }
      if (type === "directory") path = stripTrailingSlashes(path);
      const header: TarEntryHeader = { path: decodeName(path), type, size, mode, mtime };
      if (type === "symlink") header.linkTarget = decodeName(link);

      const state: NonNullable<typeof current> = {
        controller: undefined as unknown as ReadableStreamDefaultController<Uint8Array>,
        remaining: size,
        open: true,
        pulling: undefined,
        error: undefined,
      };
      const pull = async (): Promise<void> => {
        if (state.remaining === 0) {
          state.open = false;
          state.controller.close();
          return;
        }
        try {
          const part = await source.chunk(state.remaining);
          if (part === null) throw truncated("an entry body", source.offset);
          state.remaining -= part.length;
          state.controller.enqueue(part);
          if (state.remaining === 0) {
            state.open = false;
            state.controller.close();
          }
        } catch (error) {
          state.error = error;
          state.open = false;
          throw error;
        }
      };
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          state.controller = controller;
          if (size === 0) {
            state.open = false;
            controller.close();
          }
        },
        pull() {
          state.pulling = pull();
          return state.pulling;
        },
        cancel() {
          state.open = false;
        },
      }, { highWaterMark: 0 });
      current = state;
      yield { header, body };
      current = undefined;
      await state.pulling?.catch(() => {});
      if (state.error !== undefined) throw state.error;
      if (state.open) {
        state.open = false;
        state.controller.error(
          new TypeError("Tar entry body was not read before the next entry was requested"),
        );
      }
      await source.skip(state.remaining + padding(size), "an entry body");
    }
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (current?.open) {
      current.open = false;
      current.controller.error(
        failure ?? new TypeError("Tar reading stopped before this entry's body was read"),
      );
    }
    if (finished) {
      await reader.cancel().catch(() => {});
    } else {
      await reader.cancel(failure).catch(() => {});
    }
    reader.releaseLock();
  }
}
