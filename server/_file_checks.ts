// The argument checks and upload chunking shared by the file calls of `Server` (files.ts), `Client`
// (_client_files.ts) and the worker handle's fs (_worker_fs.ts): one rule each, one message each.

/** Chunk size when uploading from a `Uint8Array` (progress is reported per chunk). */
export const UPLOAD_CHUNK = 1024 * 1024;

/** A remote path: a non-empty string without NUL. */
export function checkPath(name: string, path: unknown): asserts path is string {
  if (typeof path !== "string" || path === "" || path.includes("\0")) {
    throw new TypeError(
      `${name} must be a non-empty string without NUL, got ${JSON.stringify(path)}`,
    );
  }
}

/** Permission bits, when given: an integer from 0 to 0o7777. */
export function checkMode(mode: unknown): void {
  if (
    mode !== undefined &&
    (!Number.isInteger(mode) || (mode as number) < 0 || (mode as number) > 0o7777)
  ) {
    throw new RangeError(`mode must be an integer from 0 to 0o7777, got ${mode}`);
  }
}

/** The options every transfer takes: `onProgress`, `signal`, `mkdirs`. */
export function checkTransferOptions(
  options: { onProgress?: unknown; signal?: unknown; mkdirs?: unknown },
): void {
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw new TypeError(`onProgress must be a function, got ${typeof options.onProgress}`);
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal, got ${typeof options.signal}`);
  }
  if (options.mkdirs !== undefined && typeof options.mkdirs !== "boolean") {
    throw new TypeError(`mkdirs must be a boolean, got ${typeof options.mkdirs}`);
  }
}

/** `data` in {@linkcode UPLOAD_CHUNK} pieces (views, not copies). */
export async function* chunksOf(data: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += UPLOAD_CHUNK) {
    yield data.subarray(at, at + UPLOAD_CHUNK);
  }
}

/** The arguments of an upload: the path, the data (bytes or a byte stream) and its options. */
export function checkUpload(
  path: unknown,
  data: unknown,
  options: {
    mode?: unknown;
    size?: unknown;
    onProgress?: unknown;
    signal?: unknown;
    mkdirs?: unknown;
    sha256?: unknown;
  },
): void {
  checkPath("path", path);
  if (!(data instanceof Uint8Array) && !(data instanceof ReadableStream)) {
    throw new TypeError(`Upload data must be a Uint8Array or a ReadableStream, got ${typeof data}`);
  }
  checkMode(options.mode);
  checkTransferOptions(options);
  const size = options.size;
  if (size !== undefined && (!Number.isSafeInteger(size) || (size as number) < 0)) {
    throw new RangeError(`size must be a non-negative integer, got ${size}`);
  }
  const sha256 = options.sha256;
  if (
    sha256 !== undefined && typeof sha256 !== "function" &&
    (typeof sha256 !== "string" || !SHA256_HEX.test(sha256))
  ) {
    throw new TypeError(
      `sha256 must be 64 lowercase hex digits or a function, got ${
        typeof sha256 === "string" ? `'${sha256.slice(0, 100)}'` : typeof sha256
      }`,
    );
  }
}

/** A SHA-256 as the protocol carries it: 64 lowercase hex digits. */
export const SHA256_HEX: RegExp = /^[0-9a-f]{64}$/;
