// File transfer and the remote file system over the control API: uploads as streamed `PUT .../files` bodies
// (SHA-256 sent ahead for bytes, after the body for streams, and compared with the stored file's), downloads as streamed bodies that resume from the
// first byte not received when the connection drops, directories as tar streams through `/dirs` packed and
// unpacked here with the shared tar helpers, and `fs` calls. The checks mirror the embedded controller's.
import { createHash } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import { packDirectory, unpackTar } from "@sandd/protocol/tar";
import type { FileSystemHandle } from "./controller.ts";
import { FileError, tarFileError } from "./errors.ts";
import {
  DEFAULT_DOWNLOAD_MAX_BYTES,
  type DownloadDirOptions,
  type DownloadOptions,
  type FileEntry,
  type FileStat,
  type FsEvent,
  type ListOptions,
  type MkdirOptions,
  placeDirectory,
  type RemoveOptions,
  type UploadDirOptions,
  type UploadDirResult,
  type UploadOptions,
  type UploadResult,
  type WatchOptions,
} from "./files.ts";
import { apiError, ControlApiError } from "./_client_errors.ts";
import type { Query, Transport } from "./_client_http.ts";
import { downloadBody, requestBody } from "./_client_body.ts";
import { array, fileEntry, fileStat, object } from "./_client_wire.ts";
import {
  checkMode,
  checkPath,
  checkTransferOptions,
  checkUpload,
  chunksOf,
  SHA256_HEX,
} from "./_file_checks.ts";

