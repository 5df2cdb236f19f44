/**
 * Workspace snapshots on the daemon: request handlers for the `snapshot*` operations over a content-addressed
 * store in the state directory (see `store.ts` for the layout and crash safety, `_create.ts`, `_restore.ts` and
 * `_archive.ts` for the tree walks).
 *
 * The snapshotted directory and the restore destination are controller paths: they go through the file
 * service's confinement (`--root`: resolved once to a descriptor beneath the root, no symlink followed, and
 * `--no-files` refuses every snapshot operation). The store itself is the daemon's and is never named by a
 * controller; a state directory beneath the root is refused (a controller could otherwise tamper with blobs
 * through the file service).
 *
 * @module
 */

import { isAbsolute, relative, resolve } from "node:path";
import type { RequestArgs } from "@sandd/protocol/messages";
import type { DaemonOptions } from "../daemon.ts";
import type { Link } from "../_link.ts";
import type { Policy } from "../policy/mod.ts";
import { DaemonRequestError } from "../process_table.ts";
import { fileError, FilePaths, TEMP_NAME } from "../_file_paths.ts";
import {
  DownloadSender,
  type DownloadSource,
  fileSource,
  streamSource,
  TRANSFER_IDLE_MS,
  UploadReceiver,
} from "../_file_streams.ts";
import { MAX_TRANSFERS, TransferSlots } from "../_transfer_slots.ts";
import { acquireFs, closeFd, fstat, O, pread, releaseFs } from "../ffi/fs.ts";
import { TreeWalker } from "./_create.ts";
import { count, info, type Manifest, MANIFEST_FORMAT, parse, serialize } from "./_manifest.ts";
import { restoreInto } from "./_restore.ts";
import { exportTar, importTar } from "./_archive.ts";
import { BlobBatch, SnapshotStore } from "./store.ts";

export { defaultStateDir } from "./state_dir.ts";
export { SnapshotStore } from "./store.ts";

/** Largest manifest a `snapshotImport` with format `manifest` accepts, in bytes. */
const MAX_IMPORTED_MANIFEST = 256 * 1024 * 1024;

/** Options of {@linkcode snapshotHandlers}. */
export interface SnapshotHandlerOptions {
  /** The daemon's state directory; the store is its `snapshots/` (both created 0700 on first use). */
  stateDir: string;
  /**
   * Confine snapshotted and restored directories to this root (as the file service does).
   *
   * @default {undefined}
   */
  root?: string;
  /**
   * The policy whose `root`, `noFiles` and `runAs` apply, as for the file service.
   *
   * @default {undefined}
   */
  policy?: Policy;
  /**
   * How long a blob or archive stream may wait on the controller without progress, in milliseconds.
   *
   * @default {TRANSFER_IDLE_MS} (60,000)
   */
  transferIdleMs?: number;
}

/** The handlers {@linkcode snapshotHandlers} returns. */
export type SnapshotHandlers = NonNullable<DaemonOptions["handlers"]>;

function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === "" || (rel !== ".." && !rel.startsWith("../") && !isAbsolute(rel));
}

function withFs<T>(run: () => Promise<T>): Promise<T> {
  acquireFs();
  let result: Promise<T>;
  try {
    result = run();
  } catch (error) {
    releaseFs();
    return Promise.reject(error);
  }
  return result.finally(releaseFs);
}