function enc(value: string): string {
  return encodeURIComponent(value);
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

/** `Server.upload` over the API. */
export async function uploadFile(
  transport: Transport,
  id: string,
  path: string,
  data: Uint8Array | ReadableStream<Uint8Array>,
  options: UploadOptions,
): Promise<UploadResult> {
  checkUpload(path, data, options);
  options.signal?.throwIfAborted();
  const total = data instanceof Uint8Array ? data.length : options.size;
  const hash = createHash("sha256");
  let sent = 0;
  const headers: Record<string, string> = { "content-type": "application/octet-stream" };
  // Bytes are hashed once, ahead; a stream as it is sent, its digest sent after it (the body's last 64 bytes).
  // The daemon checks the bytes against the digest before it puts the file in place. A digest the caller gives
  // (`sha256`) is sent instead, and nothing is hashed here.
  const known = options.sha256;
  const ahead = typeof known === "string"
    ? known
    : known === undefined && data instanceof Uint8Array
    ? createHash("sha256").update(data).digest("hex")
    : null;
  headers["sandd-sha256"] = ahead ?? "trailing";
  let trailing: string | null = null;
  const { body, failure } = requestBody(
    data instanceof Uint8Array ? chunksOf(data) : data,
    (chunk) => {
      sent += chunk.length;
      if (total !== undefined && sent > total) {
        throw new RangeError(`Upload stream carries more than its size (${total} bytes)`);
      }
      if (ahead === null && known === undefined) hash.update(chunk);
      options.onProgress?.({ bytes: sent, total });
    },
    () => {
      if (total !== undefined && sent !== total) {
        throw new RangeError(`Upload stream ended at ${sent} bytes, short of its size (${total})`);
      }
      if (ahead !== null) return;
      const digest = typeof known === "function" ? known() : hash.digest("hex");
      if (typeof digest !== "string" || !SHA256_HEX.test(digest)) {
        throw new TypeError(
          `sha256 must give 64 lowercase hex digits, got ${
            typeof digest === "string" ? `'${digest.slice(0, 100)}'` : typeof digest
          }`,
        );
      }
      trailing = digest;
      return new TextEncoder().encode(trailing);
    },
  );
  const query: Query = {
    path,
    mode: options.mode !== undefined ? octal(options.mode) : undefined,
    mkdirs: options.mkdirs ? true : undefined,
  };
  let answer: unknown;
  try {
    answer = await transport.json("PUT", `/daemons/${enc(id)}/files`, {
      query,
      body,
      headers,
      timeout: null,
      signal: options.signal,
      context: { daemonId: id, path, operation: "upload" },
    });
  } catch (error) {
    throw failure() ?? error;
  }
  const result = object("upload result", answer);
  const digest = ahead ?? trailing ?? hash.digest("hex");
  if (typeof result.bytes !== "number" || typeof result.sha256 !== "string") {
    throw new ControlApiError(
      "BAD_RESPONSE",
      `The control API sent a malformed upload result: ${JSON.stringify(result)}`,
    );
  }
  if (result.sha256 !== digest || result.bytes !== sent) {
    throw new FileError(id, {
      code: "EINTEGRITY",
      message:
        `Upload of '${path}' was stored as ${result.bytes} bytes with SHA-256 ${result.sha256}, but ${sent} bytes with SHA-256 ${digest} were sent`,
      path,
    });
  }
  return { bytes: result.bytes, sha256: result.sha256 };
}

function checkDownload(path: string, options: DownloadOptions): void {
  checkPath("path", path);
  checkTransferOptions(options);
  if (options.from !== undefined && (!Number.isSafeInteger(options.from) || options.from < 0)) {
    throw new RangeError(`from must be a non-negative integer, got ${options.from}`);
  }
  const max = options.maxBytes;
  if (max !== undefined && max !== Infinity && (!Number.isSafeInteger(max) || max < 0)) {
    throw new RangeError(`maxBytes must be a non-negative integer, got ${max}`);
  }
}

function tooLarge(id: string, path: string, max: number, what: string): FileError {
  return new FileError(id, {
    code: "EFBIG",
    message: `Download of '${path}' ${what}, more than maxBytes (${max} bytes)`,
    path,
  });
}

/** `Server.downloadStream` over the API: resolves once the file is open, resumes across dropped connections. */
export async function downloadFileStream(
  transport: Transport,
  id: string,
  path: string,
  options: DownloadOptions,
): Promise<ReadableStream<Uint8Array>> {
  checkDownload(path, options);
  options.signal?.throwIfAborted();
  const from = options.from ?? 0;
  const max = options.maxBytes ?? Infinity;
  const url = `/daemons/${enc(id)}/files`;
  const stop = options.signal
    ? AbortSignal.any([transport.closed, options.signal])
    : transport.closed;
  let total: number | undefined;
  const request = async (offset: number, signal: AbortSignal) => {
    const response = await transport.get(url, {
      query: { path, from: offset },
      signal,
      context: { daemonId: id, path, operation: "download" },
    });
    const size = Number(response.headers.get("sandd-size") ?? NaN);
    const length = Number(response.headers.get("content-length") ?? NaN);
    if (Number.isSafeInteger(size)) total = size;
    else if (Number.isSafeInteger(length)) total = offset + length;
    return { start: offset, body: response.body };
  };
  // The first request is made here, so that a missing file fails the call rather than the stream.
  const first = await request(from, stop);
  if (total !== undefined && total - from > max) {
    await first.body?.cancel().catch(() => {});
    throw tooLarge(id, path, max, `is ${total - from} bytes`);
  }
  let pending: typeof first | null = first;
  return downloadBody({
    transport,
    from,
    stop,
    path: url,
    open: (offset, signal) => {
      const opened = pending;
      pending = null;
      return opened ? Promise.resolve(opened) : request(offset, signal);
    },
    onChunk: (_chunk, offset) => {
      if (offset - from > max) throw tooLarge(id, path, max, "got larger");
      options.onProgress?.({ bytes: offset, total });
    },
  });
}

/** `Server.download` over the API. */
export async function downloadFile(
  transport: Transport,
  id: string,
  path: string,
  options: DownloadOptions,
): Promise<Uint8Array> {
  const stream = await downloadFileStream(transport, id, path, {
    ...options,
    maxBytes: options.maxBytes ?? DEFAULT_DOWNLOAD_MAX_BYTES,
  });
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function countSymlinks(dir: string): Promise<number> {
  let n = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isSymlink) n++;
    else if (entry.isDirectory) n += await countSymlinks(join(dir, entry.name));
  }
  return n;
}

/** `Server.uploadDir` over the API: the tree packed here and streamed to `PUT .../dirs`. */
export async function uploadDirectory(
  transport: Transport,
  id: string,
  localDir: string,
  remoteDir: string,
  options: UploadDirOptions,
): Promise<UploadDirResult> {
  checkPath("localDir", localDir);
  checkPath("remoteDir", remoteDir);
  checkMode(options.mode);
  checkTransferOptions(options);
  options.signal?.throwIfAborted();
  const info = await Deno.stat(localDir);
  if (!info.isDirectory) throw new TypeError(`localDir must be a directory, got '${localDir}'`);
  const abort = new AbortController();
  const onAbort = () => abort.abort(options.signal!.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const hash = createHash("sha256");
  let sent = 0;
  try {
    const tar = packDirectory(localDir, {
      followSymlinks: options.followSymlinks ?? false,
      signal: abort.signal,
    });
    const { body, failure } = requestBody(tar, (chunk) => {
      sent += chunk.length;
      hash.update(chunk);
      options.onProgress?.({ bytes: sent, total: undefined });
    });
    let answer: unknown;
    try {
      answer = await transport.json("PUT", `/daemons/${enc(id)}/dirs`, {
        query: {
          path: remoteDir,
          mode: octal(options.mode ?? (info.mode ?? 0o755) & 0o7777),
          mkdirs: options.mkdirs ? true : undefined,
        },
        body,
        headers: { "content-type": "application/x-tar" },
        timeout: null,
        signal: options.signal,
        context: { daemonId: id, path: remoteDir, operation: "uploadDir" },
      });
    } catch (error) {
      throw tarFileError(id, localDir, failure() ?? error);
    }
    const result = object("directory upload result", answer);
    const count = (...keys: string[]) => {
      for (const key of keys) if (typeof result[key] === "number") return result[key] as number;
      return undefined;
    };
    return {
      bytes: count("bytes") ?? sent,
      sha256: typeof result.sha256 === "string" ? result.sha256 : hash.digest("hex"),
      files: count("files") ?? 0,
      directories: count("directories", "dirs") ?? 0,
      symlinks: count("symlinks") ??
        (options.followSymlinks ? 0 : await countSymlinks(localDir)),
    };
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    abort.abort();
  }
}

/** `Server.downloadDir` over the API: `GET .../dirs` unpacked beside the target, renamed into place when whole. */
export async function downloadDirectory(
  transport: Transport,
  id: string,
  remoteDir: string,
  localDir: string,
  options: DownloadDirOptions,
): Promise<void> {
  checkPath("remoteDir", remoteDir);
  checkPath("localDir", localDir);
  checkTransferOptions(options);
  options.signal?.throwIfAborted();
  const target = resolve(localDir);
  const existing = await Deno.lstat(target).catch(() => null);
  if (existing && !existing.isDirectory) {
    throw new TypeError(`localDir exists and is not a directory: '${localDir}'`);
  }
  const response = await transport.call("GET", `/daemons/${enc(id)}/dirs`, {
    query: { path: remoteDir },
    signal: options.signal,
    context: { daemonId: id, path: remoteDir, operation: "downloadDir" },
  });
  const temp = join(
    dirname(target),
    `.${basename(target).slice(0, 120)}.sandd-${crypto.randomUUID().slice(0, 8)}.part`,
  );
  let received = 0;
  let placed = false;
  const reader = response.body?.getReader();
  try {
    await Deno.mkdir(temp, { mode: 0o700 });
    let done = false;
    // unpackTar may stop at the end marker; the rest is drained so a cut stream is still noticed.
    const source = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const next = reader ? await reader.read() : { done: true as const, value: undefined };
        if (next.done) {
          done = true;
          controller.close();
          return;
        }
        received += next.value.length;
        options.onProgress?.({ bytes: received, total: undefined });
        controller.enqueue(next.value);
      },
    }, { highWaterMark: 0 });
    try {
      await unpackTar(source, temp, options.signal ? { signal: options.signal } : {});
      while (!done && reader) done = (await reader.read()).done;
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw tarFileError(
        id,
        remoteDir,
        error instanceof TypeError
          ? transport.failure(error, "GET", transport.url(`/daemons/${enc(id)}/dirs`))
          : error,
      );
    }
    const mode = Number.parseInt(response.headers.get("sandd-mode") ?? "", 8);
    if (Number.isInteger(mode)) await Deno.chmod(temp, mode & 0o777);
    else await Deno.chmod(temp, 0o755);
    await placeDirectory(temp, target, existing !== null);
    placed = true;
  } finally {
    if (!placed) {
      await reader?.cancel().catch(() => {});
      await Deno.remove(temp, { recursive: true }).catch(() => {});
    }
  }
}