/** A new snapshot id: the UTC time to the second, then 8 random hex digits (sorts by time). */
function newId(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${crypto.randomUUID().slice(0, 8)}`;
}

function describe(error: unknown): { code: string; message: string } {
  if (error instanceof DaemonRequestError) return { code: error.code, message: error.message };
  const code = (error as { code?: unknown })?.code;
  return {
    code: typeof code === "string" && /^[A-Z][A-Z0-9_]{1,63}$/.test(code) ? code : "EIO",
    message: String((error as Error)?.message ?? error),
  };
}

/**
 * Request handlers for `snapshotCreate`, `snapshotRestore`, `snapshotList`, `snapshotGet`, `snapshotDelete`,
 * `snapshotHas`, `snapshotBlobGet`, `snapshotBlobPut`, `snapshotExport` and `snapshotImport`, to merge into
 * `DaemonOptions.handlers`.
 *
 * @example Make the handlers
 * ```ts
 * import { snapshotHandlers } from "./mod.ts";
 * const handlers = snapshotHandlers({ stateDir: "/tmp/sandd-state-example" });
 * console.assert(typeof handlers.snapshotCreate === "function");
 * ```
 *
 * @param options The state directory and the confinement.
 * @returns The handlers, keyed by operation.
 * @throws {TypeError} If `stateDir` is not an absolute path without NUL.
 */
export function snapshotHandlers(options: SnapshotHandlerOptions): SnapshotHandlers {
  const { stateDir, root, policy } = options;
  if (typeof stateDir !== "string" || !isAbsolute(stateDir) || stateDir.includes("\0")) {
    throw new TypeError(
      `stateDir must be an absolute path without NUL, got ${JSON.stringify(stateDir)}`,
    );
  }
  const paths = new FilePaths(root === undefined ? undefined : resolve(root), policy);
  const store = new SnapshotStore(resolve(stateDir));
  const idleMs = options.transferIdleMs ?? TRANSFER_IDLE_MS;
  const slots = new TransferSlots(MAX_TRANSFERS, idleMs);
  let stateReal = resolve(stateDir);
  try {
    stateReal = Deno.realPathSync(stateReal);
  } catch {
    // not there yet
  }
  const misplaced = paths.confined && isInside(paths.base, stateReal);

  /** Every snapshot operation: the file policy applies, the store must lie outside the root, and be open. */
  const ready = async (): Promise<void> => {
    paths.resolve("."); // --no-files, --run-as without a root: refused like any file operation
    if (misplaced) {
      throw new DaemonRequestError(
        "POLICY",
        `Snapshots are refused: the state directory '${stateReal}' lies beneath the root directory ` +
          `'${paths.base}', where controllers could change the store; give --state-dir outside --root`,
        { rule: "root" },
      );
    }
    await store.open();
  };

  const guarded = <A>(
    verb: string,
    pathOf: (args: A) => string,
    run: (args: A, link: Link) => Promise<Record<string, unknown>>,
  ) =>
  (args: A, link: Link): Promise<Record<string, unknown>> =>
    withFs(async () => {
      try {
        await ready();
        return await run(args, link);
      } catch (error) {
        throw fileError(error, pathOf(args), verb, paths.confined);
      }
    });

  /** An operation the controller streams bytes for: the stream is bound at once (its frames follow the request). */
  const receiving = <A extends { sid: number; window: number }>(
    verb: string,
    pathOf: (args: A) => string,
    run: (args: A, receiver: UploadReceiver) => Promise<Record<string, unknown>>,
  ) =>
  (args: A, link: Link): Promise<Record<string, unknown>> => {
    let release: () => void;
    try {
      release = slots.take(link, pathOf(args));
    } catch (error) {
      return Promise.reject(error);
    }
    const receiver = new UploadReceiver(link, args.sid, args.window, { idleMs });
    return withFs(async () => {
      try {
        await ready();
        return await store.lock.shared(() => run(args, receiver));
      } catch (error) {
        throw fileError(error, pathOf(args), verb, paths.confined);
      } finally {
        receiver.finish();
        release();
      }
    });
  };

  const snapshot = (id: string) => `snapshot ${id}`;

  return {
    snapshotCreate: guarded<RequestArgs<"snapshotCreate">>(
      "snapshot",
      (a) => a.path,
      (args) =>
        store.lock.shared(async () => {
          const resolved = paths.resolve(args.path);
          const fd = paths.open(resolved, O.RDONLY | O.DIRECTORY | O.NONBLOCK);
          const batch = new BlobBatch(store);
          try {
            const top = fstat(fd);
            const walker = new TreeWalker(batch, TEMP_NAME, store.statCache);
            await walker.walk(fd, "");
            await batch.sync();
            const now = new Date();
            const manifest: Manifest = {
              header: {
                format: MANIFEST_FORMAT,
                id: newId(now),
                createdAt: now.toISOString(),
                message: args.message ?? "",
                tags: args.tags ?? [],
                ...count(walker.entries),
                mode: top.mode & 0o7777,
                mtime: top.mtimeMs,
              },
              entries: walker.entries,
            };
            await store.writeManifest(manifest);
            return { ...info(manifest.header), newBlobs: batch.newBlobs, newBytes: batch.newBytes };
          } catch (error) {
            batch.abandon();
            throw error;
          } finally {
            closeFd(fd);
          }
        }),
    ),

    snapshotRestore: guarded<RequestArgs<"snapshotRestore">>(
      "restore to",
      (a) => a.path,
      (args) =>
        store.lock.shared(async () => {
          const manifest = store.readManifest(args.id);
          const resolved = paths.resolve(args.path);
          const entry = paths.entry(resolved);
          try {
            return {
              ...await restoreInto(
                store,
                manifest,
                entry.dirFd,
                entry.name,
                args.overwrite ?? false,
                args.path,
              ),
            };
          } finally {
            closeFd(entry.dirFd);
          }
        }),
    ),

    snapshotList: guarded<RequestArgs<"snapshotList">>(
      "list",
      () => "snapshots",
      (args) =>
        store.lock.shared(() => {
          const wanted = args.tags ?? [];
          const headers = store.ids().map((id) => store.readHeader(id))
            .filter((h) => wanted.every((tag) => h.tags.includes(tag)));
          headers.sort((a, b) => (a.createdAt < b.createdAt
            ? 1
            : a.createdAt > b.createdAt
            ? -1
            : a.id < b.id
            ? 1
            : -1)
          );
          return Promise.resolve({ snapshots: headers.map(info) });
        }),
    ),

    snapshotGet: guarded<RequestArgs<"snapshotGet">>(
      "read",
      (a) => snapshot(a.id),
      (args) => store.lock.shared(() => Promise.resolve(info(store.readHeader(args.id)))),
    ),

    snapshotDelete: guarded<RequestArgs<"snapshotDelete">>(
      "delete",
      (a) => snapshot(a.id),
      (args) =>
        store.lock.exclusive(async () => {
          const manifest = store.readManifest(args.id);
          const referenced = store.referencedBlobs(args.id);
          await store.removeManifest(args.id);
          let freedBlobs = 0, freedBytes = 0;
          const seen = new Set<string>();
          for (const entry of manifest.entries) {
            if (
              entry.type !== "file" || referenced.has(entry.sha256) || seen.has(entry.sha256)
            ) continue;
            seen.add(entry.sha256);
            freedBytes += store.removeBlob(entry.sha256);
            freedBlobs++;
          }
          return { freedBlobs, freedBytes };
        }),
    ),

    snapshotHas: guarded<RequestArgs<"snapshotHas">>(
      "read",
      () => "snapshot blobs",
      (args) => Promise.resolve({ missing: args.blobs.filter((hash) => !store.hasBlob(hash)) }),
    ),

    snapshotBlobGet: guarded<RequestArgs<"snapshotBlobGet">>(
      "read",
      (a) => `blob ${a.sha256}`,
      async (args, link) => {
        const release = slots.take(link, `blob ${args.sha256}`);
        // Held until the stream ends, so no deletion frees the blob meanwhile.
        const unlock = await store.lock.holdShared();
        let blob: { fd: number; size: number };
        try {
          blob = store.openBlob(args.sha256);
        } catch (error) {
          unlock();
          release();
          throw error;
        }
        acquireFs();
        const source = fileSource((buffer, offset) => pread(blob.fd, buffer, offset), () => {
          release();
          unlock();
          closeFd(blob.fd);
          releaseFs();
        });
        send(link, args.sid, args.window, source, idleMs);
        return { size: blob.size };
      },
    ),

    snapshotBlobPut: receiving<RequestArgs<"snapshotBlobPut">>(
      "store",
      (a) => `blob ${a.sha256}`,
      async (args, receiver) => {
        const batch = new BlobBatch(store);
        const writer = batch.writer();
        try {
          while (true) {
            const chunk = await receiver.read();
            if (chunk === null) break;
            writer.write(chunk);
            receiver.consumed();
          }
          receiver.consumed(true);
          receiver.verify(`blob ${args.sha256}`, args.size);
          const { stored } = writer.finish(args.sha256);
          await batch.sync();
          return { bytes: receiver.received, stored };
        } finally {
          writer.discard();
          batch.abandon();
        }
      },
    ),

    snapshotExport: guarded<RequestArgs<"snapshotExport">>(
      "export",
      (a) => snapshot(a.id),
      async (args, link): Promise<Record<string, unknown>> => {
        const taken = slots.take(link, snapshot(args.id));
        // Held until the stream ends, so no deletion frees a blob the archive still has to read.
        const unlock = await store.lock.holdShared();
        const release = () => {
          unlock();
          taken();
        };
        try {
          if (args.format === "manifest") {
            const bytes = store.manifestBytes(args.id);
            parse(bytes); // only a valid manifest leaves the store
            send(
              link,
              args.sid,
              args.window,
              fileSource((buffer, offset) => {
                const n = Math.max(0, Math.min(buffer.length, bytes.length - offset));
                buffer.set(bytes.subarray(offset, offset + n));
                return n;
              }, release),
              idleMs,
            );
            return { size: bytes.length };
          }
          const manifest = store.readManifest(args.id);
          const reader = exportTar(store, manifest).getReader();
          acquireFs();
          send(
            link,
            args.sid,
            args.window,
            streamSource(reader, () => {
              release();
              reader.cancel().catch(() => {}).finally(releaseFs);
            }),
            idleMs,
          );
          return { size: null };
        } catch (error) {
          release();
          throw error;
        }
      },
    ),

    snapshotImport: receiving<RequestArgs<"snapshotImport">>(
      "import",
      () => "snapshot import",
      async (args, receiver) => {
        const batch = new BlobBatch(store);
        try {
          const source = new ReadableStream<Uint8Array>({
            pull: async (controller) => {
              const chunk = await receiver.read();
              if (chunk === null) controller.close();
              else {
                controller.enqueue(chunk);
                receiver.consumed();
              }
            },
          }, { highWaterMark: 0 });
          if (args.format === "manifest") {
            const bytes = await collect(source, MAX_IMPORTED_MANIFEST);
            receiver.consumed(true);
            receiver.verify("snapshot manifest", undefined);
            return await importManifest(store, bytes);
          }
          const entries = await importTar(source, batch);
          // Drain what follows the archive's end marker, so the digest covers every byte.
          while (await receiver.read() !== null) receiver.consumed();
          receiver.consumed(true);
          receiver.verify("snapshot archive", undefined);
          await batch.sync();
          const now = new Date();
          const manifest: Manifest = {
            header: {
              format: MANIFEST_FORMAT,
              id: newId(now),
              createdAt: now.toISOString(),
              message: args.message ?? "",
              tags: args.tags ?? [],
              ...count(entries),
              mode: 0o755,
              mtime: now.getTime(),
            },
            entries,
          };
          await store.writeManifest(manifest);
          return info(manifest.header);
        } catch (error) {
          batch.abandon();
          throw error;
        }
      },
    ),
  } as SnapshotHandlers;
}

/** Start sending `source` on `sid` (after the reply, as downloads do). */
function send(
  link: Link,
  sid: number,
  window: number,
  source: DownloadSource,
  idleMs: number,
): void {
  const sender = new DownloadSender(source, { window, describeError: describe, idleMs });
  sender.bind(link, sid);
  setTimeout(() => sender.pump(), 0);
}

async function collect(stream: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    length += chunk.length;
    if (length > max) {
      throw new DaemonRequestError("EFBIG", `An imported manifest may hold at most ${max} bytes`);
    }
    chunks.push(chunk.slice());
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Adopt a manifest from another store (a copy): every blob it names must be here already. */
async function importManifest(
  store: SnapshotStore,
  bytes: Uint8Array,
): Promise<Record<string, unknown>> {
  const manifest = parse(bytes);
  const missing = new Set<string>();
  for (const entry of manifest.entries) {
    if (entry.type === "file" && !store.hasBlob(entry.sha256)) missing.add(entry.sha256);
  }
  if (missing.size > 0) {
    throw new DaemonRequestError(
      "ENOENT",
      `Cannot import snapshot '${manifest.header.id}': the store lacks ${missing.size} of its blobs ` +
        `(${[...missing].slice(0, 3).join(", ")}${missing.size > 3 ? ", ..." : ""})`,
    );
  }
  if (store.exists(manifest.header.id)) {
    const current = serialize(store.readManifest(manifest.header.id));
    const wanted = serialize(manifest);
    if (current.length === wanted.length && current.every((b, i) => b === wanted[i])) {
      return info(manifest.header);
    }
  }
  await store.writeManifest(manifest);
  return info(manifest.header);
}