/** A worker's file system over the API (`watch` streams the API's Server-Sent Events). */
export class ClientFs implements FileSystemHandle {
  readonly daemonId: string;
  readonly #transport: Transport;
  readonly #base: string;

  constructor(transport: Transport, daemonId: string) {
    this.#transport = transport;
    this.daemonId = daemonId;
    this.#base = `/daemons/${enc(daemonId)}/fs`;
  }

  async stat(path: string): Promise<FileStat> {
    checkPath("path", path);
    return fileStat(
      await this.#transport.json("GET", `${this.#base}/stat`, {
        query: { path },
        context: { daemonId: this.daemonId, path },
      }),
    );
  }

  async list(path: string, options: ListOptions = {}): Promise<FileEntry[]> {
    checkPath("path", path);
    if (options.recursive !== undefined && typeof options.recursive !== "boolean") {
      throw new TypeError(`recursive must be a boolean, got ${typeof options.recursive}`);
    }
    const body = object(
      "directory listing",
      await this.#transport.json("GET", `${this.#base}/list`, {
        query: { path, recursive: options.recursive ? true : undefined },
        context: { daemonId: this.daemonId, path },
      }),
    );
    return array("directory listing", body.entries).map(fileEntry);
  }

  async mkdir(path: string, options: MkdirOptions = {}): Promise<void> {
    checkPath("path", path);
    checkMode(options.mode);
    await this.#post("mkdir", path, {
      path,
      ...(options.recursive ? { recursive: true } : {}),
      ...(options.mode !== undefined ? { mode: options.mode } : {}),
    });
  }

  async remove(path: string, options: RemoveOptions = {}): Promise<void> {
    checkPath("path", path);
    await this.#post("remove", path, { path, ...(options.recursive ? { recursive: true } : {}) });
  }

  async move(from: string, to: string): Promise<void> {
    checkPath("from", from);
    checkPath("to", to);
    await this.#post("move", from, { from, to });
  }

  async *watch(path: string, options: WatchOptions = {}): AsyncGenerator<FsEvent, void, undefined> {
    checkPath("path", path);
    checkTransferOptions(options);
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    let reader: ReadableStreamDefaultReader<string> | undefined;
    try {
      const response = await this.#transport.call("GET", `${this.#base}/watch`, {
        query: { path, recursive: options.recursive === false ? false : undefined },
        context: { daemonId: this.daemonId, path },
        signal: stop.signal,
        timeout: null,
      });
      reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      while (!stop.signal.aborted) {
        let end = buffer.indexOf("\n\n");
        while (end < 0) {
          const { value, done } = await reader.read().catch((error) => {
            if (stop.signal.aborted) return { value: undefined, done: true as const };
            throw error;
          });
          if (done) return;
          buffer += value;
          end = buffer.indexOf("\n\n");
        }
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const lines = block.split("\n");
        const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data === "") continue;
        const value = JSON.parse(data) as Record<string, unknown>;
        if (lines.includes("event: error")) {
          throw apiError(503, value, { daemonId: this.daemonId, path });
        }
        yield {
          kind: String(value.kind) as FsEvent["kind"],
          paths: Array.isArray(value.paths) ? value.paths.map(String) : [],
        };
      }
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      stop.abort();
      await reader?.cancel().catch(() => {});
    }
  }

  async #post(op: string, path: string, json: unknown): Promise<void> {
    await this.#transport.json("POST", `${this.#base}/${op}`, {
      json,
      context: { daemonId: this.daemonId, path },
    });
  }
}
